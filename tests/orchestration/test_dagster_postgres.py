"""The Postgres-backed instance (dagster_home/postgres/dagster.yaml) on a Postgres server of the test's own.

1. The storage really is Postgres through psycopg2 (the driver the URL names; psycopg 3 with
   SQLAlchemy 2.1 breaks dagster-postgres's NOTIFY), and storing events works.
2. The Dagster daemon runs a `dagster job backfill` of 3 tenant partitions through the run queue
   (max_concurrent_runs 2, one run per partition): at most 2 runs at once, and 2 at some
   moment; a second backfill of one tenant waits for that tenant's first run to end (one
   writer per tenant); every run succeeds and every tenant has a live generation.
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
import pytest
import sqlalchemy as sa
from dagster._core.events import DagsterEventType

from ragindex.orchestration.assets import EMBEDDING_POOL
from ragindex.postgres import LocalPostgres
from ragindex.store.manifests import current_id
from ragindex.store.tenants import TenantSettings, TenantStore
from tests.support.cli import ragindex
from tests.support.data import REPO, passage_docs, write_jsonl
from tests.support.devserver import stop_process_group
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
    bindir = Path(sys.executable).parent
    log = tmp_path / "daemon.log"
    with open(log, "w") as log_f:
        daemon = subprocess.Popen([str(bindir / "dagster-daemon"), "run"], cwd=REPO, env=env, stdout=log_f,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            for partitions in (",".join(TENANTS), "acme"):  # the second: acme again, while its first run is queued
                subprocess.run([str(bindir / "dagster"), "job", "backfill", "-j", "reindex_tenant", "--partitions",
                                partitions, "--noprompt"], cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
            deadline = time.monotonic() + 240
            while True:
                runs = instance.get_runs()
                if len(runs) == 4 and all(r.status in DONE for r in runs):
                    break
                if time.monotonic() > deadline or daemon.poll() is not None:
                    pytest.fail(f"runs: {[(r.tags.get('dagster/partition'), r.status) for r in runs]}\n{log.read_text()[-4000:]}")
                time.sleep(1.0)
        finally:
            stop_process_group(daemon)
    try:
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), log.read_text()[-4000:]
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted([*TENANTS, "acme"])
        assert all("dagster/backfill" in r.tags for r in runs)
        records = {r.dagster_run.run_id: r for r in instance.get_run_records()}
        spans = {rid: (_launched(instance, rid), rec.end_time) for rid, rec in records.items()}
        assert _peak(list(spans.values())) == 2, spans  # the queue: 2 at once, never 3
        acme = [spans[r.run_id] for r in runs if r.tags["dagster/partition"] == "acme"]
        assert _peak(acme) == 1, acme  # one run per tenant partition at a time
        for tenant in TENANTS:
            assert current_id(store.paths(tenant)) is not None, f"{tenant} has no live generation"
    finally:
        instance.dispose()
