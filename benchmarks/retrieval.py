"""Retrieval modes and chunkers, tuned on one half of the data and reported on the other (issue 15).

Data (../shared/data):
* the chunking-evaluation set (5 corpora, 472 questions, character spans; k=5): the
  questions are split in two halves by a hash of their id; parameters are tuned on
  the ``tune`` half and reported on the ``report`` half (and, for context, on all);
* SciFact: tuned on the train queries (qrels/train.tsv), reported on the test queries,
  whole documents and chunked.

Every configuration is (schema, mode[, fusion]). Fusion candidates: RRF with k in
{10, 30, 60}, weighted score fusion of min-max normalised scores with alpha in
{0.1..0.7}, and dense re-scoring of BM25's candidates (alpha in {0.5, 0.7, 1.0}),
each at candidate depths 20 and 50. All with all-MiniLM-L6-v2 through the evaluation
cache, exact search (the same fusion code search uses).

Usage:
    python benchmarks/retrieval.py                  # writes benchmarks/results/retrieval.json and .md
    python benchmarks/retrieval.py --schemas default@1,recursive-200@1 --quick
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragindex.evaluate import datasets  # noqa: E402
from ragindex.evaluate.runner import chunk_dataset, score, summarize, whole_docs  # noqa: E402
from ragindex.evaluate.vectors import CachedEmbedder, eval_cache_path  # noqa: E402
from ragindex.search.hybrid import DEFAULT_HYBRID, HybridParams  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SCHEMAS = ["default@1", "default@2", "cluster-200@1", "recursive-250@1", "token-200@1"]  # default@2 = recursive 200/0
SCIFACT_SCHEMAS = ["default@1", "default@2", "cluster-200@1"]  # chunked SciFact: the defaults and the clustering kind
GRID = ([HybridParams("rrf", k_rrf=k, depth=d) for k in (10, 30, 60) for d in (20, 50)]
        + [HybridParams("weighted", alpha=a, depth=d) for a in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7) for d in (20, 50)]
        + [HybridParams("rescore", alpha=a, depth=d) for a in (0.5, 0.7, 1.0) for d in (20, 50)])


def halves(ds) -> tuple:
    """(tune, report): a fixed split of the questions by a hash of their id."""
    tune = [q for q in ds.query_ids if int(hashlib.sha256(q.encode()).hexdigest(), 16) % 2 == 0]
    report = [q for q in ds.query_ids if q not in set(tune)]
    return ds.subset(tune, "tune"), ds.subset(report, "report")


def run(ds, chunks, emb, mode: str, params: HybridParams | None, k: int, vectors: dict) -> dict:
    key = id(chunks)
    if mode != "bm25" and key not in vectors:
        vectors[key] = emb.embed(chunks.embedded)
    q = emb.embed(ds.queries) if mode != "bm25" else None
    per_q = score(ds, chunks, q, vectors.get(key), k, mode, params or HybridParams())
    means, noise = summarize(ds, per_q)
    return {"metrics": {m: round(v, 5) for m, v in means.items()}, "noise": {m: round(v, 5) for m, v in noise.items()},
            "per_question": per_q}


def per_corpus(ds, per_q: dict) -> dict:
    groups: dict[str, list[str]] = {}
    for q in ds.query_ids:
        groups.setdefault(ds.spans[q][0].doc_id, []).append(q)
    out = {}
    for corpus, qs in sorted(groups.items()):
        out[corpus] = {m: round(sum(per_q[q][m] for q in qs) / len(qs), 5) for m in ("recall", "iou")} | {"questions": len(qs)}
    return out


def label(schema: str | None, mode: str, params: HybridParams | None) -> str:
    return f"{schema or 'whole-docs'} {mode}" + (f" {params.label()}" if params else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schemas", default=",".join(SCHEMAS))
    ap.add_argument("--quick", action="store_true", help="fusion grid of 3 and no SciFact chunked runs")
    ap.add_argument("--chroma-only", action="store_true", help="skip SciFact")
    ap.add_argument("--scifact-schemas", default=",".join(SCIFACT_SCHEMAS), help="schemas to evaluate on chunked SciFact")
    ap.add_argument("--out", type=Path, default=RESULTS / "retrieval.json")
    args = ap.parse_args()
    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.schemas import SchemaRegistry

    grid = GRID[:: max(1, len(GRID) // 3)] if args.quick else GRID
    schemas = args.schemas.split(",")
    reg = SchemaRegistry()
    out: dict = {"grid": [p.label() for p in grid], "chroma": {}, "scifact": {}}
    t0 = time.time()

    # -- the chunking-evaluation set: tune on one half, report on the other ---------------------------
    chroma = datasets.load("chroma")
    tune, report = halves(chroma)
    emb = CachedEmbedder(eval_cache_path("chroma"), EmbedderConfig("default").build, label="eval-chroma")
    for ref in schemas:
        chunks = chunk_dataset(chroma, reg.get(ref), emb.embed)  # cluster: pieces through the same cache
        vectors: dict = {}
        rows = {}
        for mode in ("dense", "bm25"):
            rows[mode] = {"tune": run(tune, chunks, emb, mode, None, 5, vectors), "report": run(report, chunks, emb, mode, None, 5, vectors)}
        tuned = []
        for p in grid:
            r = run(tune, chunks, emb, "hybrid", p, 5, vectors)
            tuned.append((p, r["metrics"]))
        bm25_iou = rows["bm25"]["tune"]["metrics"]["iou"]
        ok = [(p, m) for p, m in tuned if m["iou"] >= bm25_iou] or tuned
        best = max(ok, key=lambda pm: (pm[1]["recall"], pm[1]["iou"]))[0]
        rows["hybrid"] = {"tuned_on_tune_half": [{"params": p.label(), **m} for p, m in tuned], "chosen": best.label(),
                          "report": run(report, chunks, emb, "hybrid", best, 5, vectors)}
        full = {mode: run(chroma, chunks, emb, mode, best if mode == "hybrid" else None, 5, vectors) for mode in ("dense", "bm25", "hybrid")}
        out["chroma"][ref] = {
            "chunks": len(chunks.texts),
            "tune_half": {mode: rows[mode]["tune"]["metrics"] for mode in ("dense", "bm25")}
                         | {"hybrid": dict(next(m for p, m in tuned if p == best))},
            "report_half": {mode: rows[mode]["report"]["metrics"] for mode in ("dense", "bm25", "hybrid")},
            "all_questions": {mode: full[mode]["metrics"] for mode in full},
            "all_questions_noise": {mode: full[mode]["noise"] for mode in full},
            "per_corpus_all_questions": {mode: per_corpus(chroma, full[mode]["per_question"]) for mode in full},
            "hybrid_chosen": best.label(),
            "hybrid_tuning": rows["hybrid"]["tuned_on_tune_half"],
        }
        print(f"[{time.time() - t0:.0f}s] chroma {ref}: " + json.dumps(out["chroma"][ref]["report_half"]), flush=True)

    # -- SciFact: tune on train queries, report on test ------------------------------------------------
    if args.chroma_only:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        return
    root = datasets.resolve("scifact")
    train, test = datasets.load_beir(root, "scifact", "train"), datasets.load_beir(root, "scifact", "test")
    emb = CachedEmbedder(eval_cache_path("scifact"), EmbedderConfig("default").build, label="eval-scifact")
    for ref in ([None] if args.quick else [None, *args.scifact_schemas.split(",")]):
        chunks = whole_docs(test) if ref is None else chunk_dataset(test, reg.get(ref), emb.embed)
        vectors: dict = {}
        tuned = [(p, run(train, chunks, emb, "hybrid", p, 10, vectors)["metrics"]) for p in grid]
        best = max(tuned, key=lambda pm: pm[1]["ndcg@10"])[0]
        rows = {mode: run(test, chunks, emb, mode, best if mode == "hybrid" else None, 10, vectors)["metrics"]
                for mode in ("dense", "bm25", "hybrid")}
        rows["hybrid_default"] = run(test, chunks, emb, "hybrid", DEFAULT_HYBRID, 10, vectors)["metrics"]  # what users get
        out["scifact"][ref or "whole-docs"] = {"test": rows, "hybrid_chosen": best.label(), "hybrid_default": DEFAULT_HYBRID.label(),
                                               "hybrid_tuning_train_ndcg10": {p.label(): m["ndcg@10"] for p, m in tuned}}
        print(f"[{time.time() - t0:.0f}s] scifact {ref or 'whole-docs'}: " + json.dumps(rows), flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
