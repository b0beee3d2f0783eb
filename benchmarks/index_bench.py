"""Index benchmark (issue 4): build time, search latency p50/p99 and recall@10 of the
approximate index against exact search, for tenants of 1k, 10k and 100k vectors.

Data: (a) real all-MiniLM-L6-v2 vectors of the SciFact corpus chunks (recursive-250@1,
12,269 texts) with the 1,109 SciFact queries, if benchmarks/.work/scifact_*_fp16.npy
exist (made by the GPU check; any machine can make them with --make-real, slowly on CPU);
(b) synthetic unit vectors for the sizes real data does not reach: a mixture of 1,000
Gaussian clusters in 384 dimensions, queries drawn from the same mixture.

The index types and parameters are exactly ragindex.store.segments.choose_index's.

Usage: python benchmarks/index_bench.py [--sizes 1000 10000 100000] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import faiss  # noqa: E402

from ragindex.store.segments import APPROX_THRESHOLD, HNSW_EF_SEARCH, choose_index  # noqa: E402

WORK = REPO / "benchmarks" / ".work"


def synthetic(n: int, q: int, dim: int = 384, clusters: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)

    def draw(m):
        c = centres[rng.integers(0, clusters, m)]
        v = c + 0.6 * rng.standard_normal((m, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return draw(n), draw(q)


def build(kind: str, vectors: np.ndarray):
    n, dim = vectors.shape
    # force the type: "exact" is what small tenants get, "approx" what large ones get
    index, name = choose_index(0 if kind == "exact" else max(n, APPROX_THRESHOLD), dim)
    t0 = time.perf_counter()
    index.add(vectors)
    return index, name, time.perf_counter() - t0


def latency(index, queries: np.ndarray, k: int = 10):
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], k)
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1000
    return float(np.percentile(t, 50)), float(np.percentile(t, 99))


def recall_at_10(exact, approx, queries):
    _, e = exact.search(queries, 10)
    _, a = approx.search(queries, 10)
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(e, a)]))


def run(label: str, vectors: np.ndarray, queries: np.ndarray) -> dict:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    exact, en, eb = build("exact", vectors)
    approx, an, ab = build("approx", vectors)
    if hasattr(approx, "hnsw"):
        approx.hnsw.efSearch = HNSW_EF_SEARCH
    ep50, ep99 = latency(exact, queries)
    ap50, ap99 = latency(approx, queries)
    row = {"data": label, "n": len(vectors), "exact": {"type": en, "build_s": eb, "p50_ms": ep50, "p99_ms": ep99},
           "approx": {"type": an, "build_s": ab, "p50_ms": ap50, "p99_ms": ap99}, "recall_at_10": recall_at_10(exact, approx, queries)}
    print(f"{label:<28} n={len(vectors):>7}  exact build {eb:6.2f}s p50 {ep50:6.3f}ms p99 {ep99:6.3f}ms | "
          f"{an} build {ab:6.2f}s p50 {ap50:6.3f}ms p99 {ap99:6.3f}ms | recall@10 {row['recall_at_10']:.4f}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1, help="FAISS threads (1 = per-query latency of one core)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "index_bench.json")
    a = ap.parse_args()
    faiss.omp_set_num_threads(a.threads)
    rows = []
    real = WORK / "scifact_texts_fp16.npy"
    if real.exists():
        v = np.load(real).astype(np.float32)
        q = np.load(WORK / "scifact_queries_fp16.npy").astype(np.float32)[: a.queries]
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        for n in [s for s in a.sizes if s <= len(v)] + [len(v)]:
            rows.append(run("scifact chunks (real)", v[:n], q))
    for n in a.sizes:
        v, q = synthetic(n, a.queries)
        rows.append(run("synthetic clusters", v, q))
    a.out.write_text(json.dumps({"faiss": faiss.__version__, "threads": a.threads, "threshold": APPROX_THRESHOLD, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
