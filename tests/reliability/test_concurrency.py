"""Concurrency: two writers of one tenant, and searches under load while a reindex promotes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from benchmarks.support.devserver import fresh_dagster_home
from benchmarks.support.loadtest import search_during_reindex
from ragindex.cache import EmbeddingCache
from ragindex.index import current_id
from ragindex.reindex import reindex
from tests.conftest import scifact_docs, write_jsonl


def _cli(home, *args, env: dict | None = None):
    """`ragindex` in a subprocess; a plain run (no Dagster instance) unless ``env`` names DAGSTER_HOME."""
    base = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env = {**base, "RAGINDEX_HOME": str(home), "RAGINDEX_MODEL": "hash", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "ragindex.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_cli_reindexes_of_one_tenant(store, tmp_path):
    big = write_jsonl(tmp_path / "big.jsonl", scifact_docs(2500))
    store.create("acme")
    # The first writer freezes itself while it holds the lock (after its first cache commit).
    first = _cli(store.root, "reindex", "-t", "acme", "--source", str(big), "--chunker", "recursive-200@1", "--json",
                 env={"RAGINDEX_FAULT": "mid-embedding:stop"})
    _wait_until_stopped(first)
    assert store.paths("acme").lock.read_text().strip() == str(first.pid)
    second = _cli(store.root, "reindex", "-t", "acme", "--source", str(big), "--chunker", "recursive-200@1")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 4 and "being written by another process" in err and "--wait" in err  # fails clearly
    queued = _cli(store.root, "reindex", "-t", "acme", "--source", str(big), "--chunker", "recursive-200@1", "--wait", "300",
                  "--json")
    time.sleep(2)
    assert queued.poll() is None  # waiting for the lock, not failing
    os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    out2, err2 = queued.communicate(timeout=300)
    assert queued.returncode == 0, err2  # waited its turn, then found nothing to do
    assert json.loads(out2)["status"] == "unchanged" and json.loads(out2)["generation"] == json.loads(out)["generation"]
    assert _ledger_pays_each_text_once(store, "acme") == json.loads(out)["ledger"]["texts"]


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


def _wait_until_stopped(proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Wait for ``proc`` to freeze itself at its RAGINDEX_FAULT=<point>:stop (state T in /proc)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before its stop point: {proc.stderr.read()[-2000:]}")
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.05)
    raise AssertionError("never reached its stop point")


def _ledger_pays_each_text_once(store, tenant: str) -> int:
    """Every text embedded by a complete or partial run is in the cache exactly once: sum over runs == vectors."""
    with EmbeddingCache(store.paths(tenant).cache, read_only=True) as cache:
        paid = sum(r["texts"] for r in cache.runs())
        vectors = cache.stats()["vectors"]
    assert paid == vectors, f"ledger paid for {paid} texts, cache holds {vectors}: something was embedded twice"
    return vectors


@pytest.mark.slow
def test_cli_reindex_during_a_dagster_run_of_the_same_tenant(store, tmp_path):
    """The Dagster run takes the tenant lock per asset, so a CLI run can come in between assets, or find it busy.

    Both interleavings are forced by freezing the Dagster run (RAGINDEX_FAULT=<point>:stop):
    A. before the embeddings asset takes the lock: the CLI reindexes everything, and the
       resumed Dagster run plans under the lock, so it embeds nothing;
    B. holding the lock, mid-embedding: the CLI fails at once with exit 4, and with
       --wait it queues, then finds nothing left to embed.
    """
    v1 = write_jsonl(tmp_path / "v1.jsonl", scifact_docs(400))
    v2 = write_jsonl(tmp_path / "v2.jsonl", scifact_docs(700))
    dagster_env = {"DAGSTER_HOME": str(fresh_dagster_home(tmp_path / "dagster_home"))}
    tenants_add = _cli(store.root, "tenants", "add", "acme", "--source", str(v1), env=dagster_env)
    assert tenants_add.wait(timeout=120) == 0, tenants_add.stderr.read()

    # A. The CLI slips in between the Dagster run's assets.
    dag = _cli(store.root, "reindex", "-t", "acme", "--json", env={**dagster_env, "RAGINDEX_FAULT": "embeddings-lock:stop"})
    _wait_until_stopped(dag)
    cli = _cli(store.root, "reindex", "-t", "acme", "--json")
    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err
    cli_texts = json.loads(out)["ledger"]["texts"]
    assert cli_texts > 0
    os.kill(dag.pid, signal.SIGCONT)
    out, err = dag.communicate(timeout=300)
    assert dag.returncode == 0, err
    dag_out = json.loads(out)
    assert dag_out["plan"]["texts_to_embed"] == 0 and dag_out["ledger"]["texts"] == 0  # planned under the lock
    assert _ledger_pays_each_text_once(store, "acme") == cli_texts

    # B. The Dagster run holds the lock mid-embedding (after its first cache commit).
    dag = _cli(store.root, "reindex", "-t", "acme", "--source", str(v2), "--json",
               env={**dagster_env, "RAGINDEX_FAULT": "mid-embedding:stop"})
    _wait_until_stopped(dag)
    busy = _cli(store.root, "reindex", "-t", "acme", "--source", str(v2))
    _, err = busy.communicate(timeout=120)
    assert busy.returncode == 4 and "being written by another process" in err
    queued = _cli(store.root, "reindex", "-t", "acme", "--source", str(v2), "--json", "--wait", "300")
    time.sleep(2)
    assert queued.poll() is None  # waiting for the lock, not failing
    os.kill(dag.pid, signal.SIGCONT)
    out, err = dag.communicate(timeout=300)
    assert dag.returncode == 0, err
    dag_texts = json.loads(out)["ledger"]["texts"]
    out, err = queued.communicate(timeout=300)
    assert queued.returncode == 0, err
    assert json.loads(out)["ledger"]["texts"] == 0
    assert _ledger_pays_each_text_once(store, "acme") == cli_texts + dag_texts > cli_texts

    verify = _cli(store.root, "verify", "-t", "acme", "--json")
    out, err = verify.communicate(timeout=120)
    assert verify.returncode == 0, out + err
