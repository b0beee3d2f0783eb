"""Generations over segments: SIGKILL at every write point leaves the old one live; verify/repair per
segment; rollback; gc; locks; isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ragindex.indexing.repair import verify
from ragindex.indexing.run import reindex
from ragindex.search.generation import load_generation
from ragindex.search.searcher import Searcher
from ragindex.store.cache import EmbeddingCache
from ragindex.store.generations import gc, rollback
from ragindex.store.locking import TenantBusy, tenant_lock
from ragindex.store.manifests import GenerationError, current_id, list_generations, live_manifest, read_manifest
from tests.support.data import passage_docs, write_jsonl
from tests.support.tenants import register, writing


def cli(home, *args, fault=None, check=True, env=None):
    env = {**os.environ, "RAGINDEX_HOME": str(home), "RAGINDEX_MODEL": "hash", **(env or {})}
    env.pop("RAGINDEX_FAULT", None)
    if fault:
        env["RAGINDEX_FAULT"] = fault
    p = subprocess.run([sys.executable, "-m", "ragindex.cli", *args], env=env, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"ragindex {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def _sources(tmp_path):
    docs = passage_docs(160)
    v1 = write_jsonl(tmp_path / "v1.jsonl", docs[:120])
    edited = [dict(d, text=d["text"] + " Edited.") if i % 10 == 0 else d for i, d in enumerate(docs[:120])]
    v2 = write_jsonl(tmp_path / "v2.jsonl", edited + docs[120:])
    return v1, v2


@pytest.mark.slow
@pytest.mark.parametrize("point", ["mid-embedding", "segment-file", "segment-written", "deletions-written",
                                   "generation-built", "merge-written", "gc-manifests"])
def test_sigkill_leaves_previous_generation_live(tmp_path, store, point):
    """The run killed at ``point`` is a real `ragindex reindex` process; what comes before and after it (the
    first run, the search, verify and the next run) is the library in this process, with the embedder
    `--model hash` builds, so each case pays for one interpreter start, not five."""
    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.indexing.plan import Throughput

    home = store.root
    emb = EmbedderConfig("hash").build()
    Throughput(home).record(emb, tokens=100_000, seconds=1.0)  # no calibration, here or in the killed process
    v1, v2 = _sources(tmp_path)
    reindex(store, "acme", source=v1, chunker="recursive-200@1", embedder=emb)
    paths = store.paths("acme")
    live = first_live = current_id(paths)
    env_extra = {"RAGINDEX_MERGE_FACTOR": "2"} if point == "merge-written" else {}
    killed = cli(home, "reindex", "-t", "acme", "--source", str(v2), "--chunker", "recursive-200@1", fault=point, check=False,
                 env=env_extra)
    assert killed.returncode == -9, killed.stderr
    if point in ("merge-written", "gc-manifests"):
        # Killed after the run's own promote: its generation is live and complete.
        live = current_id(paths)
        assert live != first_live
    else:
        assert current_id(paths) == live  # the old generation stays live ...
    hits = Searcher(store, emb).search("acme", "gene expression", k=10)
    assert hits and all(h.generation == live for h in hits)  # ... and answers searches
    report = verify(paths)
    assert report["ok"] and report["current"] == live
    done = reindex(store, "acme", source=v2, chunker="recursive-200@1", embedder=emb)
    assert current_id(paths) == done.generation
    assert done.status == ("unchanged" if point in ("merge-written", "gc-manifests") else "promoted")
    assert not list(paths.segments.glob(".tmp-*")) and verify(paths)["ok"]  # gc removed what the crash left
    with EmbeddingCache(paths.cache, read_only=True) as c:
        embedded = sum(r["texts"] for r in c.runs())
        distinct = c.stats()["vectors"]
    assert embedded == distinct  # no text committed to the cache was embedded again


def _built(store, tmp_path, hash_embedder, n=2):
    v1, v2 = _sources(tmp_path)
    gens = [reindex(store, "acme", source=s, chunker="recursive-200@1", embedder=hash_embedder).generation for s in (v1, v2)[:n]]
    return gens


def test_truncated_index_is_repaired_in_place_without_reembedding(store, tmp_path, hash_embedder):
    _built(store, tmp_path, hash_embedder)
    paths = store.paths("acme")
    live = current_id(paths)
    seg = live_manifest(paths).segments[0].id
    f = paths.segments / seg / "index.faiss"
    original = f.read_bytes()
    f.write_bytes(original[: len(original) // 2])
    with pytest.raises(GenerationError, match="checksum"):
        load_generation(paths, live)
    report = verify(paths)
    assert report["status"] == "damaged" and "checksum" in " ".join(report["segments"][seg])
    calls = list(hash_embedder.calls)
    with writing(paths):
        fixed = verify(paths, repair=True)
    assert fixed["status"] == "repaired" and hash_embedder.calls == calls  # nothing re-embedded
    assert f.read_bytes() == original  # a flat index rebuilt from the cache is byte-identical
    assert current_id(paths) == live  # the segment was healed for every generation that shares it
    assert verify(paths)["status"] == "ok"  # and a plain verify is clean again
    assert Searcher(store, hash_embedder).search("acme", "cancer", 3)


@pytest.mark.parametrize("which", ["docs.parquet", "rows.parquet"])
def test_damaged_segment_tables_are_rebuilt(store, tmp_path, hash_embedder, which):
    """docs.parquet from the rows; rows.parquet by chunking the segment's documents again from the source."""
    from ragindex.store.tenants import TenantSettings

    v1, _ = _sources(tmp_path)
    register(store, "acme", TenantSettings(source=str(v1), chunker="recursive-200@1"))
    reindex(store, "acme", embedder=hash_embedder)
    paths = store.paths("acme")
    seg = live_manifest(paths).segments[0].id
    f = paths.segments / seg / which
    before = Searcher(store, hash_embedder).search("acme", "cancer", 5)
    f.write_bytes(f.read_bytes()[:200])
    assert verify(paths)["status"] == "damaged"
    with writing(paths):
        fixed = verify(paths, repair=True)
    assert fixed["status"] == "repaired", fixed["repairs"]
    after = Searcher(store, hash_embedder).search("acme", "cancer", 5)
    assert [(h.chunk_id, h.text) for h in after] == [(h.chunk_id, h.text) for h in before]
    assert reindex(store, "acme", embedder=hash_embedder).ledger["texts"] == 0


