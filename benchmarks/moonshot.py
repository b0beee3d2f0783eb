"""Retrieval moonshot (issue 26): every candidate for a new default, on the chunking-evaluation set's two halves.

Targets (all 472 questions, k=5): recall >= 87.3 with IoU >= 8.0; the minimum to ship is recall >= 86 with
IoU >= 7.0. Choices are made on the ``tune`` half (``benchmarks/retrieval.py``'s split); the ``report`` half is
printed beside them. all-MiniLM-L6-v2 through the evaluation cache, exact search, the fusion code search uses.

Candidates, three families:

* **boundaries**: chunkings that are not published schemas (written to a scratch schemas folder): recursive
  150 to 185 tokens (smaller chunks, sentence-first separators; in hybrid and in hybrid-ctx), whole sentences
  packed to 150 and 200 tokens, and the cluster chunker's runs of up to 250 and 300 tokens (the study's
  ClusterSemanticChunker idea, larger).
  Each is searched hybrid, with the fusion chosen on the tune half from a small grid (the default
  weighted 0.2/0.8 at depth 50, weighted 0.1/0.3/0.5, RRF 10/60): the highest tune recall among settings with
  tune IoU >= 7.0, else the highest tune recall;
* **fusion**: per-query adaptive weights on default@2: the dense weight chosen per query-length bucket
  (<= 8 words, longer) on the tune half; and a weight learned per tenant from its eval set: each corpus as a
  tenant, its dense weight in default@3 hybrid-ctx fitted on its tune-half questions; BM25's k1 and b chosen
  on the tune half; and pseudo-relevance feedback (the query vector moved toward its first search's hits);
* **neighbour evidence** (``--mode hybrid-ctx``): the hybrid fusion with BM25 over each chunk's window (its own
  words plus a share ``w`` of its two neighbours' in its document), ``w`` chosen on the tune half from 1, 1/2,
  1/3 and 1/4 by the same rule, for recursive chunks of 150 to 185 tokens, default@3 (175) and default@2 (200). For
  default@3 also the mode's earlier forms: each candidate adds ``beta`` times the fused score of the better
  of its neighbours (``beta`` from 0.3, 0.5, 0.7, 1.0), with documents keeping their plain rank or not;
* **narrower spans and neighbours**: the rows of ``benchmarks/spans.py`` (``results/spans.json``), read here;
* the published schemas' rows from ``results/retrieval.json`` (default@1, default@2, cluster-200, ...), read here.

And the SciFact checks of ``benchmarks/carryover.py`` (data no choice looked at): nDCG@10 with chunked
documents, and recall / IoU of the annotators' rationale sentences, train and test claims.

Writes ``results/moonshot.json`` (every row: tune, report, all) and ``results/moonshot.png`` (recall against IoU
for every candidate: tune half, report half and all questions, with the target lines).

Usage: python benchmarks/moonshot.py [--plot]   (about 2 minutes with a warm evaluation cache)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import carryover  # noqa: E402  (the SciFact checks of carrying over)
from retrieval import halves  # noqa: E402  (the one split every retrieval benchmark uses)

from ragindex.evaluate import datasets  # noqa: E402
from ragindex.evaluate.runner import chunk_dataset, rank_chunks, score, summarize  # noqa: E402
from ragindex.evaluate.vectors import CachedEmbedder, eval_cache_path  # noqa: E402
from ragindex.search.hybrid import CTX_HYBRID, DEFAULT_HYBRID, HybridParams  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SHIP, TARGET = (86.0, 7.0), (87.3, 8.0)
SEPARATORS = '["\\n\\n", "\\n", ".", "?", "!", " ", ""]'
BOUNDARIES = {
    "recursive-150": f'kind = "recursive"\ntokenizer = "cl100k_base"\nsize = 150\nseparators = {SEPARATORS}\n',
    **{f"recursive-{n}": f'kind = "recursive"\ntokenizer = "cl100k_base"\nsize = {n}\nseparators = {SEPARATORS}\n'
       for n in (160, 165, 170, 175, 185)},
    "sentence-150": 'kind = "sentence"\ntokenizer = "cl100k_base"\nsize = 150\n',
    "sentence-200": 'kind = "sentence"\ntokenizer = "cl100k_base"\nsize = 200\n',
    "cluster-250": 'kind = "cluster"\ntokenizer = "cl100k_base"\nsize = 250\npiece_size = 50\n',
    "cluster-300": 'kind = "cluster"\ntokenizer = "cl100k_base"\nsize = 300\npiece_size = 50\n',
}
GRID = [DEFAULT_HYBRID] + [HybridParams("weighted", alpha=a, depth=50) for a in (0.1, 0.3, 0.5)] + \
       [HybridParams("rrf", k_rrf=k, depth=50) for k in (10, 60)]


def metrics(ds, per_q: dict) -> dict:
    means, _ = summarize(ds, per_q)
    return {m: round(100 * means[m], 2) for m in ("recall", "iou", "precision")}


def rows_for(parts: dict, chunks, qvecs: dict, cvecs, grid=None, mode: str = "hybrid") -> dict:
    """Evaluate a chunking on every half in ``mode``, with the fusion the ship rule picks from ``grid`` on the tune half."""
    grid = grid or GRID
    tuned = [(p, metrics(parts["tune"], score(parts["tune"], chunks, qvecs["tune"], cvecs, 5, mode, p))) for p in grid]
    best = by_ship_rule(tuned)
    out = {"fusion": best.label(), "tune": dict(next(m for p, m in tuned if p == best))}
    for half in ("report", "all"):
        out[half] = metrics(parts[half], score(parts[half], chunks, qvecs[half], cvecs, 5, mode, best))
    out["tune_grid"] = {p.label(): m for p, m in tuned}
    return out


# hybrid-ctx: BM25 over each chunk's window, the chunk's own words plus this share of its two neighbours'
WINDOW_GRID = [HybridParams("weighted", alpha=0.2, depth=50, window=w) for w in (1.0, 0.5, 0.33, 0.25)]
# hybrid-ctx's earlier forms: a share of the better neighbour's fused score, documents keeping their rank ...
NEIGHBOUR_GRID = [HybridParams("weighted", alpha=0.2, depth=50, neighbours=b, keep_doc_order=True) for b in (0.3, 0.5, 0.7, 1.0)]
# ... or not (the first version: the neighbours' evidence could move whole documents; see benchmarks/carryover.py)
FREE_NEIGHBOUR_GRID = [dataclasses.replace(p, keep_doc_order=False) for p in NEIGHBOUR_GRID]


def by_ship_rule(tuned):
    ok = [(p, m) for p, m in tuned if m["iou"] >= SHIP[1]]
    return max(ok or tuned, key=lambda pm: (pm[1]["recall"], pm[1]["iou"]))[0]


ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)


def by_length(ds) -> dict[str, list[int]]:
    """Questions by length: at most 8 words, or longer."""
    return {g: [i for i, t in enumerate(ds.queries) if (len(t.split()) <= 8) == (g == "short")] for g in ("short", "long")}


def by_tenant(ds) -> dict[str, list[int]]:
    """Questions by corpus: each of the five corpora as a tenant with its own eval questions."""
    out: dict[str, list[int]] = {}
    for i, q in enumerate(ds.query_ids):
        out.setdefault(ds.spans[q][0].doc_id, []).append(i)
    return out


def fitted_alpha(parts: dict, chunks, qvecs: dict, cvecs, groups, base: HybridParams, mode: str) -> dict:
    """``base`` with the dense weight chosen per group of questions (``groups(ds)``) on the tune half, from
    ALPHAS, by recall then IoU; every half scored with each group's weight."""
    def sub(ds, idx, name):
        return ds.subset([ds.query_ids[i] for i in idx], name)

    chosen, per_half = {}, {h: {} for h in parts}
    for name, idx in groups(parts["tune"]).items():
        grid = {a: metrics(sub(parts["tune"], idx, name), score(sub(parts["tune"], idx, name), chunks, qvecs["tune"][idx], cvecs, 5,
                                                               mode, dataclasses.replace(base, alpha=a)))
                for a in ALPHAS}
        chosen[name] = max(ALPHAS, key=lambda a: (grid[a]["recall"], grid[a]["iou"]))
    for half, ds in parts.items():
        for name, idx in groups(ds).items():
            per_half[half].update(score(sub(ds, idx, name), chunks, qvecs[half][idx], cvecs, 5, mode,
                                        dataclasses.replace(base, alpha=chosen[name])))
    return {"fusion": f"{base.label()} with alpha per {groups.__name__.replace('by_', '')}: {chosen}",
            **{half: metrics(ds, per_half[half]) for half, ds in parts.items()}}


