"""Corrupted or truncated files and a full disk: detected with a clear message, repaired without re-embedding."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

import pytest

from ragindex.indexing.repair import verify
from ragindex.indexing.run import reindex
from ragindex.search.searcher import Searcher
from ragindex.store.cache import CacheError, EmbeddingCache
from ragindex.store.manifests import current_id, list_generations
from tests.support.data import passage_docs, write_jsonl
from tests.support.tenants import writing


@pytest.fixture
def indexed(store, tmp_path, hash_embedder):
    src = write_jsonl(tmp_path / "c.jsonl", passage_docs(80))
    res = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    return store.paths("acme"), res, src


def test_corrupt_cache_is_detected_and_refilled_from_the_index(indexed, hash_embedder, store):
    paths, res, src = indexed
    paths.cache.write_bytes(b"this is not a duckdb file" * 100)
    with pytest.raises(CacheError, match="cannot open the embedding cache"):
        with EmbeddingCache(paths.cache, read_only=True):
            pass
    with writing(paths):
        report = verify(paths, repair=True)
    assert report["status"] == "repaired" and "restored" in report["repairs"][0]
    calls = list(hash_embedder.calls)
    again = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    assert again.ledger["texts"] == 0 and hash_embedder.calls == calls  # nothing re-embedded
    assert verify(paths)["ok"]


def test_corrupt_manifest_falls_back_to_an_intact_generation(indexed, store, hash_embedder, tmp_path):
    paths, first, _ = indexed
    src2 = write_jsonl(tmp_path / "d.jsonl", passage_docs(90))
    second = reindex(store, "acme", source=src2, chunker="recursive-200@1", embedder=hash_embedder)
    paths.manifest(second.generation).write_text("{ truncated")
    with pytest.raises(Exception, match="corrupt manifest"):
        Searcher(store, hash_embedder).search("acme", "cancer")
    with writing(paths):
        report = verify(paths, repair=True)
    assert report["status"] == "partly repaired" and report["repaired_current"] == first.generation
    assert report["moved_aside"] == [f"{second.generation}.json.damaged"]
    assert Searcher(store, hash_embedder).search("acme", "cancer")
    assert verify(paths)["ok"]  # consistent again: a plain verify exits 0
    third = reindex(store, "acme", source=src2, chunker="recursive-200@1", embedder=hash_embedder)
    assert third.status == "promoted" and third.ledger["texts"] == 0  # the lost generation's vectors are cached


def test_manifest_edited_in_place_is_refused(indexed, store, hash_embedder):
    """A manifest that still parses but was changed (its sha256 no longer matches) is damage, not data."""
    paths, first, _ = indexed
    f = paths.manifest(first.generation)
    f.write_text(f.read_text().replace('"documents": 80', '"documents": 81'))
    with pytest.raises(Exception, match="corrupt manifest"):
        Searcher(store, hash_embedder).search("acme", "cancer")
    assert verify(paths)["status"] == "damaged"


def _limit_file_size(limit):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


@pytest.mark.parametrize("limit", [20_000, 200_000, 600_000])
def test_disk_full_fails_cleanly_and_keeps_the_live_generation(indexed, tmp_path, store, limit):
    paths, first, _ = indexed
    src = write_jsonl(tmp_path / "big.jsonl", passage_docs(1500))
    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_MODEL": "hash"}
    p = subprocess.run([sys.executable, "-m", "ragindex.cli", "reindex", "-t", "acme", "--source", str(src), "--chunker", "recursive-200@1"],
                       env=env, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size(limit))
    assert p.returncode == 1, (p.returncode, p.stderr[-2000:])
    assert "error:" in p.stderr and "Traceback" not in p.stderr
    assert current_id(paths) == first.generation and list_generations(paths) == [first.generation]
    assert not list(paths.segments.glob(".tmp-*")) and not list(paths.generations.glob(".*tmp*"))
    out = subprocess.run([sys.executable, "-m", "ragindex.cli", "search", "-t", "acme", "cancer", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout)[0]["generation"] == first.generation
