"""Generations: SIGKILL at every point leaves the old one live; verify/repair; rollback; gc; locks; isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.cache import EmbeddingCache
from pipeline.generations import gc, rollback, verify
from pipeline.index import GenerationError, current_id, list_generations, load_generation
from pipeline.locking import TenantBusy, tenant_lock
from pipeline.reindex import reindex
from pipeline.search import Searcher
from tests.conftest import scifact_docs, write_jsonl


def cli(home, *args, fault=None, check=True):
    env = {**os.environ, "RAGINDEX_HOME": str(home), "RAGINDEX_MODEL": "hash"}
    env.pop("RAGINDEX_FAULT", None)
    if fault:
        env["RAGINDEX_FAULT"] = fault
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"ragindex {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def _sources(tmp_path):
    docs = scifact_docs(160)
    v1 = write_jsonl(tmp_path / "v1.jsonl", docs[:120])
    edited = [dict(d, text=d["text"] + " Edited.") if i % 10 == 0 else d for i, d in enumerate(docs[:120])]
    v2 = write_jsonl(tmp_path / "v2.jsonl", edited + docs[120:])
    return v1, v2


@pytest.mark.slow
@pytest.mark.parametrize("point", ["documents-written", "chunks-written", "mid-embedding", "index-build", "generation-built"])
def test_sigkill_leaves_previous_generation_live(tmp_path, store, point):
    home = store.root
    v1, v2 = _sources(tmp_path)
    cli(home, "reindex", "-t", "acme", "--source", str(v1), "--chunker", "recursive-200@1", "--json")
    paths = store.paths("acme")
    live = current_id(paths)
    killed = cli(home, "reindex", "-t", "acme", "--source", str(v2), "--chunker", "recursive-200@1", fault=point, check=False)
    assert killed.returncode == -9, killed.stderr
    assert current_id(paths) == live  # the old generation stays live ...
    hits = json.loads(cli(home, "search", "-t", "acme", "cancer", "--json").stdout)
    assert hits and all(h["generation"] == live for h in hits)  # ... and answers searches
    report = json.loads(cli(home, "verify", "-t", "acme", "--json").stdout)
    assert report["ok"] and report["current"] == live
    done = json.loads(cli(home, "reindex", "-t", "acme", "--source", str(v2), "--chunker", "recursive-200@1", "--json").stdout)
    assert current_id(paths) == done["generation"] != live
    with EmbeddingCache(paths.cache, read_only=True) as c:
        embedded = sum(r["texts"] for r in c.runs())
        distinct = c.stats()["vectors"]
    assert embedded == distinct  # no text committed to the cache was embedded again


def _built(store, tmp_path, hash_embedder, n=2):
    v1, v2 = _sources(tmp_path)
    gens = [reindex(store, "acme", source=s, chunker="recursive-200@1", embedder=hash_embedder).generation for s in (v1, v2)[:n]]
    return gens


def test_truncated_index_is_detected_and_repaired_without_reembedding(store, tmp_path, hash_embedder):
    _, live = _built(store, tmp_path, hash_embedder)
    paths = store.paths("acme")
    f = paths.generations / live / "index.faiss"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(GenerationError, match="checksum"):
        load_generation(paths, live)
    report = verify(paths)
    assert not report["ok"] and "checksum" in " ".join(next(g for g in report["generations"] if g["live"])["problems"])
    calls = list(hash_embedder.calls)
    fixed = verify(paths, repair=True)
    new = next(g for g in fixed["generations"] if g["live"])["repaired_as"]
    assert current_id(paths) == new and hash_embedder.calls == calls
    assert verify(paths)["generations"][-1]["ok"]
    assert Searcher(store, hash_embedder).search("acme", "cancer", 3)


def test_current_naming_missing_generation(store, tmp_path, hash_embedder):
    gens = _built(store, tmp_path, hash_embedder)
    paths = store.paths("acme")
    paths.current.write_text("20990101T000000000000Z-deadbeef\n")
    with pytest.raises(GenerationError, match="missing"):
        Searcher(store, hash_embedder).search("acme", "cancer")
    report = verify(paths, repair=True)
    assert "not a complete generation" in report["problems"][0]
    assert current_id(paths) == gens[-1]


def test_rollback_and_gc(store, tmp_path, hash_embedder):
    v1, v2 = _sources(tmp_path)
    gens = [reindex(store, "acme", source=s, chunker="recursive-200@1", embedder=hash_embedder).generation for s in (v1, v2, v1, v2)]
    assert len(set(gens)) == 4
    paths = store.paths("acme")
    assert rollback(paths) == gens[2] and current_id(paths) == gens[2]
    with pytest.raises(GenerationError):
        rollback(paths, to="nope")
    removed = gc(paths, keep=1)
    # newest kept, live (gens[2]) and the one before it (gens[1]) kept
    assert set(list_generations(paths)) == {gens[1], gens[2], gens[3]} and removed == [gens[0]]


def test_searcher_follows_promotion_without_restart(store, tmp_path, hash_embedder):
    v1, v2 = _sources(tmp_path)
    a = reindex(store, "acme", source=v1, chunker="recursive-200@1", embedder=hash_embedder).generation
    s = Searcher(store, hash_embedder)
    assert s.search("acme", "cancer")[0].generation == a
    b = reindex(store, "acme", source=v2, chunker="recursive-200@1", embedder=hash_embedder).generation
    assert s.search("acme", "cancer")[0].generation == b


def test_two_tenants_with_identical_documents_never_cross(store, tmp_path, hash_embedder):
    docs = scifact_docs(60)
    a = write_jsonl(tmp_path / "a.jsonl", docs[:40])
    b = write_jsonl(tmp_path / "b.jsonl", docs[20:60])  # 20 identical documents shared
    reindex(store, "ta", source=a, chunker="recursive-200@1", embedder=hash_embedder)
    reindex(store, "tb", source=b, chunker="recursive-200@1", embedder=hash_embedder)
    s = Searcher(store, hash_embedder)
    ids_b = set(load_generation(store.paths("tb"), current_id(store.paths("tb"))).rows.column("chunk_id").to_pylist())
    a_docs = {d["_id"] for d in docs[:40]}
    for d in docs[20:40]:
        hits = s.search("ta", d["title"], k=20)
        assert all(h.doc_id in a_docs and h.chunk_id not in ids_b for h in hits)
    assert str(store.paths("tb").root) not in json.dumps([h.to_dict() for h in hits])


def test_one_writer_per_tenant_and_stale_lock_recovery(store, tmp_path):
    v1, _ = _sources(tmp_path)
    paths = store.create("acme")
    home = store.root
    with tenant_lock(paths.lock):
        busy = cli(home, "reindex", "-t", "acme", "--source", str(v1), check=False)
        assert busy.returncode == 4 and "being written by another process" in busy.stderr
        # a different tenant is not blocked by acme's writer
        cli(home, "reindex", "-t", "other", "--source", str(v1))
        with pytest.raises(TenantBusy):
            with tenant_lock(paths.lock):
                pass
    # a lock file left by a killed writer (dead pid) does not block
    paths.lock.write_text("999999")
    out = cli(home, "reindex", "-t", "acme", "--source", str(v1))
    assert "stale lock" in out.stderr
