"""Issue 23 (Hardening II), item 20: maintenance settings are validated when a writer starts, before anything is
written, with one line naming the variable and what it accepts."""

from __future__ import annotations

import json

import pytest

from ragindex.store.maintenance import MaintenanceSettings, SettingsError, maintenance_settings
from ragindex.store.manifests import current_id, list_generations
from ragindex.store.tenants import TenantSettings
from tests.support.cli import ragindex
from tests.support.data import passage_docs, write_jsonl
from tests.support.folders import make_folder, snapshot
from tests.support.tenants import register


@pytest.mark.parametrize("var,value,allowed", [
    ("RAGINDEX_KEEP_GENERATIONS", "0", "from 1 to"), ("RAGINDEX_KEEP_GENERATIONS", "-1", "from 1 to"),
    ("RAGINDEX_KEEP_GENERATIONS", "five", "from 1 to"), ("RAGINDEX_MERGE_FACTOR", "0", "from 2 to"),
    ("RAGINDEX_MERGE_FACTOR", "1", "from 2 to"), ("RAGINDEX_MERGE_FACTOR", "2.5", "from 2 to"),
])
def test_an_invalid_setting_fails_before_anything_is_written(store, indexed_folder, monkeypatch, var, value, allowed):
    folder, first = indexed_folder
    paths = store.paths("acme")
    make_folder(folder, [dict(passage_docs(31)[30], _id="new-doc")])  # a run that would promote a generation
    before = snapshot(paths)
    monkeypatch.setenv(var, value)
    res = ragindex("reindex", "-t", "acme", "--source", str(folder), "--chunker", "recursive-200@1", "--json")
    assert res.exit_code == 1, res.output
    err = json.loads(res.stdout)["error"]
    assert err["kind"] == "settings" and var in err["message"] and allowed in err["message"] and "bug" not in err["message"]
    assert "\n" not in err["message"]
    assert current_id(paths) == first.generation and list_generations(paths) == [first.generation]
    assert snapshot(paths) == before  # nothing written
    for cmd in (("gc", "-t", "acme"), ("compact", "-t", "acme")):
        assert ragindex(*cmd).exit_code == 1


def test_valid_settings_are_read_once(monkeypatch):
    monkeypatch.setenv("RAGINDEX_KEEP_GENERATIONS", "3")
    monkeypatch.setenv("RAGINDEX_MERGE_FACTOR", "4")
    assert maintenance_settings() == MaintenanceSettings(keep_generations=3, merge_factor=4)
    monkeypatch.delenv("RAGINDEX_KEEP_GENERATIONS")
    monkeypatch.delenv("RAGINDEX_MERGE_FACTOR")
    assert maintenance_settings() == MaintenanceSettings(keep_generations=None, merge_factor=10)
    monkeypatch.setenv("RAGINDEX_MERGE_FACTOR", " 1")
    with pytest.raises(SettingsError, match="RAGINDEX_MERGE_FACTOR must be a whole number from 2 to 1,000,000, got ' 1'"):
        maintenance_settings()


def test_a_tenants_invalid_keep_generations_fails_before_anything_is_written(store, hash_embedder, tmp_path):
    register(store, "acme", TenantSettings(source=str(write_jsonl(tmp_path / "a.jsonl", passage_docs(5))),
                                           chunker="recursive-200@1", keep_generations=0))
    res = ragindex("reindex", "-t", "acme", "--json")
    assert res.exit_code == 1, res.output
    err = json.loads(res.stdout)["error"]
    assert err["kind"] == "settings" and "keep_generations in" in err["message"] and "tenant.json" in err["message"]
    assert list_generations(store.paths("acme")) == []
