"""`ragindex tenants add` / `reindex` with $DAGSTER_HOME: runs land in that instance, over budget changes nothing."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from click.testing import CliRunner

from benchmarks.support.devserver import fresh_dagster_home
from ragindex.cli import main
from ragindex.index import current_id, list_generations
from tests.conftest import scifact_docs, write_jsonl


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = fresh_dagster_home(tmp_path / "dagster_home")  # the repo's own instance config
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _ragindex(*args):
    return CliRunner().invoke(main, ["--model", "hash", *args])


def test_cli_reindex_runs_the_asset_job_in_the_instance(dagster_home, store, hash_embedder, tmp_path):
    src = write_jsonl(tmp_path / "acme.jsonl", scifact_docs(30))
    res = _ragindex("tenants", "add", "acme", "--source", str(src))
    assert res.exit_code == 0, res.output
    assert "partition registered" in res.stdout
    with dg.DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions("tenants") == ["acme"]

    res = _ragindex("reindex", "--tenant", "acme", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ledger"]["texts"] == out["plan"]["texts_to_embed"] > 0
    assert out["generation"] == current_id(store.paths("acme"))
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(out["dagster_run_id"])
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == "acme"
        assert run.tags["ragindex/trigger"] == "cli"
        event = instance.get_latest_materialization_event(dg.AssetKey("embeddings"))
        assert event.run_id == out["dagster_run_id"]
        assert event.asset_materialization.metadata["tokens_embedded"].value == out["plan"]["tokens_to_embed"]

    # Over budget: exit 3, not a byte of the tenant changed, live generation untouched; the run is in the
    # history as failed on its blocking budget check (the plan is checked before any write, in the run).
    paths = store.paths("acme")
    before = {p: p.read_bytes() for p in paths.root.rglob("*") if p.is_file() and p.name != "lock"}
    bigger = write_jsonl(tmp_path / "bigger.jsonl", scifact_docs(60))
    res = _ragindex("reindex", "--tenant", "acme", "--source", str(bigger), "--budget-tokens", "10")
    assert res.exit_code == 3, res.output
    assert "over budget" in res.output and "Nothing was changed" in res.output
    after = {p: p.read_bytes() for p in paths.root.rglob("*") if p.is_file() and p.name != "lock"}
    assert after == before
    assert current_id(paths) == out["generation"] and len(list_generations(paths)) == 1
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]
        budget = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(dg.AssetKey("embeddings"), "budget_respected"))
        assert budget.run_id == runs[0].run_id and not budget.event.dagster_event.event_specific_data.passed

    # Within budget and with nothing changed: unchanged, nothing written, a third run in the history.
    res = _ragindex("reindex", "--tenant", "acme")
    assert res.exit_code == 0, res.output
    assert "unchanged" in res.stdout and "dagster run" in res.stdout
    assert {p: p.read_bytes() for p in paths.root.rglob("*") if p.is_file() and p.name != "lock"} == before
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == 3


def test_cli_reindex_unknown_source_is_a_readable_error(dagster_home, store):
    res = _ragindex("reindex", "--tenant", "nobody")
    assert res.exit_code == 1
    assert "no source for tenant 'nobody'" in res.output
