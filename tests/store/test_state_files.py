"""Issue 13, store: state files are validated, never trusted (CURRENT, manifests, the cache), and a queued
rollback reports what it really replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ragindex.indexing.repair import verify
from ragindex.indexing.run import reindex
from ragindex.search.searcher import Searcher
from ragindex.store.manifests import current_id
from tests.support.cli import ragindex
from tests.support.data import passage_docs, write_jsonl
from tests.support.tenants import writing


def test_current_pointing_at_another_tenant_is_refused_and_repaired(store, hash_embedder, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", passage_docs(10))
    b = write_jsonl(tmp_path / "b.jsonl", passage_docs(20)[10:])
    ga = reindex(store, "ta", source=a, chunker="recursive-200@1", embedder=hash_embedder).generation
    gb = reindex(store, "tb", source=b, chunker="recursive-200@1", embedder=hash_embedder).generation
    paths = store.paths("ta")
    for forged in (f"../../tb/generations/{gb}", gb, "\x00\xff\xfe binary", ""):
        paths.current.write_bytes(forged.encode("utf-8", "surrogateescape") if isinstance(forged, str) else forged)
        if forged == gb:  # a valid id, but not a generation of this tenant
            assert verify(paths)["status"] == "damaged"
        else:
            with pytest.raises(Exception):
                Searcher(store, hash_embedder).search("ta", "cancer")
        with writing(paths):
            fixed = verify(paths, repair=True)
        assert fixed["status"] == "repaired" and current_id(paths) == ga, (forged, fixed)
        hits = Searcher(store, hash_embedder).search("ta", "cancer", k=50)
        assert {h.doc_id for h in hits} <= {d["_id"] for d in passage_docs(10)}


def test_a_manifest_missing_fields_is_damage_that_repair_handles(store, hash_embedder, tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", passage_docs(10))
    first = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    second = reindex(store, "acme", source=write_jsonl(tmp_path / "b.jsonl", passage_docs(12)), chunker="recursive-200@1",
                     embedder=hash_embedder)
    paths = store.paths("acme")
    m = json.loads(paths.manifest(second.generation).read_text())
    del m["segments"], m["embedder_fp"]
    paths.manifest(second.generation).write_text(json.dumps(m))
    res = ragindex("search", "-t", "acme", "cancer")
    assert res.exit_code == 1 and "corrupt manifest" in res.output and "Traceback" not in res.output
    with writing(paths):
        fixed = verify(paths, repair=True)
    assert fixed["status"] == "partly repaired" and current_id(paths) == first.generation and verify(paths)["ok"]


def test_a_corrupt_cache_message_advises_repair_not_paying_again(store, indexed_folder):
    paths = store.paths("acme")
    paths.cache.write_bytes(b"garbage" * 1000)
    res = ragindex("status", "-t", "acme")
    assert res.exit_code == 1 and "verify --tenant acme --repair" in res.output and "move it aside" not in res.output


def test_a_queued_rollback_reports_what_it_replaced(store, hash_embedder, tmp_path):
    gens = [reindex(store, "acme", source=write_jsonl(tmp_path / f"{n}.jsonl", passage_docs(n)), chunker="recursive-200@1",
                    embedder=hash_embedder).generation for n in (10, 12, 14)]
    paths = store.paths("acme")
    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_MODEL": "hash"}
    with writing(paths):
        proc = subprocess.Popen([sys.executable, "-m", "ragindex.cli", "rollback", "-t", "acme", "--wait", "60", "--json"],
                                env=env, stdout=subprocess.PIPE, text=True)
        import time

        time.sleep(1.5)
        from ragindex.store.generations import rollback

        rollback(paths)  # another writer rolls back first: gens[2] -> gens[1]
    out = json.loads(proc.communicate(timeout=60)[0])
    assert (out["from"], out["to"]) == (gens[1], gens[0])
