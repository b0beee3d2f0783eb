"""A million tiny files (issue 7): `ragindex plan` over a folder of N one-line files.

Makes N files (1,000 per sub-folder; every 500th one empty, so it must be skipped
with a reason), then runs the dry run that `ragindex plan` runs: read, normalise,
hash, chunk with default@1 and plan against an empty tenant with the hash embedder.
Reports seconds per stage, peak RSS and the counts, so one can check that nothing
was lost: documents + skipped == files.

Usage: python benchmarks/many_files.py --files 1000000   (writes benchmarks/results/many_files.json)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.chunking import chunk_documents  # noqa: E402
from pipeline.cost import Prices, Throughput  # noqa: E402
from pipeline.documents import load_documents  # noqa: E402
from pipeline.embedder import HashEmbedder  # noqa: E402
from pipeline.reindex import plan_embeddings  # noqa: E402
from pipeline.tenants import TenantStore  # noqa: E402
from schemas import SchemaRegistry  # noqa: E402


def make_files(root: Path, n: int) -> None:
    for i in range(0, n, 1000):
        sub = root / f"b{i // 1000:04d}"
        sub.mkdir(parents=True)
        for j in range(min(1000, n - i)):
            (sub / f"{j}.txt").write_text(f"tiny document number {i + j}" if j % 500 else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "many_files.json")
    args = ap.parse_args()
    out = {"machine": {"python": platform.python_version(), "platform": platform.platform()}, "files": args.files}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "src"
        t = time.perf_counter()
        make_files(root, args.files)
        out["make_files_s"] = round(time.perf_counter() - t, 1)
        print(f"made {args.files:,} files in {out['make_files_s']} s", flush=True)
        t = time.perf_counter()
        docs, report = load_documents(root)
        out["read_s"] = round(time.perf_counter() - t, 1)
        reasons: dict[str, int] = {}
        for s in report.skipped:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        out.update(documents=docs.num_rows, skipped=len(report.skipped), skipped_reasons=reasons)
        print(f"read {docs.num_rows:,} documents, skipped {len(report.skipped):,} in {out['read_s']} s", flush=True)
        schema = SchemaRegistry().get("default@1")
        t = time.perf_counter()
        chunks = chunk_documents("bench", docs, schema, progress=True)
        out["chunk_s"] = round(time.perf_counter() - t, 1)
        store = TenantStore(Path(tmp) / "home")
        emb = HashEmbedder()
        Throughput(store.root / "throughput.json").record(emb, tokens=100_000, seconds=1.0)
        t = time.perf_counter()
        plan = plan_embeddings(store, "bench", schema, docs, chunks, emb, Prices.load(), skipped=len(report.skipped))
        out["plan_s"] = round(time.perf_counter() - t, 1)
        out.update(chunks=chunks.num_rows, texts_to_embed=plan.texts_to_embed, tokens_to_embed=plan.tokens_to_embed)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["nothing_lost"] = out["documents"] + out["skipped"] == args.files
    print(json.dumps(out, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
