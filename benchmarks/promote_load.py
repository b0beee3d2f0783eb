"""Searches under load while a reindex promotes (issue 7): searches/s and errors, one run.

A tenant is indexed with 300 SciFact documents; then 2 search threads run while a
separate `ragindex reindex` process indexes 1,200 documents and promotes. Uses the
hash embedder so the figure measures the index and the CURRENT switch, not the model.

Usage: python benchmarks/promote_load.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragindex.embedders.local import HashEmbedder  # noqa: E402
from ragindex.indexing.plan import Throughput  # noqa: E402
from ragindex.indexing.run import reindex  # noqa: E402
from ragindex.store.tenants import TenantStore  # noqa: E402
from tests.support.loadtest import search_during_reindex  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "promote_load.json")
    a = ap.parse_args()
    docs = [json.loads(line) for line in open(REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl", encoding="utf-8")][:1200]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, n in (("v1", 300), ("v2", 1200)):
            (work / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[:n]), encoding="utf-8")
        store = TenantStore(work / "home")
        emb = HashEmbedder()
        Throughput(store.root).record(emb, 100_000, 1.0)
        reindex(store, "acme", source=work / "v1.jsonl", chunker="recursive-200@1", embedder=emb)
        r = search_during_reindex(store, "acme", emb, work / "v2.jsonl", "recursive-200@1", threads=a.threads)
    a.out.write_text(json.dumps(r, indent=2))
    print(f"{r['searches']} searches in {r['seconds']:.1f} s during a reindex+promote: {r['searches_per_s']:.0f} searches/s, "
          f"{r['errors']} errors, generations served: {len(r['generations_seen'])}, reindex exit {r['reindex_rc']}")


if __name__ == "__main__":
    main()
