"""A million tiny files (issues 7 and 12): the first plan, a full reindex, then a no-op, over N one-line files.

Makes N files (1,000 per sub-folder; every 500th one empty, so it must be skipped
with a reason), then:

1. the dry run `ragindex plan` runs on an empty tenant: detect (walk, read,
   normalise, hash), chunk with default@1, plan with the hash embedder;
2. a full reindex (hash embedder), which records every file's stat;
3. the same reindex again, which finds nothing to do: the walk stats every file
   and reads none.

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

from ragindex.embedders.local import HashEmbedder  # noqa: E402
from ragindex.indexing.plan import Throughput  # noqa: E402
from ragindex.indexing.prices import Prices
from ragindex.indexing.run import TenantRun, reindex  # noqa: E402
from ragindex.store.tenants import TenantStore  # noqa: E402


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
        time.sleep(2.5)  # past the racy window: these files exist before they are indexed
        store = TenantStore(Path(tmp) / "home")
        emb = HashEmbedder()
        Throughput(store.root).record(emb, tokens=100_000, seconds=1.0)
        with TenantRun(store, "bench", embedder=emb, source=root, chunker="default@1", prices=Prices.load()) as run:
            changes = run.detect()
            staged = run.chunk(changes)
            plan = run.plan(staged)
            out["plan"] = {k: round(v, 1) for k, v in run.seconds.items()}
        reasons: dict[str, int] = {}
        for s in changes.skipped:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        out.update(documents=changes.count("new"), skipped=len(changes.skipped), skipped_reasons=reasons,
                   chunks=staged.rows.num_rows, texts_to_embed=plan.texts_to_embed, tokens_to_embed=plan.tokens_to_embed)
        print(f"plan: {out['documents']:,} documents, {out['skipped']:,} skipped; {out['plan']}", flush=True)
        t = time.perf_counter()
        full = reindex(store, "bench", source=root, chunker="default@1", embedder=emb)
        out["full_reindex"] = {"wall_s": round(time.perf_counter() - t, 1), **{k: round(v, 1) for k, v in full.seconds.items()}}
        print(f"full reindex: {out['full_reindex']}", flush=True)
        t = time.perf_counter()
        noop = reindex(store, "bench", source=root, chunker="default@1", embedder=emb)
        out["noop_reindex"] = {"wall_s": round(time.perf_counter() - t, 1), "status": noop.status,
                               "files_seen": noop.changes["files_seen"], "files_read": noop.changes["files_read"],
                               **{k: round(v, 1) for k, v in noop.seconds.items()}}
        print(f"no-op reindex: {out['noop_reindex']}", flush=True)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["nothing_lost"] = out["documents"] + out["skipped"] == args.files
    print(json.dumps(out, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
