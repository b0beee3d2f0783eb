"""Concurrency: two writers of one tenant, and searches under load while a reindex promotes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pipeline.index import current_id
from pipeline.loadtest import search_during_reindex
from pipeline.reindex import reindex
from tests.conftest import scifact_docs, write_jsonl


def _cli(home, *args):
    env = {**os.environ, "RAGINDEX_HOME": str(home), "RAGINDEX_MODEL": "hash"}
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_cli_reindexes_of_one_tenant(store, tmp_path):
    big = write_jsonl(tmp_path / "big.jsonl", scifact_docs(2500))
    store.create("acme")
    first = _cli(store.root, "reindex", "-t", "acme", "--source", str(big), "--chunker", "recursive-200@1")
    lock = store.paths("acme").lock
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.exists() and lock.read_text().strip() == str(first.pid)):
        time.sleep(0.05)
    assert lock.read_text().strip() == str(first.pid), "first writer never took the lock"
    second = _cli(store.root, "reindex", "-t", "acme", "--source", str(big), "--chunker", "recursive-200@1")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 4 and "being written by another process" in err and "--wait" in err  # fails clearly
    queued = _cli(store.root, "reindex", "-t", "acme", "--source", str(big), "--chunker", "recursive-200@1", "--wait", "300")
    assert first.wait(timeout=300) == 0
    assert queued.wait(timeout=300) == 0  # waited its turn, then found nothing to embed
    assert current_id(store.paths("acme"))


@pytest.mark.slow
def test_searches_under_load_while_a_reindex_promotes(store, tmp_path, hash_embedder):
    v1 = write_jsonl(tmp_path / "v1.jsonl", scifact_docs(300))
    v2 = write_jsonl(tmp_path / "v2.jsonl", scifact_docs(1200))
    first = reindex(store, "acme", source=v1, chunker="recursive-200@1", embedder=hash_embedder).generation
    result = search_during_reindex(store, "acme", hash_embedder, v2, "recursive-200@1")
    assert result["reindex_rc"] == 0
    assert result["errors"] == 0, result["error_samples"]
    second = current_id(store.paths("acme"))
    assert second != first and result["generations_seen"] == sorted({first, second})  # served old, then new
    assert result["searches"] > 50