def bm25_constants(parts: dict, chunks, qvecs: dict, cvecs) -> dict:
    """default@3 hybrid-ctx with BM25's k1 and b chosen on the tune half by the ship rule (today: 1.2, 0.75)."""
    from ragindex.store import lexical

    saved, tuned = (lexical.K1, lexical.B), []
    try:
        for k1, b in ((k1, b) for k1 in (0.9, 1.2, 1.6) for b in (0.5, 0.75, 0.9)):
            lexical.K1, lexical.B = k1, b
            tuned.append(((k1, b), metrics(parts["tune"], score(parts["tune"], chunks, qvecs["tune"], cvecs, 5, "hybrid-ctx"))))
        best = by_ship_rule(tuned)
        lexical.K1, lexical.B = best
        return {"fusion": f"{CTX_HYBRID.label()}, bm25 k1={best[0]} b={best[1]}", "tune": dict(tuned)[best],
                **{h: metrics(parts[h], score(parts[h], chunks, qvecs[h], cvecs, 5, "hybrid-ctx")) for h in ("report", "all")},
                "tune_grid": {f"k1={k}, b={b}": m for (k, b), m in tuned}}
    finally:
        lexical.K1, lexical.B = saved


def rocchio(parts: dict, chunks, qvecs: dict, cvecs) -> dict:
    """default@3 hybrid-ctx with the query vector moved toward its first search's 3 best chunks (pseudo-relevance
    feedback, ``q + g * mean``), ``g`` chosen on the tune half by the ship rule."""
    def moved(half, g):
        first = rank_chunks(parts[half], chunks, qvecs[half], cvecs, 3, "hybrid-ctx")
        q = qvecs[half] + g * np.stack([cvecs[r].mean(0) for r in first])
        return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)

    tuned = [(g, metrics(parts["tune"], score(parts["tune"], chunks, moved("tune", g), cvecs, 5, "hybrid-ctx"))) for g in (0.2, 0.5, 1.0)]
    g = by_ship_rule(tuned)
    return {"fusion": f"{CTX_HYBRID.label()}, query + {g} x mean of its first 3 hits", "tune": dict(tuned)[g],
            **{h: metrics(parts[h], score(parts[h], chunks, moved(h, g), cvecs, 5, "hybrid-ctx")) for h in ("report", "all")}}


