"""Issue 13, offboarding: `tenants remove` deletes everything of one tenant and only that, and finishes after a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ragindex.indexing.run import reindex
from ragindex.search.searcher import Searcher
from ragindex.store.locking import tenant_lock
from ragindex.store.manifests import list_generations
from tests.support.cli import ragindex
from tests.support.data import passage_docs, write_jsonl


def test_tenants_remove_deletes_everything_and_only_that_tenant(store, hash_embedder, tmp_path, monkeypatch):
    import dagster as dg

    from tests.support.devserver import fresh_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(fresh_dagster_home(tmp_path / "dh")))
    a = write_jsonl(tmp_path / "a.jsonl", passage_docs(10))
    for t in ("acme", "globex"):
        assert ragindex("tenants", "add", t, "--source", str(a)).exit_code == 0
    monkeypatch.delenv("DAGSTER_HOME")
    for t in ("acme", "globex"):
        reindex(store, t, embedder=hash_embedder)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    assert ragindex("tenants", "remove", "acme").exit_code == 1  # no --yes and no terminal: refused
    assert ragindex("tenants", "remove", "acme", input="n\n").exit_code != 0 and store.exists("acme")
    res = ragindex("tenants", "remove", "acme", "--yes", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["dagster_partition_removed"] is True
    assert not store.exists("acme") and not list(store.tenants_dir.glob(".removing-*"))
    assert store.exists("globex") and Searcher(store, hash_embedder).search("globex", "cancer")
    with dg.DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions("tenants") == ["globex"]
    assert ragindex("tenants", "remove", "acme", "--yes").exit_code == 1  # gone: a clear error


def test_tenants_remove_refuses_a_running_writer_and_finishes_after_a_crash(store, hash_embedder, indexed_folder):
    paths = store.paths("acme")
    with tenant_lock(paths.lock):
        res = ragindex("tenants", "remove", "acme", "--yes")
        assert res.exit_code == 4 and store.exists("acme")
    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_FAULT": "tenant-removing"}
    env.pop("DAGSTER_HOME", None)
    killed = subprocess.run([sys.executable, "-m", "ragindex.cli", "tenants", "remove", "acme", "--yes"], env=env)
    assert killed.returncode == -9 and not store.exists("acme") and list(store.tenants_dir.glob(".removing-acme-*"))
    env.pop("RAGINDEX_FAULT")
    done = subprocess.run([sys.executable, "-m", "ragindex.cli", "tenants", "remove", "acme", "--yes"], env=env)
    assert done.returncode == 0 and not list(store.tenants_dir.glob(".removing-*"))
    assert list_generations(paths) == []


def test_removing_a_tenant_leaves_another_tenants_interrupted_removal_alone(store, hash_embedder, tmp_path):
    """`tenants remove x` finishes x's own interrupted removal, never that of `x-1` (the name is matched exactly)."""
    src = write_jsonl(tmp_path / "a.jsonl", passage_docs(5))
    for t in ("x", "x-1"):
        reindex(store, t, source=src, chunker="recursive-200@1", embedder=hash_embedder)
    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_FAULT": "tenant-removing"}
    env.pop("DAGSTER_HOME", None)
    killed = subprocess.run([sys.executable, "-m", "ragindex.cli", "tenants", "remove", "x-1", "--yes"], env=env, check=False)
    assert killed.returncode == -9
    theirs = list(store.tenants_dir.glob(".removing-x-1-*"))
    assert len(theirs) == 1
    res = ragindex("tenants", "remove", "x", "--yes", "--json")
    assert res.exit_code == 0, res.output
    assert not store.exists("x") and list(store.tenants_dir.glob(".removing-x-1-*")) == theirs
    assert all(".removing-x-1-" not in r for r in json.loads(res.stdout)["removed"])
