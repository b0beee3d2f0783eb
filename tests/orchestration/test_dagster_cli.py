"""`ragindex tenants add` / `reindex` with $DAGSTER_HOME: the CLI runs the library's run and reports it to that instance."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from click.testing import CliRunner
from dagster._core.definitions.data_version import extract_data_version_from_entry  # how Dagster reads it

from ragindex.cli import main
from ragindex.store.manifests import current_id, list_generations
from ragindex.store.tenants import TenantSettings
from tests.orchestration.helpers import fake_quality
from tests.support.data import passage_docs, write_jsonl
from tests.support.devserver import fresh_dagster_home
from tests.support.tenants import register


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = fresh_dagster_home(tmp_path / "dagster_home")  # the repo's own instance config
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _ragindex(*args):
    res = CliRunner().invoke(main, ["--model", "hash", *args])
    assert "could not report" not in res.stderr, res.stderr  # every report below reaches the instance
    return res


ASSETS = ("documents", "chunks", "embeddings", "tenant_index")


def _materializations(instance, asset: str, tenant: str) -> list:
    """Every materialization of ``asset`` for ``tenant`` in the instance's event log, newest first."""
    return instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[tenant]),
                                           limit=100).records


def _check(instance, asset: str, name: str):
    """The latest evaluation of the check ``asset/name`` (its AssetCheckEvaluation)."""
    record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(dg.AssetKey(asset), name))
    return record.event.dagster_event.event_specific_data if record else None


def _tenant_files(paths) -> dict:
    return {p: p.read_bytes() for p in paths.root.rglob("*") if p.is_file() and p.name != "lock"}


