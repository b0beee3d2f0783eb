"""Dagster overhead (issue 5): `dagster dev` startup, and a reindex through Dagster vs the stages directly.

1. Startup: seconds from launching ``dagster dev`` (repository root, a temp
   DAGSTER_HOME with the repo's dagster.yaml) until the webserver answers
   /server_info. Every process it started is stopped afterwards.
2. Reindex overhead on the same corpus and embedder, in one process:
   direct = ``ragindex.reindex.reindex`` (the stages, no Dagster);
   dagster = ``ragindex.orchestration.run.reindex_in_dagster`` (what `ragindex
   reindex` does with $DAGSTER_HOME set: the asset job in-process against a sqlite
   instance, events and metadata recorded). Each on a fresh tenant store ("cold":
   everything embedded) and then again ("warm": nothing to embed), alternated
   direct/dagster to spread machine noise. Ratio = dagster / direct wall time.
3. The same through the CLI as a subprocess (imports included), cold.

Usage: python benchmarks/dagster_overhead.py [--docs 400] [--model hash|default] [--real-docs 60]
       [--repeats 2] [--out benchmarks/results/dagster_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.support.data import scifact_docs, write_jsonl  # noqa: E402
from benchmarks.support.devserver import dagster_dev, fresh_dagster_home  # noqa: E402
from ragindex.cost import Throughput  # noqa: E402
from ragindex.embedder import EmbedderConfig  # noqa: E402
from ragindex.reindex import reindex  # noqa: E402
from ragindex.tenants import TenantStore  # noqa: E402

BIN = Path(sys.executable).parent


def _dagster_home(root: Path) -> Path:
    return fresh_dagster_home(root / "dagster_home")


def startup_seconds(work: Path) -> float:
    env = {**os.environ, "DAGSTER_HOME": str(_dagster_home(work)), "RAGINDEX_HOME": str(work / "home"),
           "RAGINDEX_SOURCES": str(work / "sources")}
    with dagster_dev(env) as server:
        return server.startup_s


def in_process(src: Path, model: str, repeats: int, work: Path) -> dict:
    from dagster import DagsterInstance

    from ragindex.orchestration.run import reindex_in_dagster

    embedder = EmbedderConfig(model).build()
    times = {"direct_cold": [], "direct_warm": [], "dagster_cold": [], "dagster_warm": []}
    for i in range(repeats):
        for way in ("direct", "dagster"):
            store = TenantStore(work / f"{way}-{i}" / "home")
            Throughput(store.root).record(embedder, 100_000, 1.0 if model == "hash" else 50.0)
            if way == "dagster":
                os.environ["DAGSTER_HOME"] = str(_dagster_home(work / f"{way}-{i}"))
                instance = DagsterInstance.get()
            for phase in ("cold", "warm"):
                t0 = time.perf_counter()
                if way == "direct":
                    reindex(store, "bench", source=src, embedder=embedder)
                else:
                    reindex_in_dagster(store, "bench", source=src, model=model, instance=instance)
                times[f"{way}_{phase}"].append(time.perf_counter() - t0)
            if way == "dagster":
                instance.dispose()
                del os.environ["DAGSTER_HOME"]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "median_s": {k: round(v, 3) for k, v in med.items()},
            "ratio_cold": round(med["dagster_cold"] / med["direct_cold"], 2),
            "ratio_warm": round(med["dagster_warm"] / med["direct_warm"], 2),
            "added_s_cold": round(med["dagster_cold"] - med["direct_cold"], 3)}


def cli(src: Path, model: str, work: Path) -> dict:
    out = {}
    for way in ("direct", "dagster"):
        env = {**os.environ, "RAGINDEX_HOME": str(work / f"cli-{way}" / "home"), "PYTHONPATH": str(REPO)}
        env.pop("DAGSTER_HOME", None)
        if way == "dagster":
            env["DAGSTER_HOME"] = str(_dagster_home(work / f"cli-{way}"))
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "ragindex"), "--model", model, "reindex", "--tenant", "bench", "--source", str(src), "--json"],
                       env=env, check=True, capture_output=True)
        out[way] = round(time.perf_counter() - t0, 3)
    out["ratio"] = round(out["dagster"] / out["direct"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=400, help="SciFact documents for the hash-embedder runs")
    ap.add_argument("--real-docs", type=int, default=60, help="SciFact documents for the real-model runs (0: skip)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--startups", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "dagster_overhead.json")
    args = ap.parse_args()
    result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        starts = [startup_seconds(work / f"startup-{i}") for i in range(args.startups)]
        result["dagster_dev_startup_s"] = {"runs": [round(s, 2) for s in starts], "median": round(statistics.median(starts), 2)}
        print(f"dagster dev ready after {result['dagster_dev_startup_s']['median']} s (median of {starts and len(starts)})", flush=True)
        src = write_jsonl(work / "corpus.jsonl", scifact_docs(args.docs))
        result["hash"] = {"docs": args.docs, **in_process(src, "hash", args.repeats, work / "hash")}
        result["hash"]["cli_cold_s"] = cli(src, "hash", work / "hash")
        print("hash embedder:", json.dumps(result["hash"], indent=1), flush=True)
        if args.real_docs:
            small = write_jsonl(work / "small.jsonl", scifact_docs(args.real_docs))
            result["default_model"] = {"docs": args.real_docs, **in_process(small, "default", 1, work / "real")}
            print("all-MiniLM-L6-v2:", json.dumps(result["default_model"], indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
