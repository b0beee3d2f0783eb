"""Readers while a reindex holds the embedding cache: `plan`, `status` and `verify` say "busy, retry"
(or work), and none of them calls a busy cache corrupt or advises moving it aside (paid-for vectors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ragindex.indexing.run import reindex
from ragindex.store.tenants import TenantSettings
from tests.support.data import passage_docs, write_jsonl
from tests.support.tenants import register

HOLD = """
import sys, time
from ragindex.store.cache import EmbeddingCache
with EmbeddingCache(sys.argv[1]):  # read-write, as the embed stage of a running reindex holds it
    print("holding", flush=True)
    time.sleep(120)
"""

DISCARD_ADVICE = ("aside", "delete", "corrupt", "cannot open", "--repair")


@pytest.fixture
def busy_tenant(store, hash_embedder, tmp_path):
    src = write_jsonl(tmp_path / "docs.jsonl", passage_docs(30))
    register(store, "acme", TenantSettings(source=str(src), chunker="recursive-200@1"))
    reindex(store, "acme", embedder=hash_embedder)
    write_jsonl(src, passage_docs(40))  # ten new documents: the plan has texts to look up in the cache
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store.paths("acme").cache)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_MODEL": "hash"}
    yield env
    holder.kill()
    holder.wait()


def _cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ragindex.cli", *args], env=env, capture_output=True, text=True, timeout=300)


def test_plan_says_busy_retry_with_the_busy_exit_code(busy_tenant):
    res = _cli(busy_tenant, "plan", "-t", "acme", "--json")
    assert res.returncode == 4, res.stderr
    err = json.loads(res.stdout)["error"]
    assert err["kind"] == "tenant busy" and "busy, retry" in err["message"]
    assert not any(word in res.stderr.lower() for word in DISCARD_ADVICE), res.stderr


def test_a_plan_with_nothing_to_look_up_works_while_the_cache_is_busy(busy_tenant, tmp_path):
    docs = tmp_path / "docs.jsonl"
    write_jsonl(docs, passage_docs(30))  # back to what is indexed: nothing new
    res = _cli(busy_tenant, "plan", "-t", "acme", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["texts_to_embed"] == 0


def test_status_still_reports_the_live_generation_and_marks_the_cache_busy(busy_tenant):
    res = _cli(busy_tenant, "status", "-t", "acme", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["generation"] and out["cache"]["busy"] is True and "busy, retry" in out["cache"]["message"]


def test_verify_does_not_call_a_busy_cache_corrupt(busy_tenant):
    res = _cli(busy_tenant, "verify", "-t", "acme", "--json")
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    assert "busy, retry" in res.stderr
    assert not any(word in res.stderr.lower() for word in DISCARD_ADVICE), res.stderr


def test_once_the_writer_is_gone_the_same_commands_work(store, hash_embedder, tmp_path):
    src = write_jsonl(tmp_path / "docs.jsonl", passage_docs(10))
    register(store, "acme", TenantSettings(source=str(src), chunker="recursive-200@1"))
    reindex(store, "acme", embedder=hash_embedder)
    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_MODEL": "hash"}
    assert _cli(env, "plan", "-t", "acme", "--json").returncode == 0
    assert _cli(env, "verify", "-t", "acme", "--json").returncode == 0
    assert "busy" not in json.loads(_cli(env, "status", "-t", "acme", "--json").stdout)["cache"]
