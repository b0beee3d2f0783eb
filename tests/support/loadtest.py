"""Search under load while a reindex promotes: the measurement behind the reliability test and benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def search_during_reindex(store, tenant: str, embedder, source: Path, chunker: str, threads: int = 2,
                          model: str = "hash", queries=("cancer", "protein", "cell", "gene expression")) -> dict:
    """Run searches in ``threads`` threads while a separate `ragindex reindex` process builds and promotes.

    Returns searches, errors (with the first few messages), searches/s and the generations seen.
    """
    from ragindex.search.searcher import Searcher

    searcher = Searcher(store, embedder)
    stop = threading.Event()
    stats = {"searches": 0, "errors": [], "generations": set()}
    lock = threading.Lock()

    def worker(i: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                hits = searcher.search(tenant, queries[(i + n) % len(queries)], k=5)
                with lock:
                    stats["searches"] += 1
                    stats["generations"].update(h.generation for h in hits)
            except Exception as exc:  # noqa: BLE001 - every failure is what we count
                with lock:
                    stats["errors"].append(f"{type(exc).__name__}: {exc}")
            n += 1

    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_MODEL": model}
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    try:
        proc = subprocess.run([sys.executable, "-m", "ragindex.cli", "reindex", "-t", tenant, "--source", str(source),
                               "--chunker", chunker, "--json"], env=env, capture_output=True, text=True, timeout=600)
        time.sleep(0.5)  # keep searching across the switch
    finally:
        stop.set()
        for t in pool:
            t.join()
    elapsed = time.perf_counter() - t0
    return {
        "reindex_rc": proc.returncode, "seconds": elapsed, "searches": stats["searches"],
        "searches_per_s": stats["searches"] / elapsed, "errors": len(stats["errors"]),
        "error_samples": stats["errors"][:5], "generations_seen": sorted(stats["generations"]),
    }