def published_rows() -> dict:
    out = {}
    for ref, v in json.loads((RESULTS / "retrieval.json").read_text())["chroma"].items():
        for mode in ("dense", "bm25", "hybrid"):
            out[f"{ref} {mode}"] = {"family": "published schema", "tune": _pct(v["tune_half"][mode]),
                                     "report": _pct(v["report_half"][mode]), "all": _pct(v["all_questions"][mode])}
    return out


def span_rows() -> dict:
    raw = json.loads((RESULTS / "spans.json").read_text())["candidates"]
    return {f"default@2 hybrid, {name}": {"family": "spans (benchmarks/spans.py)", "lam": c.get("lam"),
                                          **{h: {m: c[h][m] for m in ("recall", "iou", "precision")} for h in ("tune", "report", "all") if h in c}}
            for name, c in raw.items() if name != "baseline" and "all" in c}


def _pct(m: dict) -> dict:
    return {k: round(100 * m[k], 2) for k in ("recall", "iou", "precision") if k in m}


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(25, 6))
    colors = {"published schema": "#999999", "boundaries": "#4c72b0", "fusion": "#55a868", "spans (benchmarks/spans.py)": "#c44e52",
              "neighbours": "#8172b2"}
    for ax, half in zip(axes, ("tune", "report", "all")):
        for name, row in out["candidates"].items():
            if half not in row:
                continue
            ax.scatter(row[half]["iou"], row[half]["recall"], color=colors[row["family"]], s=28)
            ax.annotate(name, (row[half]["iou"], row[half]["recall"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
        for (r, i), label in ((SHIP, "ship"), (TARGET, "target")):
            ax.axhline(r, color="k", lw=0.6, ls="--")
            ax.axvline(i, color="k", lw=0.6, ls="--")
            ax.text(i, r, f" {label} ({r}, {i})", fontsize=7)
        ax.set_title("all 472 questions (the targets' set)" if half == "all" else f"{half} half (k=5)")
        ax.set_xlabel("IoU (x100)")
    axes[0].set_ylabel("recall (x100)")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=f) for f, c in colors.items()]
    axes[2].legend(handles=handles, fontsize=7, loc="lower right")
    ax = axes[3]  # the check of carrying over: SciFact claims and their rationale sentences
    for name, row in out.get("scifact", {}).get("evidence_spans", {}).items():
        for split, marker in (("train", "o"), ("test", "s")):
            ax.scatter(row[split]["iou"], row[split]["recall"], marker=marker, s=28,
                       color=colors["neighbours"] if ("ctx" in name or "neighbour" in name) else colors["published schema"])
            ax.annotate(f"{name} ({split})", (row[split]["iou"], row[split]["recall"]), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
    ax.set_title("SciFact rationale sentences (not used for any choice), k=5")
    ax.set_xlabel("IoU (x100)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "moonshot.json")
    ap.add_argument("--plot", action="store_true", help="redraw the plot from the results file")
    args = ap.parse_args()
    if args.plot:
        plot(json.loads(args.out.read_text()), args.out.with_suffix(".png"))
        return
    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.schemas import SchemaRegistry

    t0 = time.time()
    scratch = Path(tempfile.mkdtemp(prefix="moonshot-schemas-"))
    shutil.copytree(REPO / "schemas" / "chunkers", scratch / "chunkers")
    for name, body in BOUNDARIES.items():
        (scratch / "chunkers" / f"{name}.v1.toml").write_text(f'description = "issue 26 candidate"\n{body}')
    reg = SchemaRegistry(scratch)
    ds = datasets.load("chroma")
    tune, report = halves(ds)
    parts = {"tune": tune, "report": report, "all": ds}
    emb = CachedEmbedder(eval_cache_path("chroma"), EmbedderConfig("default").build, label="eval-chroma")
    qvecs = {h: emb.embed(p.queries) for h, p in parts.items()}
    out: dict = {"targets": {"ship": SHIP, "moonshot": TARGET}, "candidates": {**published_rows(), **span_rows()}}
    for name in ["default@2", "default@3", *BOUNDARIES]:
        ref = name if "@" in name else f"{name}@1"
        chunks = chunk_dataset(ds, reg.get(ref), emb.embed)
        cvecs = emb.embed(chunks.embedded)
        if name in ("default@2", "default@3") or name.startswith("recursive-"):
            row = rows_for(parts, chunks, qvecs, cvecs, WINDOW_GRID, "hybrid-ctx")
            out["candidates"][f"{name} hybrid-ctx"] = {"family": "neighbours", "chunks": len(chunks.texts), **row}
            print(f"[{time.time() - t0:.0f}s] {name} hybrid-ctx: " + json.dumps({h: row[h] for h in ("fusion", "tune", "report", "all")}),
                  flush=True)
        if name == "default@3":
            for grid, label in ((FREE_NEIGHBOUR_GRID, "neighbours move documents"), (NEIGHBOUR_GRID, "documents keep their rank")):
                row = rows_for(parts, chunks, qvecs, cvecs, grid, "hybrid-ctx")
                out["candidates"][f"default@3 neighbour bonus ({label})"] = {"family": "neighbours", "chunks": len(chunks.texts), **row}
            row = fitted_alpha(parts, chunks, qvecs, cvecs, by_tenant, CTX_HYBRID, "hybrid-ctx")
            out["candidates"]["default@3 hybrid-ctx, alpha fitted per tenant"] = {"family": "fusion", **row}
            print(f"[{time.time() - t0:.0f}s] per-tenant alpha: " + json.dumps(row), flush=True)
            out["candidates"]["default@3 hybrid-ctx, bm25 k1/b tuned"] = {"family": "fusion", **bm25_constants(parts, chunks, qvecs, cvecs)}
            out["candidates"]["default@3 hybrid-ctx, query feedback"] = {"family": "fusion", **rocchio(parts, chunks, qvecs, cvecs)}
            for key in ("default@3 hybrid-ctx, bm25 k1/b tuned", "default@3 hybrid-ctx, query feedback"):
                print(f"[{time.time() - t0:.0f}s] {key}: " + json.dumps(out["candidates"][key]), flush=True)
        if name == "default@2":
            out["candidates"]["default@2 hybrid, adaptive alpha"] = {
                "family": "fusion", **fitted_alpha(parts, chunks, qvecs, cvecs, by_length, DEFAULT_HYBRID, "hybrid")}
            continue
        if name == "default@3":
            continue
        out["candidates"][f"{name} hybrid"] = {"family": "boundaries", "chunks": len(chunks.texts),
                                               **rows_for(parts, chunks, qvecs, cvecs)}
        print(f"[{time.time() - t0:.0f}s] {name}: " + json.dumps({h: out["candidates"][f"{name} hybrid"][h] for h in ("tune", "report", "all")}),
              flush=True)
    out["scifact"] = carryover.run(reg, CachedEmbedder(eval_cache_path("scifact"), EmbedderConfig("default").build, label="eval-scifact"))
    shutil.rmtree(scratch, ignore_errors=True)
    out["meets_ship_minimum_on_all_questions"] = sorted(n for n, r in out["candidates"].items()
                                                        if r["all"]["recall"] >= SHIP[0] and r["all"]["iou"] >= SHIP[1])
    out["seconds"] = round(time.time() - t0, 1)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    plot(out, args.out.with_suffix(".png"))
    print(json.dumps({"meets_ship_minimum_on_all_questions": out["meets_ship_minimum_on_all_questions"]}))


if __name__ == "__main__":
    main()