def test_cli_reindex_runs_no_dagster_job_and_reports_its_run_to_the_instance(dagster_home, store, hash_embedder, tmp_path):
    """One engine: `ragindex reindex` runs the library's run (lock held throughout) whether or not $DAGSTER_HOME is
    set; with it set, the run's materializations, data versions and checks land in the instance, runless."""
    src = write_jsonl(tmp_path / "acme.jsonl", passage_docs(30))
    res = _ragindex("tenants", "add", "acme", "--source", str(src))
    assert res.exit_code == 0, res.output
    assert "partition registered" in res.stdout
    with dg.DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions("tenants") == ["acme"]

    res = _ragindex("reindex", "--tenant", "acme", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ledger"]["texts"] == out["plan"]["texts_to_embed"] > 0
    assert out["generation"] == current_id(store.paths("acme")) and out["status"] == "promoted"
    assert out["dagster_reported"] is True and "dagster_run_id" not in out
    assert set(out["versions"]) == set(ASSETS)
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []  # no Dagster job ran: the CLI's run is the library's
        for asset in ASSETS:
            (rec,) = _materializations(instance, asset, "acme")
            assert rec.run_id == "" and rec.partition_key == "acme"  # runless: reported, not executed
            mat = rec.asset_materialization
            assert mat.tags["dagster/data_version"] == out["versions"][asset]  # Dagster's data version for it
            assert mat.metadata["trigger"].value == "cli" and mat.metadata["status"].value == "promoted"
            assert mat.metadata["generation"].value == out["generation"] and mat.metadata["run_id"].value == out["run_id"]
        emb = _materializations(instance, "embeddings", "acme")[0].asset_materialization.metadata
        assert emb["tokens_embedded"].value == out["plan"]["tokens_to_embed"] == out["ledger"]["tokens"]
        assert emb["texts_embedded"].value == out["ledger"]["texts"]
        assert isinstance(emb["actual_cost_usd"], dg.FloatMetadataValue) and isinstance(emb["summary"], dg.MarkdownMetadataValue)
        idx = _materializations(instance, "tenant_index", "acme")[0].asset_materialization.metadata
        assert idx["promoted"].value is True and idx["segment"].value == out["segment"]
        for asset in ASSETS:  # as Dagster reads it (staleness, the UI's "data version")
            entry = _materializations(instance, asset, "acme")[0].event_log_entry
            assert extract_data_version_from_entry(entry) == dg.DataVersion(out["versions"][asset])
        for asset, name in (("documents", "deletions_within_limit"), ("embeddings", "budget_respected"),
                            ("tenant_index", "index_consistency"), ("tenant_index", "quality_not_worse")):
            check = _check(instance, asset, name)
            assert check.passed and check.blocking and check.metadata["tenant"].value == "acme", name
            assert check.target_materialization_data.storage_id == _materializations(instance, asset, "acme")[0].storage_id

    # Over budget: exit 3, not a byte of the tenant changed, no materialization, the failed check reported.
    paths = store.paths("acme")
    before = _tenant_files(paths)
    bigger = write_jsonl(tmp_path / "bigger.jsonl", passage_docs(60))
    res = _ragindex("reindex", "--tenant", "acme", "--source", str(bigger), "--budget-tokens", "10")
    assert res.exit_code == 3, res.output
    assert "over budget" in res.output and "Nothing was changed" in res.output
    assert _tenant_files(paths) == before
    assert current_id(paths) == out["generation"] and len(list_generations(paths)) == 1
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []
        assert all(len(_materializations(instance, a, "acme")) == 1 for a in ASSETS)
        budget = _check(instance, "embeddings", "budget_respected")
        assert not budget.passed and budget.metadata["tenant"].value == "acme" and "10" in budget.description
        assert budget.metadata["trigger"].value == "cli" and budget.metadata["planned_tokens"].value > 10

    # Nothing changed: unchanged, nothing written; reported again with the same data versions.
    res = _ragindex("reindex", "--tenant", "acme")
    assert res.exit_code == 0, res.output
    assert "unchanged" in res.stdout and "reported to the Dagster instance" in res.stdout
    assert _tenant_files(paths) == before
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []
        for asset in ASSETS:
            latest, _first = _materializations(instance, asset, "acme")
            assert latest.asset_materialization.metadata["status"].value == "unchanged"
            assert latest.asset_materialization.tags["dagster/data_version"] == out["versions"][asset]
        assert _check(instance, "embeddings", "budget_respected").passed


def test_cli_refused_runs_report_their_failed_check_and_keep_their_exit_codes(dagster_home, store, hash_embedder, tmp_path,
                                                                              monkeypatch):
    docs = passage_docs(31)
    res = _ragindex("reindex", "--tenant", "acme", "--source", str(write_jsonl(tmp_path / "v1.jsonl", docs[:30])))
    assert res.exit_code == 0, res.output
    live = current_id(store.paths("acme"))

    # A candidate scoring below the live generation: exit 5, not promoted, quality_not_worse reported failed.
    register(store, "acme", TenantSettings(source=str(write_jsonl(tmp_path / "v2.jsonl", docs)), eval_set="chroma"))
    fake_quality(monkeypatch, live)
    res = _ragindex("reindex", "--tenant", "acme", "--json")
    assert res.exit_code == 5, res.output
    assert json.loads(res.stdout)["error"]["kind"] == "checks failed"
    assert current_id(store.paths("acme")) == live
    with dg.DagsterInstance.get() as instance:
        quality = _check(instance, "tenant_index", "quality_not_worse")
        assert not quality.passed and quality.metadata["tenant"].value == "acme"
        assert quality.metadata["promoted"].value is False and quality.metadata["candidate"].value != live
        assert len(_materializations(instance, "tenant_index", "acme")) == 1  # only the first run materialized

    # Most documents gone (an unmounted share looks like that): exit 7, deletions_within_limit reported failed.
    res = _ragindex("reindex", "--tenant", "acme", "--source", str(write_jsonl(tmp_path / "v3.jsonl", docs[:2])))
    assert res.exit_code == 7, res.output
    with dg.DagsterInstance.get() as instance:
        deletions = _check(instance, "documents", "deletions_within_limit")
        assert not deletions.passed and "--allow-deletions" in deletions.description
        assert instance.get_runs() == []


def test_cli_reindex_still_succeeds_when_the_instance_cannot_be_reached(store, hash_embedder, tmp_path, monkeypatch):
    home = tmp_path / "broken_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("storage: [this is not a storage config\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    res = CliRunner().invoke(main, ["--model", "hash", "reindex", "--tenant", "acme", "--json", "--source",
                                    str(write_jsonl(tmp_path / "acme.jsonl", passage_docs(5)))])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["status"] == "promoted" and out["dagster_reported"] is False
    assert "could not report the run to the Dagster instance" in res.stderr


def test_cli_reindex_unknown_source_is_a_readable_error(dagster_home, store):
    res = _ragindex("reindex", "--tenant", "nobody")
    assert res.exit_code == 1
    assert "no source for tenant 'nobody'" in res.output
