"""What the default configuration costs next to the one before it (issue 15).

Two fresh tenants over the same real text (the first 2,000 SciFact abstracts), indexed
with the real model (all-MiniLM-L6-v2): one with ``default@1`` searched in ``dense``
mode, one with the new default schema in its default mode. Measured in one run:

* full-reindex wall time (the model is loaded and its throughput known beforehand, as
  in production), texts and tokens embedded;
* search latency, p50 / p99 over SciFact's 300 test queries, in process (the query's
  forward pass included), each configuration in its own mode and the new default
  schema in ``dense`` too.

Targets (ratios to default@1 dense): reindex wall <= 1.5x, search p50 <= 2x.

Usage:
    python benchmarks/default_cost.py                          # the shipped default (DEFAULT_SCHEMA, DEFAULT_MODE)
    python benchmarks/default_cost.py --candidate recursive-200@1 --mode hybrid
    python benchmarks/default_cost.py --candidate default@3 --mode hybrid-ctx --baseline default@2 --baseline-mode hybrid \
        --out benchmarks/results/default_cost_ctx.json          # issue 26: the default against the previous one
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.data import scifact_docs, shared_data, write_jsonl  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "benchmarks" / ".work" / "default_cost"
DOCS = 2000


def test_queries() -> list[str]:
    scifact = shared_data() / "scifact"
    ids = {line.split("\t")[0] for line in (scifact / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    by_id = {json.loads(line)["_id"]: json.loads(line)["text"] for line in open(scifact / "queries.jsonl", encoding="utf-8")}
    return [by_id[q] for q in sorted(ids) if q in by_id]


def index(name: str, src: Path, schema: str, emb) -> dict:
    from ragindex.indexing.plan import Throughput
    from ragindex.indexing.run import reindex
    from ragindex.store.tenants import TenantStore

    store = TenantStore(WORK / name)
    Throughput(store.root).get(emb)  # calibrated (or loaded) outside the timing
    t0 = time.perf_counter()
    res = reindex(store, "t", source=src, chunker=schema, embedder=emb)
    wall = time.perf_counter() - t0
    return {"store": store, "wall_s": round(wall, 2), "chunks": res.plan.chunks_total, "texts_embedded": res.ledger.get("texts", 0),
            "tokens_embedded": res.ledger.get("tokens", 0)}


def latency(store, emb, queries: list[str], mode: str) -> dict:
    from ragindex.search.searcher import Searcher

    s = Searcher(store, emb)
    for q in queries[:5]:
        s.search("t", q, k=10, mode=mode)  # load the generation and the lexical index outside the timing
    times = []
    for q in queries:
        t0 = time.perf_counter()
        s.search("t", q, k=10, mode=mode)
        times.append(time.perf_counter() - t0)
    return {"p50_ms": round(1000 * float(np.percentile(times, 50)), 2), "p99_ms": round(1000 * float(np.percentile(times, 99)), 2),
            "queries": len(queries)}


def main() -> None:
    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.schemas.registry import DEFAULT_SCHEMA
    from ragindex.search.searcher import DEFAULT_MODE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidate", default=DEFAULT_SCHEMA)
    ap.add_argument("--mode", default=DEFAULT_MODE)
    ap.add_argument("--docs", type=int, default=DOCS)
    ap.add_argument("--baseline", default="default@1", help="the configuration to compare with (issue 26: default@2)")
    ap.add_argument("--baseline-mode", default="dense")
    ap.add_argument("--out", type=Path, default=RESULTS / "default_cost.json")
    args = ap.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    src = write_jsonl(WORK / "docs.jsonl", scifact_docs(args.docs))
    emb = EmbedderConfig("default").build()
    queries = test_queries()
    base = index("base", src, args.baseline, emb)
    cand = index("candidate", src, args.candidate, emb)
    ref = f"{args.baseline} {args.baseline_mode}"
    lat = {ref: latency(base["store"], emb, queries, args.baseline_mode),
           f"{args.candidate} dense": latency(cand["store"], emb, queries, "dense"),
           f"{args.candidate} {args.mode}": latency(cand["store"], emb, queries, args.mode)}
    for r in (base, cand):
        r.pop("store")
    ratios = {"reindex_wall": round(cand["wall_s"] / base["wall_s"], 3),
              "search_p50": round(lat[f"{args.candidate} {args.mode}"]["p50_ms"] / lat[ref]["p50_ms"], 3),
              "search_p99": round(lat[f"{args.candidate} {args.mode}"]["p99_ms"] / lat[ref]["p99_ms"], 3)}
    out = {"docs": args.docs, "model": emb.name, "cpus": os.cpu_count(), "baseline": {"schema": args.baseline, "mode": args.baseline_mode, **base},
           "candidate": {"schema": args.candidate, "mode": args.mode, **cand}, "search": lat,
           ("ratios_to_default1_dense" if ref == "default@1 dense" else "ratios_to_baseline"): ratios,
           "targets": {"reindex_wall_le_1.5x": ratios["reindex_wall"] <= 1.5, "search_p50_le_2x": ratios["search_p50"] <= 2.0}}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
