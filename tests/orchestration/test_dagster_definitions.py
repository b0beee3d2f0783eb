"""The code location loads; the chunks code_version follows the chunker schemas in use; the sensor."""

from __future__ import annotations

import importlib
import json
import re
import shutil

import dagster as dg
import pytest

import ragindex.instance as reported
from ragindex.orchestration.location import REINDEX_JOB, build_definitions
from ragindex.orchestration.resources import SourcesResource, TenantStoreResource
from ragindex.schemas.registry import DEFAULT_SCHEMA, PACKAGE_DIR
from ragindex.store.tenants import TenantSettings
from tests.support.data import passage_docs
from tests.support.tenants import register


def test_code_location_definitions_load():
    import ragindex.orchestration.definitions as module

    defs = importlib.reload(module).defs
    dg.Definitions.validate_loadable(defs)
    assert {k.to_user_string() for k in defs.resolve_all_asset_keys()} == {"documents", "chunks", "embeddings", "tenant_index"}
    job = defs.resolve_job_def(REINDEX_JOB)
    assert job.partitions_def == dg.DynamicPartitionsDefinition(name="tenants")
    checks = {key.name: key.asset_key.to_user_string() for key in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {"deletions_within_limit": "documents", "budget_respected": "embeddings",
                      "index_consistency": "tenant_index", "quality_not_worse": "tenant_index"}
    graph = defs.resolve_asset_graph()
    assert all(graph.get_check_spec(k).blocking for k in graph.asset_check_keys)
    assert [s.name for s in defs.sensors] == ["tenant_sources"]
    assert set(defs.resources) >= {"store", "writer", "embedder", "prices", "sources"}
    # What the CLI reports to the instance (ragindex.instance, which must not import this package) names these.
    assert set(reported.ASSETS) == {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert reported.CHECK_ASSET == checks


def test_every_run_executes_in_one_process_so_the_writer_is_held_across_its_steps(tmp_path):
    """The job and the UI's ad-hoc materializations run on the in-process executor; one that would spread a
    run's steps over processes (and so over several lock holders) is refused."""
    defs = build_definitions(store_root=tmp_path / "home", sources_root=tmp_path / "src", model="hash")
    assert defs.resolve_job_def(REINDEX_JOB).executor_def.name == "in_process"
    assert defs.resolve_implicit_global_asset_job_def().executor_def.name == "in_process"
    retrying = dg.in_process_executor.configured({"retries": {"enabled": {}}})
    defs = build_definitions(store_root=tmp_path / "home", sources_root=tmp_path / "src", model="hash", executor=retrying)
    assert defs.resolve_job_def(REINDEX_JOB).executor_def is retrying
    with pytest.raises(ValueError, match="in-process executor"):
        build_definitions(store_root=tmp_path / "home", sources_root=tmp_path / "src", model="hash",
                          executor=dg.multiprocess_executor)


def _code_version(store_root) -> str:
    return build_definitions(store_root=store_root).get_assets_def("chunks").code_versions_by_key[dg.AssetKey("chunks")]


def test_chunks_code_version_changes_with_the_schema(tmp_path, monkeypatch, store):
    before = _code_version(store.root)
    assert before == _code_version(store.root)  # deterministic
    # An edit to the schema in use (here the default) shows as a new code version before anything runs.
    copy = tmp_path / "schemas"
    shutil.copytree(PACKAGE_DIR / "chunkers", copy / "chunkers")
    shutil.copy(PACKAGE_DIR / "chunkers.lock", copy / "chunkers.lock")
    monkeypatch.setenv("RAGINDEX_SCHEMAS", str(copy))
    assert _code_version(store.root) == before  # same files, same fingerprints
    f = copy / "chunkers" / f"{DEFAULT_SCHEMA.replace('@', '.v')}.toml"
    text = f.read_text()
    f.write_text(re.sub(r"(?m)^size = \d+$", "size = 181", text))
    assert f.read_text() != text
    edited = _code_version(store.root)
    assert edited != before
    # A tenant pinned to another schema adds it to the set in use ...
    register(store, "acme", TenantSettings(source="x", chunker="recursive-200@1"))
    pinned = _code_version(store.root)
    assert pinned not in (before, edited)
    # ... while a new, unused schema file changes nothing.
    (copy / "chunkers" / "default.v99.toml").write_text(f.read_text())
    assert _code_version(store.root) == pinned


def _sensor_eval(defs, instance, cursor, store, sources):
    (sensor,) = defs.sensors
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                  resources={"store": TenantStoreResource(root=str(store.root)),
                                             "sources": SourcesResource(root=str(sources))})
    return sensor(ctx)


def _write_folder(folder, docs):
    folder.mkdir(parents=True, exist_ok=True)
    for d in docs:
        (folder / f"{d['_id']}.txt").write_text(d["title"] + "\n\n" + d["text"], encoding="utf-8")


def test_sensor_adds_new_tenants_and_reruns_only_changed_ones(tmp_path, store):
    sources = tmp_path / "sources"
    docs = passage_docs(12)
    _write_folder(sources / "acme", docs[:6])
    (sources / "Not A Tenant").mkdir()
    defs = build_definitions(store_root=store.root, sources_root=sources, model="hash")
    with dg.instance_for_test() as instance:
        first = _sensor_eval(defs, instance, None, store, sources)
        assert [r.partition_key for r in first.run_requests] == ["acme"]
        assert [req.partition_keys for req in first.dynamic_partitions_requests] == [["acme"]]
        assert store.settings("acme").source == str((sources / "acme").absolute())  # runnable from the UI too
        instance.add_dynamic_partitions("tenants", ["acme"])  # what the daemon does with the request

        idle = _sensor_eval(defs, instance, first.cursor, store, sources)
        assert not idle.run_requests and "1 ignored" in idle.skip_reason.skip_message

        _write_folder(sources / "globex", docs[6:])
        (sources / "acme" / f"{docs[0]['_id']}.txt").write_text("edited text", encoding="utf-8")
        changed = _sensor_eval(defs, instance, idle.cursor, store, sources)
        assert sorted(r.partition_key for r in changed.run_requests) == ["acme", "globex"]
        assert [req.partition_keys for req in changed.dynamic_partitions_requests] == [["globex"]]
        tags = {r.partition_key: r.tags["ragindex/trigger"] for r in changed.run_requests}
        assert tags == {"acme": "sources-changed", "globex": "new-tenant"}
        assert set(json.loads(changed.cursor)) == {"acme", "globex"}


def test_sensor_first_tick_treats_registered_tenants_as_baseline(tmp_path, store):
    sources = tmp_path / "sources"
    _write_folder(sources / "acme", passage_docs(3))
    defs = build_definitions(store_root=store.root, sources_root=sources, model="hash")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenants", ["acme"])
        result = _sensor_eval(defs, instance, None, store, sources)
        assert not result.run_requests and json.loads(result.cursor).keys() == {"acme"}


def test_sensor_missing_sources_root_skips_with_reason(tmp_path, store):
    defs = build_definitions(store_root=store.root, sources_root=tmp_path / "nowhere", model="hash")
    with dg.instance_for_test() as instance:
        result = _sensor_eval(defs, instance, None, store, tmp_path / "nowhere")
        assert not result.run_requests and "0 watched, 1 ignored" in result.skip_reason.skip_message


def test_sensor_interval_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RAGINDEX_SENSOR_INTERVAL_S", "7")
    (sensor,) = build_definitions(store_root=tmp_path / "home", sources_root=tmp_path / "src", model="hash").sensors
    assert sensor.minimum_interval_seconds == 7
    monkeypatch.setenv("RAGINDEX_SENSOR_INTERVAL_S", "0")
    with pytest.raises(ValueError, match="RAGINDEX_SENSOR_INTERVAL_S"):
        build_definitions(store_root=tmp_path / "home", sources_root=tmp_path / "src", model="hash")
