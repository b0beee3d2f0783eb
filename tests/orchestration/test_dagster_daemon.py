"""Runs the daemon launches, under `dagster dev` on localhost: the sensor's runs and a UI backfill over tenants.

What `dagster dev` adds over the in-process tests: the sensor evaluated by the daemon,
the run queue (dagster_home/dagster.yaml: at most 2 runs at once, one per partition),
runs in their own processes, each executing its steps in that one process (the in-process
executor: the run holds the tenant's writer lock from its first step to its last), and backfills launched with
the GraphQL mutation the UI's "Materialize" dialog sends. The hash embedder keeps it
to process start-up costs; the runs themselves are the real asset job.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import pytest

from ragindex.store.manifests import current_id
from ragindex.store.tenants import TenantStore
from tests.support.data import REPO, passage_docs
from tests.support.devserver import DevServer, dagster_dev, fresh_dagster_home

pytestmark = pytest.mark.slow

TENANTS = ("acme", "globex", "initech")
ASSETS = ("documents", "chunks", "embeddings", "tenant_index")
RUNS = """query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) { __typename
  ... on Runs { results { runId status startTime endTime tags { key value } } } } }"""
LOGS = """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events { __typename
  ... on MessageEvent { message timestamp } } } } }"""
BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename
  ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } ... on InvalidSubsetError { message } } }"""
MATERIALIZATION = """query($key: AssetKeyInput!, $p: [String!]) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations(partitions: $p) { runId partition metadataEntries { label
    ... on IntMetadataEntry { intValue } } } } } }"""


def _write_tenant(folder: Path, docs: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for d in docs:
        (folder / f"{d['_id']}.txt").write_text(f"{d['title']}\n\n{d['text']}", encoding="utf-8")


def _runs(server: DevServer, **tags: str) -> list[dict]:
    data = server.graphql(RUNS, {"tags": [{"key": k.replace("__", "/"), "value": v} for k, v in tags.items()]})
    runs = data["runsOrError"]["results"]
    for r in runs:
        r["tags"] = {t["key"]: t["value"] for t in r["tags"]}
    return runs


def _wait_for(server: DevServer, log: Path, what: str, count: int, timeout: float, **tags: str) -> list[dict]:
    """Wait until ``count`` runs with ``tags`` have finished; fail with the server log if any failed or time ran out."""
    deadline = time.monotonic() + timeout
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = _runs(server, **tags)
        failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        assert not failed, f"{what}: runs failed: {failed}\n{log.read_text()[-4000:]}"
        if len(runs) >= count and all(r["status"] == "SUCCESS" for r in runs):
            return runs
        time.sleep(1.0)
    pytest.fail(f"{what}: {count} successful runs expected within {timeout:.0f} s, have "
                f"{[(r['tags'].get('dagster/partition'), r['status']) for r in runs]}\n{log.read_text()[-4000:]}")


def _overlap(server: DevServer, runs: list[dict]) -> bool:
    """True when the queue had some two runs launched at the same time (taken off the queue, not yet finished).

    A run executes its steps in one process and takes under a second here, less than a
    run worker's start-up, so execution windows need not overlap; the queue's
    ``max_concurrent_runs: 2`` shows in a run launched before the one launched before it
    has finished (with a limit of 1, each launch would wait for the previous run's end).
    """
    spans = []
    for r in runs:
        events = server.graphql(LOGS, {"id": r["runId"]})["logsForRun"]["events"]
        launched = min(float(e["timestamp"]) / 1000 for e in events if e["__typename"] == "RunStartingEvent")
        spans.append((launched, r["endTime"]))
    spans.sort()
    return any(b_start < a_end for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def _texts_embedded(server: DevServer, run_id: str, tenant: str) -> int:
    mats = server.graphql(MATERIALIZATION, {"key": {"path": ["embeddings"]}, "p": [tenant]})["assetOrError"]["assetMaterializations"]
    (mat,) = [m for m in mats if m["runId"] == run_id]
    return {e["label"]: e.get("intValue") for e in mat["metadataEntries"]}["texts_embedded"]


def test_sensor_runs_and_a_ui_backfill_run_one_tenant_per_run_in_parallel(tmp_path):
    sources = tmp_path / "sources"
    docs = passage_docs(46)  # 15 per tenant, and one more for the edit
    for i, tenant in enumerate(TENANTS):
        _write_tenant(sources / tenant, docs[15 * i: 15 * i + 15])
    (sources / "Not A Tenant").mkdir()  # ignored with a warning, never a partition
    store = TenantStore(tmp_path / "home")
    env = {**os.environ, "DAGSTER_HOME": str(fresh_dagster_home(tmp_path / "dagster_home")),
           "RAGINDEX_HOME": str(store.root), "RAGINDEX_MODEL": "hash", "RAGINDEX_SOURCES": str(sources),
           "RAGINDEX_SENSOR_INTERVAL_S": "3", "PYTHONPATH": str(REPO)}
    log = tmp_path / "dagster-dev.log"
    with open(log, "w") as log_f, dagster_dev(env, log_f, timeout=180) as server:
        # 1. The daemon's first sensor tick adds the three partitions and queues one run each.
        new = _wait_for(server, log, "sensor, new tenants", 3, 300, ragindex__trigger="new-tenant")
        assert sorted(r["tags"]["dagster/partition"] for r in new) == sorted(TENANTS)
        assert all(r["tags"]["dagster/sensor_name"] == "tenant_sources" for r in new)
        for tenant in TENANTS:
            assert current_id(store.paths(tenant)) is not None, f"{tenant} has no live generation after its run"
        # The queue runs two at once (max_concurrent_runs: 2): runs out of the queue overlap.
        assert _overlap(server, new), [(r["startTime"], r["endTime"]) for r in new]
        events = server.graphql(LOGS, {"id": new[0]["runId"]})["logsForRun"]["events"]
        assert any("Executing steps in process" in (e.get("message") or "") for e in events)  # one process per run

        # 2. One tenant's folder changes: the next tick requests a run for that tenant only.
        _write_tenant(sources / "globex", docs[45:46])
        (changed,) = _wait_for(server, log, "sensor, changed folder", 1, 120, ragindex__trigger="sources-changed")
        assert changed["tags"]["dagster/partition"] == "globex"
        assert _texts_embedded(server, changed["runId"], "globex") > 0
        time.sleep(8)  # two more ticks: still no run for the unchanged tenants
        assert [r["tags"]["dagster/partition"] for r in _runs(server, ragindex__trigger="sources-changed")] == ["globex"]

        # 3. The UI's backfill over all tenant partitions: one run per tenant, in parallel, nothing re-embedded.
        launched = server.graphql(BACKFILL, {"p": {"assetSelection": [{"path": [a]} for a in ASSETS],
                                                   "partitionNames": list(TENANTS)}})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill = _wait_for(server, log, "UI backfill", 3, 300, dagster__backfill=launched["backfillId"])
        assert sorted(r["tags"]["dagster/partition"] for r in backfill) == sorted(TENANTS)
        assert _overlap(server, backfill), [(r["startTime"], r["endTime"]) for r in backfill]
        assert [_texts_embedded(server, r["runId"], r["tags"]["dagster/partition"]) for r in backfill] == [0, 0, 0]

    assert sorted(p.name for p in (store.root / "tenants").iterdir()) == sorted(TENANTS)
    (tmp_path / "runs.json").write_text(json.dumps({"new": new, "backfill": backfill}, indent=1))
