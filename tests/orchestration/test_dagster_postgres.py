"""The Postgres-backed instance (dagster_home/postgres/dagster.yaml) on a Postgres server of the test's own.

1. The storage really is Postgres through psycopg2 (the driver the URL names; psycopg 3 with
   SQLAlchemy 2.1 breaks dagster-postgres's NOTIFY), and storing events works.
2. The Dagster daemon runs a `dagster job backfill` of 3 tenant partitions through the run queue
   (max_concurrent_runs 2, one run per partition): at most 2 runs at once, and 2 at some
   moment; a second backfill of one tenant waits for that tenant's first run to end (one
   writer per tenant); every run succeeds and every tenant has a live generation.
3. A backfill of 3 hosted-model tenants (the fake OpenAI server), 2 runs at a time under one
   RAGINDEX_API_TPM: the runs' requests interleave, yet together they stay under the account's
   limit, through the bucket row in the instance's Postgres; nothing is billed twice.
The SQLite default (dagster_home/dagster.yaml) is covered by the other tests of this folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa
from dagster._core.events import DagsterEventType

from ragindex.embedders.shared_limits import account_id
from ragindex.embedders.shared_limits_pg import TABLE as PG_TABLE
from ragindex.fsutil import sha256_text
from ragindex.orchestration.assets import EMBEDDING_POOL
from ragindex.postgres import LocalPostgres
from ragindex.store.manifests import current_id
from ragindex.store.tenants import TenantSettings, TenantStore
from tests.support.cli import ragindex
from tests.support.data import REPO, passage_docs, write_jsonl
from tests.support.devserver import stop_process_group
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.hosted import KEY, MODEL, billed_once
from tests.support.postgres import require_postgres
from tests.support.tenants import register

TENANTS = ("acme", "globex", "initech")
DONE = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@pytest.fixture
def pg_home(postgres, tmp_path, monkeypatch) -> Path:
    """A DAGSTER_HOME with the Postgres dagster.yaml, its variables set here (and inherited by subprocesses)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    # a fresh database per test: the module's server is shared (up() on a running server creates the database)
    db = LocalPostgres(postgres.folder, port=postgres.port, db=f"t{time.monotonic_ns()}", durable=False).up()
    monkeypatch.setenv("DAGSTER_PG_URL", db.url())
    monkeypatch.setenv("RAGINDEX_MAX_CONCURRENT_RUNS", "2")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_the_postgres_instance_stores_events_through_psycopg2(pg_home):
    url = os.environ["DAGSTER_PG_URL"]
    assert url.startswith("postgresql+psycopg2://")
    assert sa.create_engine(url).dialect.driver == "psycopg2"
    instance = dg.DagsterInstance.from_config(str(pg_home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 2
        # the pool's default limit (concurrency: pools: default_limit) applies to the embeddings pool
        assert instance.event_log_storage.supports_global_concurrency_limits
        assert instance.global_op_concurrency_default_limit == 4
        # storing an event runs dagster-postgres's NOTIFY: broken with psycopg 3 under SQLAlchemy 2.1
        instance.report_runless_asset_event(dg.AssetMaterialization("embeddings", partition="acme"))
        assert instance.get_latest_materialization_event(dg.AssetKey("embeddings")) is not None
        assert EMBEDDING_POOL == "embedding_api"
    finally:
        instance.dispose()


def test_the_cli_starts_and_stops_a_server_in_the_folder_it_names():
    """`ragindex dagster postgres up|url|env|down`: the helper users run, on a server of its own."""
    require_postgres()
    folder = Path(tempfile.mkdtemp(prefix="ragpg-", dir="/tmp"))
    try:
        up = ragindex("dagster", "postgres", "up", "--folder", str(folder), "--port", "5433", "--json")
        assert up.exit_code == 0, up.output
        url = json.loads(up.output)["url"]
        assert url == ragindex("dagster", "postgres", "url", "--folder", str(folder), "--port", "5433").output.strip()
        assert url.startswith("postgresql+psycopg2://") and f"host={folder / 'socket'}" in url
        assert ragindex("dagster", "postgres", "up", "--folder", str(folder), "--port", "5433").exit_code == 0  # idempotent
        env = ragindex("dagster", "postgres", "env", "--folder", str(folder), "--port", "5433").output
        assert f"export DAGSTER_PG_URL='{url}'" in env and "export RAGINDEX_MAX_CONCURRENT_RUNS=" in env
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar() == "dagster"
        engine.dispose()
        down = ragindex("dagster", "postgres", "down", "--folder", str(folder), "--port", "5433", "--json")
        assert json.loads(down.output) == {"stopped": True, "folder": str(folder)}
        assert not LocalPostgres(folder, port=5433).running()
        again = ragindex("dagster", "postgres", "down", "--folder", str(folder), "--port", "5433", "--json")
        assert json.loads(again.output)["stopped"] is False
    finally:
        LocalPostgres(folder, port=5433).down()
        shutil.rmtree(folder, ignore_errors=True)


def _launched(instance, run_id: str) -> float:
    (e,) = instance.all_logs(run_id, of_type=DagsterEventType.RUN_STARTING)
    return e.timestamp


def _peak(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    peak = open_ = 0
    for _, d in edges:
        open_ += d
        peak = max(peak, open_)
    return peak


def _backfill(instance, env: dict, backfills: list[str], n_runs: int, log: Path, timeout: float = 240) -> list:
    """Run the Dagster daemon, launch ``dagster job backfill`` for each comma-separated partition list, and wait
    for ``n_runs`` runs to end; returns the runs."""
    bindir = Path(sys.executable).parent
    with open(log, "w") as log_f:
        daemon = subprocess.Popen([str(bindir / "dagster-daemon"), "run"], cwd=REPO, env=env, stdout=log_f,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            for partitions in backfills:
                subprocess.run([str(bindir / "dagster"), "job", "backfill", "-j", "reindex_tenant", "--partitions",
                                partitions, "--noprompt"], cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
            deadline = time.monotonic() + timeout
            while True:
                runs = instance.get_runs()
                if len(runs) == n_runs and all(r.status in DONE for r in runs):
                    return runs
                if time.monotonic() > deadline or daemon.poll() is not None:
                    pytest.fail(f"runs: {[(r.tags.get('dagster/partition'), r.status) for r in runs]}\n{log.read_text()[-4000:]}")
                time.sleep(1.0)
        finally:
            stop_process_group(daemon)


def _spans(instance) -> dict[str, tuple[float, float]]:
    """Each run's (launched, ended) times."""
    return {rid: (_launched(instance, rid), rec.end_time)
            for rid, rec in ((r.dagster_run.run_id, r) for r in instance.get_run_records())}


@pytest.mark.slow
def test_the_daemon_backfills_tenants_two_at_a_time_one_run_per_tenant(pg_home, tmp_path):
    store = TenantStore(tmp_path / "home")
    docs = passage_docs(30)
    for i, tenant in enumerate(TENANTS):
        register(store, tenant, TenantSettings(source=str(write_jsonl(tmp_path / f"{tenant}.jsonl", docs[10 * i: 10 * i + 10]))))
    (tmp_path / "sources").mkdir()
    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_MODEL": "hash",
           "RAGINDEX_SOURCES": str(tmp_path / "sources"), "PYTHONPATH": str(REPO)}
    instance = dg.DagsterInstance.from_config(str(pg_home))
    instance.add_dynamic_partitions("tenants", list(TENANTS))
    log = tmp_path / "daemon.log"
    # the second backfill: acme again, while its first run is queued
    runs = _backfill(instance, env, [",".join(TENANTS), "acme"], 4, log)
    try:
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), log.read_text()[-4000:]
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted([*TENANTS, "acme"])
        assert all("dagster/backfill" in r.tags for r in runs)
        spans = _spans(instance)
        assert _peak(list(spans.values())) == 2, spans  # the queue: 2 at once, never 3
        acme = [spans[r.run_id] for r in runs if r.tags["dagster/partition"] == "acme"]
        assert _peak(acme) == 1, acme  # one run per tenant partition at a time
        for tenant in TENANTS:
            assert current_id(store.paths(tenant)) is not None, f"{tenant} has no live generation"
    finally:
        instance.dispose()


TPM = 30_000  # tokens per minute for the whole account: ~9k tokens to embed take ~20 s under it


@pytest.mark.slow
def test_hosted_tenants_backfilled_in_parallel_share_one_api_limit(pg_home, tmp_path):
    """Three hosted-model tenants (the fake OpenAI server), two runs at a time, RAGINDEX_API_TPM for the account.

    Each run sends its own requests from its own process; the bucket they share is a row in the
    instance's Postgres. Under it, the tokens the server received in any window of W seconds are at
    most one request plus W seconds of the rate, although two runs sent at once (their requests
    interleave). With a bucket per process (RAGINDEX_LIMITS_URL=process) the two runs together
    send twice the rate, and the 3-second window fails.
    """
    store = TenantStore(tmp_path / "home")
    docs = passage_docs(24)
    for i, tenant in enumerate(TENANTS):
        register(store, tenant, TenantSettings(source=str(write_jsonl(tmp_path / f"{tenant}.jsonl", docs[8 * i: 8 * i + 8])),
                                               model=MODEL, dimensions=64))
    (tmp_path / "sources").mkdir()
    with FakeOpenAI(Behaviour(latency_s=0.2)) as server:
        env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_SOURCES": str(tmp_path / "sources"),
               "PYTHONPATH": str(REPO), "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY,
               "RAGINDEX_API_TPM": str(TPM)}
        env.pop("RAGINDEX_MODEL", None)
        instance = dg.DagsterInstance.from_config(str(pg_home))
        instance.add_dynamic_partitions("tenants", list(TENANTS))
        log = tmp_path / "daemon.log"
        try:
            runs = _backfill(instance, env, [",".join(TENANTS)], 3, log)
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), log.read_text()[-4000:]
            assert _peak(list(_spans(instance).values())) == 2
        finally:
            instance.dispose()
    # which tenant sent each request: its texts are in that tenant's cache, and nowhere else
    owner = {}
    for tenant in TENANTS:
        with duckdb.connect(str(store.paths(tenant).cache), read_only=True) as db:
            owner.update({h: tenant for (h,) in db.execute("SELECT text_hash FROM embeddings").fetchall()})
    sent = [(r.t, r.tokens, {owner[sha256_text(t)] for t in r.inputs if sha256_text(t) in owner}) for r in server.requests]
    chunk_requests = sorted((t, n, who.pop()) for t, n, who in sent if len(who) == 1)
    assert billed_once(server) and max(billed_once(server).values()) == 1  # nothing billed twice
    assert not [r for r in server.requests if r.status == 429]
    # two runs sent at once: one tenant's requests came between another's
    first_last = {who: (min(t for t, _, w in chunk_requests if w == who), max(t for t, _, w in chunk_requests if w == who))
                  for who in TENANTS}
    assert any(a != b and first_last[a][0] < first_last[b][0] < first_last[a][1] for a in TENANTS for b in TENANTS), first_last
    # ... and together they stayed under the one limit: a window of W s holds at most a full bucket + W s of the rate
    rate = 0.95 * TPM / 60  # the limiter's margin
    biggest = max(r.tokens for r in server.requests)
    for window in (3.0, 6.0, 12.0):
        assert server.peak_tokens(window) <= 1.05 * (max(biggest, rate) + rate * window), (window, server.peak_tokens(window))
    # the bucket is the account's row in the instance's Postgres, not a file of the runs' home
    with sa.create_engine(os.environ["DAGSTER_PG_URL"]).connect() as conn:
        rows = conn.execute(sa.text(f"SELECT account FROM {PG_TABLE}")).scalars().all()
    assert rows == [account_id(server.base_url, KEY)]
    assert not (store.root / "limits").exists()
