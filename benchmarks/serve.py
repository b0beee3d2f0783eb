"""`ragindex serve` under load: latency and throughput at 100,000 chunks per tenant (issue 16).

The tenant: 100,000 records cut from SciFact abstracts (windows of one, two and three
consecutive sentences, in corpus order), each one chunk under ``default@1``, indexed
with the real model (all-MiniLM-L6-v2), so the one segment is the HNSW index that
production uses at this size and its neighbourhoods are real. The build is kept in
``--home`` and reused by the next run (a no-op reindex).

Measured, with ``ragindex serve`` in its own process on a free localhost port:

* every mode (dense, bm25, hybrid) with 1 client (sequential requests) and 8 clients
  (8 threads, each with its own keep-alive connection): p50 / p99 latency as the
  client sees it (HTTP, JSON and the model's forward pass included) and queries/s;
* the same query through ``ragindex search`` (a new process per query, as a CLI user
  has it);
* ANN recall@10: what the server returns in dense mode against exact inner-product
  search over the same 100,000 vectors.

Queries: SciFact's test queries (300). Nothing else should run on the machine.

Usage:
    python benchmarks/serve.py                 # build if needed, measure, write results/serve.json
    python benchmarks/serve.py --build-only    # only build (or check) the 100,000-chunk tenant
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.tenants import register  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DATA = Path(os.environ.get("RAGINDEX_DATA", REPO.parent / "shared" / "data")) / "scifact"
TENANT = "bench"
CHUNKS = 100_000
SCHEMA = "default@1"
MODES = ("dense", "bm25", "hybrid")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")


def records(n: int = CHUNKS) -> list[dict]:
    """``n`` distinct records: windows of 1, 2 and 3 consecutive sentences of each SciFact abstract."""
    out: list[dict] = []
    seen: set[str] = set()
    docs = [json.loads(line) for line in open(DATA / "corpus.jsonl", encoding="utf-8")]
    for width in (1, 2, 3):
        for d in docs:
            sents = [s.strip() for s in _SENT.split(d["text"]) if len(s.strip()) > 20]
            for i in range(0, len(sents) - width + 1):
                text = " ".join(sents[i : i + width])
                if text in seen:
                    continue
                seen.add(text)
                out.append({"_id": f"{d['_id']}-w{width}-{i}", "text": text, "metadata": {"width": width}})
                if len(out) == n:
                    return out
    raise SystemExit(f"SciFact gives only {len(out)} distinct windows, fewer than {n}")


def build(home: Path, n: int = CHUNKS) -> dict:
    """Index the tenant (or find it unchanged); returns what the run did."""
    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.indexing.run import reindex
    from ragindex.store.tenants import TenantSettings, TenantStore

    src = home / "records.jsonl"
    if not src.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = src.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records(n)), encoding="utf-8")
        tmp.rename(src)
    store = TenantStore(home / "ragindex")
    if not store.exists(TENANT):
        register(store, TENANT, TenantSettings(source=str(src), chunker=SCHEMA))
    t0 = time.perf_counter()
    res = reindex(store, TENANT, embedder=EmbedderConfig("default").build(), progress=True)
    out = {"status": res.status, "generation": res.generation, "seconds": round(time.perf_counter() - t0, 1),
           "texts_embedded": res.ledger.get("texts", 0), "chunks": res.plan.chunks_total}
    print(f"build: {json.dumps(out)}", flush=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def search(self, query: str, mode: str, k: int = 10) -> tuple[float, dict]:
        body = json.dumps({"query": query, "k": k, "mode": mode})
        t0 = time.perf_counter()
        self.conn.request("POST", f"/v1/tenants/{TENANT}/search", body, self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        dt = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
        return dt, json.loads(data)


def pct(xs: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(xs, q)), 2)


def load(port: int, key: str, queries: list[str], mode: str, clients: int, per_client: int) -> dict:
    """``clients`` threads, each sending ``per_client`` requests back to back."""
    times: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def worker(i: int) -> None:
        c = Client(port, key)
        for j in range(per_client):
            try:
                dt, _ = c.search(queries[(i * per_client + j) % len(queries)], mode)
                times[i].append(dt)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    flat = [x for ts in times for x in ts]
    return {"clients": clients, "requests": len(flat), "errors": len(errors), "p50_ms": pct(flat, 50),
            "p99_ms": pct(flat, 99), "qps": round(len(flat) / wall, 1)}


def ann_recall(home: Path, port: int, key: str, queries: list[str], k: int = 10) -> dict:
    """The server's dense top-k against exact search over the generation's own vectors."""
    import faiss

    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.search.searcher import Searcher
    from ragindex.store.segments import vectors_of
    from ragindex.store.tenants import TenantStore

    emb = EmbedderConfig("default").build()
    gen = Searcher(TenantStore(home / "ragindex"), emb).generation(TENANT)
    vecs, ids = [], []
    for v in gen.views:
        allv = vectors_of(v.seg.index)
        mask = v.mask if v.mask is not None else np.ones(len(allv), bool)
        vecs.append(allv[mask])
        ids += [cid for cid, keep in zip(v.seg.rows.column("chunk_id").to_pylist(), mask) if keep]
    flat = faiss.IndexFlatIP(gen.manifest.dim)
    flat.add(np.concatenate(vecs))
    _, exact = flat.search(emb.embed(queries).astype(np.float32), k)
    c = Client(port, key)
    hit = 0
    for q, row in zip(queries, exact):
        _, data = c.search(q, "dense", k)
        hit += len({ids[i] for i in row} & {h["chunk_id"] for h in data["hits"]})
    return {"vectors": len(ids), "index": [v.seg.info.index_type for v in gen.views], "queries": len(queries),
            "recall_at_10": round(hit / (k * len(queries)), 4)}


def cli_search(home: Path, query: str, runs: int = 3) -> dict:
    """Wall time of `ragindex search` in a new process (model and generation loaded per call)."""
    env = {**os.environ, "RAGINDEX_HOME": str(home / "ragindex")}
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ragindex.cli", "search", "--tenant", TENANT, "-k", "10", "--json", query],
                       env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    return {"runs": runs, "median_s": round(float(np.median(walls)), 2), "walls_s": [round(w, 2) for w in walls]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=REPO / "benchmarks" / ".work" / "serve")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--chunks", type=int, default=CHUNKS, help="records (= chunks) in the tenant; fewer for a smoke run")
    ap.add_argument("--requests", type=int, default=300, help="requests per measurement (split across clients)")
    ap.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    args = ap.parse_args()
    built = build(args.home, args.chunks)
    if args.build_only:
        return
    from ragindex.store import keys
    from ragindex.store.tenants import TenantStore

    queries = [json.loads(line)["text"] for line in open(DATA / "queries.jsonl", encoding="utf-8")]
    test_ids = {line.split("\t")[0] for line in open(DATA / "qrels" / "test.tsv", encoding="utf-8").read().splitlines()[1:]}
    by_id = {json.loads(line)["_id"]: json.loads(line)["text"] for line in open(DATA / "queries.jsonl", encoding="utf-8")}
    queries = [by_id[q] for q in sorted(test_ids) if q in by_id] or queries[:300]
    key, _ = keys.create(TenantStore(args.home / "ragindex"), TENANT, "benchmark")
    port = free_port()
    env = {**os.environ, "RAGINDEX_HOME": str(args.home / "ragindex")}
    proc = subprocess.Popen([sys.executable, "-m", "ragindex.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit(f"server did not come up: {proc.stderr.read() if proc.poll() is not None else 'timeout'}")
            time.sleep(0.3)
        warm = Client(port, key)
        for mode in MODES:  # load the generation (and the lexical index) outside the timings
            for q in queries[:5]:
                warm.search(q, mode)
        out: dict = {"chunks": built["chunks"], "build": built, "queries": len(queries), "machine": {"cpus": os.cpu_count()},
                     "modes": {}}
        for mode in MODES:
            one = load(port, key, queries, mode, 1, args.requests)
            eight = load(port, key, queries, mode, 8, max(1, args.requests // 8))
            out["modes"][mode] = {"1_client": one, "8_clients": eight}
            print(f"{mode}: 1 client {json.dumps(one)}; 8 clients {json.dumps(eight)}", flush=True)
        out["ann"] = ann_recall(args.home, port, key, queries)
        print(f"ann: {json.dumps(out['ann'])}", flush=True)
        out["cli_search"] = cli_search(args.home, queries[0])
        print(f"cli: {json.dumps(out['cli_search'])}", flush=True)
        dense = out["modes"]["dense"]["1_client"]
        out["ratios"] = {
            "cli_search_vs_served_dense_p50": round(out["cli_search"]["median_s"] * 1000 / dense["p50_ms"], 1),
            **{f"{m}_p50_vs_dense": round(out["modes"][m]["1_client"]["p50_ms"] / dense["p50_ms"], 2) for m in MODES},
        }
        out["targets"] = {"dense_1_client_p99_ms_le_50": dense["p99_ms"] <= 50, "ann_recall_at_10_ge_0.95": out["ann"]["recall_at_10"] >= 0.95}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"ratios": out["ratios"], "targets": out["targets"]}, indent=1))


if __name__ == "__main__":
    main()
