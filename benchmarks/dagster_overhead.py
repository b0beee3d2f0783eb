"""Dagster overhead (issue 5): `dagster dev` startup, and a reindex through Dagster vs the stages directly.

1. Startup: seconds from launching ``dagster dev`` (repository root, a temp
   DAGSTER_HOME with the repo's dagster.yaml) until the webserver answers
   /server_info. Every process it started is stopped afterwards.
2. Reindex overhead on the same corpus and embedder, in one process:
   direct = ``ragindex.indexing.run.reindex`` (the stages, no Dagster);
   dagster = the ``reindex_tenant`` asset job executed in-process against a sqlite
   instance (what a UI or sensor run executes: the in-process executor, events and
   metadata recorded); reported = ``reindex`` then ``ragindex.instance.report_run``
   (what `ragindex reindex` does with $DAGSTER_HOME set: the library's run, then its
   materializations and checks reported to the instance). Each on a fresh tenant store
   ("cold": everything embedded) and then again ("warm": nothing to embed), alternated
   to spread machine noise. Ratio = dagster (or reported) / direct wall time.
3. The CLI as a subprocess (imports included), cold, without and with $DAGSTER_HOME.

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

from ragindex.embedders.registry import EmbedderConfig  # noqa: E402
from ragindex.indexing.plan import Throughput  # noqa: E402
from ragindex.indexing.run import reindex  # noqa: E402
from ragindex.store.tenants import TenantStore  # noqa: E402
from tests.support.data import scifact_docs, write_jsonl  # noqa: E402
from tests.support.devserver import dagster_dev, fresh_dagster_home  # noqa: E402

BIN = Path(sys.executable).parent


def _dagster_home(root: Path) -> Path:
    return fresh_dagster_home(root / "dagster_home")


def startup_seconds(work: Path) -> float:
    env = {**os.environ, "DAGSTER_HOME": str(_dagster_home(work)), "RAGINDEX_HOME": str(work / "home"),
           "RAGINDEX_SOURCES": str(work / "sources")}
    with dagster_dev(env) as server:
        return server.startup_s


def _job_run(store: TenantStore, src: Path, model: str, instance) -> None:
    """The reindex_tenant job for tenant "bench", in-process (the code location's executor)."""
    from ragindex.orchestration.location import REINDEX_JOB, build_definitions

    if not instance.has_dynamic_partition("tenants", "bench"):
        instance.add_dynamic_partitions("tenants", ["bench"])
    job = build_definitions(store_root=store.root, model=model).resolve_job_def(REINDEX_JOB)
    job.execute_in_process(instance=instance, partition_key="bench",
                           run_config={"ops": {"documents": {"config": {"source": str(src.absolute())}}},
                                       "loggers": {"console": {"config": {"log_level": "WARNING"}}}})


def in_process(src: Path, model: str, repeats: int, work: Path) -> dict:
    from dagster import DagsterInstance

    from ragindex.instance import report_run

    embedder = EmbedderConfig(model).build()
    ways = ("direct", "dagster", "reported")
    times = {f"{w}_{phase}": [] for w in ways for phase in ("cold", "warm")}
    for i in range(repeats):
        for way in ways:
            store = TenantStore(work / f"{way}-{i}" / "home")
            Throughput(store.root).record(embedder, 100_000, 1.0 if model == "hash" else 50.0)
            if way != "direct":
                os.environ["DAGSTER_HOME"] = str(_dagster_home(work / f"{way}-{i}"))
                instance = DagsterInstance.get()
            for phase in ("cold", "warm"):
                t0 = time.perf_counter()
                if way == "dagster":
                    _job_run(store, src, model, instance)
                else:
                    result = reindex(store, "bench", source=src, embedder=embedder)
                    if way == "reported":
                        report_run(result)
                times[f"{way}_{phase}"].append(time.perf_counter() - t0)
            if way != "direct":
                instance.dispose()
                del os.environ["DAGSTER_HOME"]
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
           "median_s": {k: round(v, 3) for k, v in med.items()}}
    for way in ("dagster", "reported"):
        out[f"{way}_ratio_cold"] = round(med[f"{way}_cold"] / med["direct_cold"], 2)
        out[f"{way}_ratio_warm"] = round(med[f"{way}_warm"] / med["direct_warm"], 2)
        out[f"{way}_added_s_cold"] = round(med[f"{way}_cold"] - med["direct_cold"], 3)
    return out


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