def test_current_naming_missing_generation(store, tmp_path, hash_embedder):
    gens = _built(store, tmp_path, hash_embedder)
    paths = store.paths("acme")
    paths.current.write_text("20990101T000000000000Z-deadbeef\n")
    with pytest.raises(GenerationError, match="missing"):
        Searcher(store, hash_embedder).search("acme", "cancer")
    with writing(paths):
        report = verify(paths, repair=True)
    assert "has no manifest" in report["problems"][0] and report["status"] == "repaired"
    assert current_id(paths) == gens[-1]


def test_rollback_and_gc(store, tmp_path, hash_embedder):
    v1, v2 = _sources(tmp_path)
    gens = [reindex(store, "acme", source=s, chunker="recursive-200@1", embedder=hash_embedder).generation for s in (v1, v2, v1, v2)]
    assert len(set(gens)) == 4
    paths = store.paths("acme")
    with writing(paths):
        assert rollback(paths) == gens[2] and current_id(paths) == gens[2]
    with writing(paths):
        assert rollback(paths) == gens[1]  # a second rollback goes one further back, following the parents
    with pytest.raises(GenerationError):
        with writing(paths):
            rollback(paths, to="nope")
    with writing(paths):
        promote_to = rollback(paths, to=gens[3])
    assert promote_to == gens[3]
    with writing(paths):
        removed = gc(paths, keep=1)
    # newest kept (live), and the one a rollback would return to (its parent)
    assert set(list_generations(paths)) == {gens[2], gens[3]} and set(removed) >= {gens[0], gens[1]}
    referenced = {r.id for g in list_generations(paths) for r in read_manifest(paths, g).segments}
    assert {d.name for d in paths.segments.iterdir()} == referenced  # only segments a kept generation names
    assert verify(paths)["ok"]
    assert Searcher(store, hash_embedder).search("acme", "cancer", 3)


def test_searcher_follows_promotion_without_restart(store, tmp_path, hash_embedder):
    v1, v2 = _sources(tmp_path)
    a = reindex(store, "acme", source=v1, chunker="recursive-200@1", embedder=hash_embedder).generation
    s = Searcher(store, hash_embedder)
    assert s.search("acme", "cancer")[0].generation == a
    b = reindex(store, "acme", source=v2, chunker="recursive-200@1", embedder=hash_embedder).generation
    assert s.search("acme", "cancer")[0].generation == b


def test_two_tenants_with_identical_documents_never_cross(store, tmp_path, hash_embedder):
    docs = passage_docs(60)
    a = write_jsonl(tmp_path / "a.jsonl", docs[:40])
    b = write_jsonl(tmp_path / "b.jsonl", docs[20:60])  # 20 identical documents shared
    reindex(store, "ta", source=a, chunker="recursive-200@1", embedder=hash_embedder)
    reindex(store, "tb", source=b, chunker="recursive-200@1", embedder=hash_embedder)
    s = Searcher(store, hash_embedder)
    gen_b = load_generation(store.paths("tb"), current_id(store.paths("tb")))
    ids_b = {c for v in gen_b.views for c in v.seg.rows.column("chunk_id").to_pylist()}
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


def test_verify_exit_codes_distinguish_repaired_from_damaged(store, tmp_path, hash_embedder):
    """0 intact; 5 damage found; 6 damage found and repaired (a plain verify is then 0 again)."""
    _built(store, tmp_path, hash_embedder)
    paths = store.paths("acme")
    assert cli(store.root, "verify", "-t", "acme", check=False).returncode == 0
    seg = live_manifest(paths).segments[0].id
    f = paths.segments / seg / "index.faiss"
    f.write_bytes(f.read_bytes()[:100])
    assert cli(store.root, "verify", "-t", "acme", check=False).returncode == 5
    fixed = cli(store.root, "verify", "-t", "acme", "--repair", "--json", check=False)
    assert fixed.returncode == 6 and json.loads(fixed.stdout)["status"] == "repaired"
    assert cli(store.root, "verify", "-t", "acme", check=False).returncode == 0
