"""Backfill N hosted-model tenants on a Postgres-backed Dagster instance: one run at a time, then C at once.

    .venv/bin/python benchmarks/backfill.py --tenants 6 --concurrency 3 [--api-base URL] [--tpm T] [--parallel-only] --json

It starts its own PostgreSQL server (ragindex.postgres.LocalPostgres, in a temp folder), a
DAGSTER_HOME with dagster_home/postgres/dagster.yaml (run queue: RAGINDEX_MAX_CONCURRENT_RUNS,
one run per tenant partition; the embeddings pool) and `dagster-daemon run`, then runs
`dagster job backfill` over all tenant partitions and waits for every run. Each tenant is
`openai:text-embedding-3-small` over its own 200+ SciFact abstracts (../shared/data, or
$RAGINDEX_DATA_ROOT; the chroma passages if absent), against the fake OpenAI-compatible
server of the tests (1 s latency per request) unless --api-base names another. The
sequential phase (max_concurrent_runs 1) and the parallel one (C) each use a fresh tenant
store and database, so both embed everything. --tpm T sets RAGINDEX_API_TPM=T for every run
(the limit is shared by all runs of one account) and the JSON reports the most tokens the
server saw in any 60 s window. Results: benchmarks/results/backfill.json (+ backfill.png).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402

from ragindex.fsutil import sha256_text  # noqa: E402
from ragindex.postgres import LocalPostgres  # noqa: E402
from ragindex.store.tenants import TenantSettings, TenantStore  # noqa: E402
from tests.support.data import passage_docs, scifact_docs, shared_data, write_jsonl  # noqa: E402
from tests.support.devserver import stop_process_group  # noqa: E402
from tests.support.fake_openai import Behaviour, FakeOpenAI  # noqa: E402
from tests.support.tenants import register  # noqa: E402

MODEL = "openai:text-embedding-3-small"
DOCS_PER_TENANT = 200
DONE = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def corpus(n_tenants: int) -> tuple[str, list[list[dict]]]:
    """Distinct documents per tenant: SciFact abstracts if the shared data is there, else the chroma passages."""
    if (shared_data() / "scifact" / "corpus.jsonl").exists():
        docs, name = scifact_docs(n_tenants * DOCS_PER_TENANT), "scifact"
    else:
        docs, name = passage_docs(), "chroma passages"
    per = len(docs) // n_tenants
    return name, [docs[i * per: (i + 1) * per] for i in range(n_tenants)]


def phase(name: str, work: Path, pg: LocalPostgres, tenants: list[str], docs: list[list[dict]], runs_at_once: int,
          env_extra: dict[str, str], timeout: float, api_base: str | None, latency: float) -> dict:
    """One backfill of every tenant partition at ``runs_at_once`` (against a fake server of its own unless
    ``api_base``): its wall time, runs and their windows, and what the fake server billed."""
    if api_base:
        return _phase(name, work, pg, tenants, docs, runs_at_once, {**env_extra, "OPENAI_BASE_URL": api_base}, timeout)
    with FakeOpenAI(Behaviour(latency_s=latency)) as server:
        out = _phase(name, work, pg, tenants, docs, runs_at_once, {**env_extra, "OPENAI_BASE_URL": server.base_url}, timeout)
        return {**out, "billing": billing(server, TenantStore(work / name / "ragindex"), tenants)}


def _phase(name: str, work: Path, pg: LocalPostgres, tenants: list[str], docs: list[list[dict]], runs_at_once: int,
           env_extra: dict[str, str], timeout: float) -> dict:
    home, store = work / name / "dagster_home", TenantStore(work / name / "ragindex")
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster_home" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    db = LocalPostgres(pg.folder, port=pg.port, db=f"bench_{name}", durable=False).up()
    for tenant, part in zip(tenants, docs):
        register(store, tenant, TenantSettings(source=str(write_jsonl(work / name / f"{tenant}.jsonl", part)), model=MODEL))
    (work / name / "sources").mkdir()
    env = {**os.environ, **env_extra, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": db.url(),
           "RAGINDEX_MAX_CONCURRENT_RUNS": str(runs_at_once), "RAGINDEX_HOME": str(store.root),
           "RAGINDEX_SOURCES": str(work / name / "sources"), "PYTHONPATH": str(REPO)}
    env.pop("RAGINDEX_MODEL", None)
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "DAGSTER_PG_URL", "RAGINDEX_MAX_CONCURRENT_RUNS")})
    instance = dg.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("tenants", tenants)
    bindir = Path(sys.executable).parent
    with open(work / name / "daemon.log", "w") as log:
        daemon = subprocess.Popen([str(bindir / "dagster-daemon"), "run"], cwd=REPO, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            ready = time.time() + 120  # the daemon's start-up is not part of the backfill: wait for its queue's heartbeat
            while "QUEUED_RUN_COORDINATOR" not in instance.get_daemon_heartbeats() and time.time() < ready:
                time.sleep(0.5)
            t0 = time.time()
            subprocess.run([str(bindir / "dagster"), "job", "backfill", "-j", "reindex_tenant", "--partitions",
                            ",".join(tenants), "--noprompt"], cwd=REPO, env=env, check=True, capture_output=True)
            while True:
                runs = instance.get_runs()
                if len(runs) == len(tenants) and all(r.status in DONE for r in runs):
                    break
                if time.time() - t0 > timeout or daemon.poll() is not None:
                    raise RuntimeError(f"{name}: runs {[(r.tags.get('dagster/partition'), r.status) for r in runs]}, "
                                       f"see {work / name / 'daemon.log'}")
                time.sleep(0.5)
            records = instance.get_run_records()
            wall = max(r.end_time for r in records) - t0
        finally:
            stop_process_group(daemon)
    instance.dispose()
    return {"wall_s": round(wall, 1), "runs": len(runs), "succeeded": sum(r.status == dg.DagsterRunStatus.SUCCESS for r in runs),
            "run_windows": sorted([round(r.start_time - t0, 1), round(r.end_time - t0, 1)] for r in records)}


def billing(server: FakeOpenAI, store: TenantStore, tenants: list[str]) -> dict:
    """What the fake server billed. A text billed twice is one billed more often than the tenants that needed it:
    each tenant has its own cache, so the same chunk text in two tenants is rightly billed twice; a text in no
    cache (a drift probe, which every tenant sends once) is needed once per tenant."""
    needed: Counter = Counter()
    for tenant in tenants:
        with duckdb.connect(str(store.paths(tenant).cache), read_only=True) as db:
            needed.update(h for (h,) in db.execute("SELECT text_hash FROM embeddings").fetchall())
    billed = Counter(server.billed_texts())
    twice = sum(max(0, c - (needed.get(sha256_text(t)) or len(tenants))) for t, c in billed.items())
    return {"requests": len(server.requests), "tokens_billed": server.billed_tokens(), "texts_billed": sum(billed.values()),
            "texts_billed_twice": twice, "rate_limited_429": sum(r.status == 429 for r in server.requests),
            "peak_tokens_60s": server.peak_tokens(60.0)}


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    y = 0
    for name, color in (("sequential", "tab:gray"), ("parallel", "tab:blue")):
        for s, e in out.get(f"{name}_runs", []):
            ax.barh(y, e - s, left=s, color=color)
            y += 1
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds since the backfill was launched (bars: run start to end)")
    ax.set_ylabel("run")
    ax.set_title(f"backfill of {out['tenants']} tenants: sequential {out.get('wall_sequential_s')} s (gray), "
                 f"{out['concurrency']} at once {out['wall_parallel_s']} s (blue)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=3)
    ap.add_argument("--api-base", help="an OpenAI-compatible /v1 URL (default: the fake server, 1 s latency)")
    ap.add_argument("--tpm", type=int, help="RAGINDEX_API_TPM for every run (shared by all of them)")
    ap.add_argument("--latency", type=float, default=1.0, help="the fake server's latency per request")
    ap.add_argument("--parallel-only", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "backfill.json")
    a = ap.parse_args()
    source, docs = corpus(a.tenants)
    tenants = [f"tenant{i}" for i in range(a.tenants)]
    extra = {"OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY") or "sk-bench"}
    if a.tpm:
        extra["RAGINDEX_API_TPM"] = str(a.tpm)
    work = Path(tempfile.mkdtemp(prefix="ragbf-", dir="/tmp"))
    os.chmod(work, 0o711)  # the postgres user (the server runs as it when we are root) must reach work/pg
    pg = LocalPostgres(work / "pg", durable=False)
    out = {"storage": "postgres", "tenants": a.tenants, "concurrency": a.concurrency, "model": MODEL, "source": source,
           "docs_per_tenant": len(docs[0]), "tpm": a.tpm, "api": a.api_base or f"fake, {a.latency:.1f} s latency",
           "cpus": os.cpu_count()}
    try:
        pg.up()
        if not a.parallel_only:
            seq = phase("sequential", work, pg, tenants, docs, 1, extra, a.timeout, a.api_base, a.latency)
            out.update(wall_sequential_s=seq["wall_s"], sequential_runs=seq["run_windows"], sequential_billing=seq.get("billing"))
        par = phase("parallel", work, pg, tenants, docs, a.concurrency, extra, a.timeout, a.api_base, a.latency)
        out.update(wall_parallel_s=par["wall_s"], parallel_runs=par["run_windows"], runs_succeeded=par["succeeded"],
                   runs=par["runs"], parallel_billing=par.get("billing"))
        if not a.parallel_only:
            out["runs_succeeded"] += seq["succeeded"]
            out["runs"] += seq["runs"]
            out["parallel_over_sequential"] = round(out["wall_parallel_s"] / out["wall_sequential_s"], 3)
        if not a.api_base:
            bills = [out[k] for k in ("sequential_billing", "parallel_billing") if out.get(k)]
            out["texts_billed_twice"] = sum(b["texts_billed_twice"] for b in bills)
            out["peak_tokens_60s"] = max(b["peak_tokens_60s"] for b in bills)
            if a.tpm:
                out["peak_over_tpm"] = round(out["peak_tokens_60s"] / a.tpm, 3)
    finally:
        pg.down()
        shutil.rmtree(work, ignore_errors=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    try:
        plot(out, a.out.with_suffix(".png"))
    except ImportError:
        pass  # matplotlib is in the `bench` extra
    print(json.dumps(out, indent=1) if a.json else f"sequential {out.get('wall_sequential_s')} s, parallel {out['wall_parallel_s']} s")


if __name__ == "__main__":
    main()
