"""Reproduce the published retrieval figures of the default model (issue 6).

1. SciFact (BEIR test split, 300 queries), whole documents (title + " " + text),
   all-MiniLM-L6-v2: nDCG@10, recall@10/100, MRR@10 vs the MTEB figures
   (../shared/data/published); target nDCG@10 within ±0.01 of 0.645.
2. The chunking-evaluation set, k = 5, one index over the five corpora, for
   recursive 250/0, token 250/125, recursive 200/0 and token 200/0 vs the
   study's all-MiniLM-L6-v2 rows; targets recall ±3 points, IoU ±1 point.

Vectors go through the evaluation cache ($RAGINDEX_HOME/eval/<dataset>/), the same
one `ragindex eval` and the gate use, so a rerun embeds nothing.

Usage: python benchmarks/reproduce.py [--skip-scifact] [--out benchmarks/results/reproduction.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragindex.embedders.registry import EmbedderConfig  # noqa: E402
from ragindex.evaluate import datasets  # noqa: E402
from ragindex.evaluate.runner import evaluate  # noqa: E402
from ragindex.evaluate.vectors import CachedEmbedder, eval_cache_path  # noqa: E402
from ragindex.schemas import SchemaRegistry  # noqa: E402

# ../shared/data/published/mteb_all-MiniLM-L6-v2_SciFact.json (test split)
SCIFACT_PUBLISHED = {"ndcg@10": 0.64508, "recall@10": 0.78333, "recall@100": 0.925, "mrr@10": 0.60472}
SCIFACT_TOLERANCE = {"ndcg@10": 0.01}
# PUBLISHED_RESULTS.md, "Main table, all-MiniLM-L6-v2, n=5 retrieved chunks" (percent)
CHROMA_PUBLISHED = {
    "recursive-250@1": {"label": "Recursive 250/0", "recall": 78.5, "precision": 5.4, "precision_omega": 26.7, "iou": 5.4},
    "token-250-125@1": {"label": "TokenText 250/125", "recall": 82.4, "precision": 3.6, "precision_omega": 11.4, "iou": 3.5},
    "recursive-200@1": {"label": "Recursive 200/0", "recall": 75.7, "precision": 6.5, "precision_omega": 31.2, "iou": 6.5},
    "token-200@1": {"label": "TokenText 200/0", "recall": 76.6, "precision": 4.1, "precision_omega": 19.1, "iou": 4.1},
}
CHROMA_TOLERANCE = {"recall": 3.0, "iou": 1.0}  # points


def _cached(key: str) -> CachedEmbedder:
    log = lambda m: print(time.strftime("%H:%M:%S"), m, file=sys.stderr, flush=True)  # noqa: E731
    return CachedEmbedder(eval_cache_path(key), EmbedderConfig("default").build, label=f"reproduce-{key}", progress=log)


def scifact() -> dict:
    ds = datasets.load("scifact")
    res = evaluate(ds, None, _cached("scifact"))
    rows = []
    for m, pub in SCIFACT_PUBLISHED.items():
        ours = res.metrics[m]
        tol = SCIFACT_TOLERANCE.get(m)
        rows.append({"metric": m, "ours": round(ours, 5), "published": pub, "delta": round(ours - pub, 5),
                     "se": round(res.noise[m], 5), "tolerance": tol, "within": None if tol is None else abs(ours - pub) <= tol})
    return {"dataset_fingerprint": res.dataset_fingerprint, "queries": len(res.per_question), "documents": res.chunks,
            "embedded": res.embed.embedded, "seconds": round(res.seconds, 1), "rows": rows}


PAIRS = [("recursive-250@1", "recursive-200@1"), ("token-250-125@1", "token-200@1"), ("recursive-250@1", "token-250-125@1")]


def paired(per_q: dict[str, dict]) -> list[dict]:
    """How far apart two real chunkers are, per metric, with a paired bootstrap over the same questions."""
    import numpy as np

    from ragindex.evaluate.metrics import paired_bootstrap_ci

    out = []
    for a, b in PAIRS:
        qs = list(per_q[a])
        for m in ("recall", "iou"):
            d = np.array([per_q[b][q][m] - per_q[a][q][m] for q in qs])
            lo, hi = paired_bootstrap_ci(d)
            out.append({"a": a, "b": b, "metric": m, "delta": round(100 * d.mean(), 2), "ci95": [round(100 * lo, 2), round(100 * hi, 2)],
                        "questions_changed": int((d != 0).sum())})
    return out


def chroma(per_q: dict | None = None) -> list[dict]:
    ds = datasets.load("chroma")
    emb = _cached("chroma")
    out = []
    for ref, pub in CHROMA_PUBLISHED.items():
        res = evaluate(ds, SchemaRegistry().get(ref), emb, k=5)
        if per_q is not None:
            per_q[ref] = res.per_question
        rows = []
        for m in ("recall", "precision", "precision_omega", "iou"):
            ours = 100 * res.metrics[m]
            tol = CHROMA_TOLERANCE.get(m)
            rows.append({"metric": m, "ours": round(ours, 2), "published": pub[m], "delta": round(ours - pub[m], 2),
                         "se": round(100 * res.noise[m], 2), "tolerance": tol, "within": None if tol is None else abs(ours - pub[m]) <= tol})
        out.append({"schema": ref, "label": pub["label"], "chunker_fingerprint": res.chunker_fingerprint, "chunks": res.chunks,
                    "embedded": res.embed.embedded, "seconds": round(res.seconds, 1), "rows": rows})
    return out


def markdown(result: dict) -> str:
    mark = lambda w: "" if w is None else ("ok" if w else "**MISS**")  # noqa: E731
    lines = ["# Reproduction of the published all-MiniLM-L6-v2 figures", "",
             f"Generated by `python benchmarks/reproduce.py` ({result['machine']}); ± is the bootstrap standard error over questions.", ""]
    if result.get("scifact"):
        s = result["scifact"]
        lines += [f"## SciFact, whole documents ({s['queries']} test queries, {s['documents']} documents)", "",
                  "| metric | ours | published (MTEB) | delta | target | |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['metric']} | {r['ours']:.4f} ± {r['se']:.4f} | {r['published']:.4f} | {r['delta']:+.4f} | "
                  f"{'±' + str(r['tolerance']) if r['tolerance'] else ''} | {mark(r['within'])} |" for r in s["rows"]]
        lines.append("")
    lines += ["## Chunking-evaluation set, k = 5, all corpora in one index (points, %)", "",
              "| chunker | schema | metric | ours | published | delta | target | |", "|---|---|---|---|---|---|---|---|"]
    for c in result["chroma"]:
        for r in c["rows"]:
            lines.append(f"| {c['label']} | {c['schema']} | {r['metric']} | {r['ours']:.2f} ± {r['se']:.2f} | {r['published']:.1f} | "
                         f"{r['delta']:+.2f} | {'±' + str(r['tolerance']) if r['tolerance'] else ''} | {mark(r['within'])} |")
    lines += ["", "## Noise: how far apart two real chunkers are (paired bootstrap over the 472 questions, points)", "",
              "| from | to | metric | delta | 95% CI | questions changed |", "|---|---|---|---|---|---|"]
    lines += [f"| {p['a']} | {p['b']} | {p['metric']} | {p['delta']:+.2f} | [{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}] | "
              f"{p['questions_changed']} |" for p in result.get("chroma_pairs", [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-scifact", action="store_true", help="Only the chunking-evaluation set (SciFact costs ~1.3M tokens uncached).")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "reproduction.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    per_q: dict = {}
    result = {"machine": f"{platform.machine()}, {platform.python_version()}, CPU fp32",
              "chroma": chroma(per_q), "scifact": None if args.skip_scifact else scifact()}
    result["chroma_pairs"] = paired(per_q)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
