"""Concurrency: two writers of one tenant (CLI and Dagster runs alike), and searches under load while a reindex promotes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ragindex.indexing.run import reindex
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import current_id
from tests.support.data import passage_docs, write_jsonl
from tests.support.devserver import fresh_dagster_home
from tests.support.loadtest import search_during_reindex


def _cli(home, *args, env: dict | None = None):
    """`ragindex` in a subprocess; a plain run (no Dagster instance) unless ``env`` names DAGSTER_HOME."""
    base = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env = {**base, "RAGINDEX_HOME": str(home), "RAGINDEX_MODEL": "hash", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "ragindex.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_cli_reindexes_of_one_tenant(store, tmp_path):
    big = write_jsonl(tmp_path / "big.jsonl", passage_docs(2500))
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
    v1 = write_jsonl(tmp_path / "v1.jsonl", passage_docs(300))
    v2 = write_jsonl(tmp_path / "v2.jsonl", passage_docs(1200))
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


def _dagster_run(home, dagster_home, tenant: str, tmp_path, *, config: dict | None = None, env: dict | None = None):
    """One run of the `reindex_tenant` job for ``tenant``, launched like an operator would (`dagster job execute`).

    The code location's executor is the in-process one, so this one process runs every
    step of the run, and holds the tenant's writer lock from before the first to after the last.
    """
    args = [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "ragindex.orchestration.definitions",
            "-j", "reindex_tenant", "--tags", json.dumps({"dagster/partition": tenant})]
    if config:
        cfg = tmp_path / f"run-config-{time.time_ns()}.yaml"
        cfg.write_text(json.dumps(config))  # JSON is YAML
        args += ["-c", str(cfg)]
    base = {k: v for k, v in os.environ.items() if k != "RAGINDEX_FAULT"}
    full = {**base, "DAGSTER_HOME": str(dagster_home), "RAGINDEX_HOME": str(home), "RAGINDEX_MODEL": "hash", **(env or {})}
    return subprocess.Popen(args, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def _embedded_by(instance, run_id: str) -> int:
    (mat,) = [e.asset_materialization for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
              if e.asset_materialization.asset_key == dg.AssetKey("embeddings")]
    return mat.metadata["texts_embedded"].value


@pytest.mark.slow
def test_a_dagster_run_holds_the_tenants_lock_from_its_first_step_to_its_last(store, tmp_path, monkeypatch):
    """Every run holds the tenant's writer lock for its whole length, whoever triggers it.

    A. A Dagster run frozen between two steps (RAGINDEX_FAULT=embeddings-step:stop: documents
       and chunks done, nothing written yet) already holds the lock, taken at run start: a CLI
       reindex is refused at once (exit 4), and with --wait it queues, then finds nothing to do.
    B. A CLI reindex frozen mid-embedding holds it: a Dagster run for that tenant fails at run
       start (no step runs); with the run-level lock_wait_s it queues, then embeds nothing.
    """
    v1 = write_jsonl(tmp_path / "v1.jsonl", passage_docs(400))
    v2 = write_jsonl(tmp_path / "v2.jsonl", passage_docs(700))
    dagster_home = fresh_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))  # this process reads the runs back
    tenants_add = _cli(store.root, "tenants", "add", "acme", "--source", str(v1), env={"DAGSTER_HOME": str(dagster_home)})
    assert tenants_add.wait(timeout=120) == 0, tenants_add.stderr.read()
    lock = store.paths("acme").lock

    # A. The Dagster run, paused between its chunks and embeddings steps.
    dag = _dagster_run(store.root, dagster_home, "acme", tmp_path, env={"RAGINDEX_FAULT": "embeddings-step:stop"})
    _wait_until_stopped(dag)
    assert lock.read_text().strip() == str(dag.pid)  # held by the run's process, before its first write
    busy = _cli(store.root, "reindex", "-t", "acme", "--json")
    out, err = busy.communicate(timeout=300)
    assert busy.returncode == 4 and "being written by another process" in err, err
    assert json.loads(out)["error"]["kind"] == "tenant busy"
    queued = _cli(store.root, "reindex", "-t", "acme", "--json", "--wait", "300")
    time.sleep(2)
    assert queued.poll() is None  # waiting for the lock, not failing
    os.kill(dag.pid, signal.SIGCONT)
    _, err = dag.communicate(timeout=300)
    assert dag.returncode == 0, err[-3000:]
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == "acme"
        dag_texts = _embedded_by(instance, run.run_id)
    assert dag_texts > 0
    out, err = queued.communicate(timeout=300)
    assert queued.returncode == 0, err  # waited its turn behind the whole run, then found nothing to do
    assert json.loads(out)["status"] == "unchanged" and json.loads(out)["ledger"]["texts"] == 0
    assert json.loads(out)["generation"] == current_id(store.paths("acme"))
    assert _ledger_pays_each_text_once(store, "acme") == dag_texts

    # B. A CLI reindex holds the lock, mid-embedding.
    cli = _cli(store.root, "reindex", "-t", "acme", "--source", str(v2), "--json", env={"RAGINDEX_FAULT": "mid-embedding:stop"})
    _wait_until_stopped(cli)
    refused = _dagster_run(store.root, dagster_home, "acme", tmp_path)
    _, err = refused.communicate(timeout=300)
    assert refused.returncode != 0 and "being written by another process" in err, err[-3000:]
    with dg.DagsterInstance.get() as instance:
        failed = instance.get_runs()[0]
        assert failed.status == dg.DagsterRunStatus.FAILURE
        assert not instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.STEP_START)  # no step ran
    on_v2 = {"ops": {"documents": {"config": {"source": str(v2)}}}}
    waiting = _dagster_run(store.root, dagster_home, "acme", tmp_path,
                           config={**on_v2, "resources": {"writer": {"config": {"lock_wait_s": 300}}}})
    deadline = time.monotonic() + 120
    with dg.DagsterInstance.get() as instance:
        while len(instance.get_runs()) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(instance.get_runs()) == 3, "the queued Dagster run never started"
    time.sleep(2)
    assert waiting.poll() is None  # its run started, and waits for the lock instead of failing
    os.kill(cli.pid, signal.SIGCONT)
    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err
    cli_texts = json.loads(out)["ledger"]["texts"]
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err[-3000:]
    with dg.DagsterInstance.get() as instance:
        last = instance.get_runs()[0]
        assert last.status == dg.DagsterRunStatus.SUCCESS and _embedded_by(instance, last.run_id) == 0
    assert _ledger_pays_each_text_once(store, "acme") == dag_texts + cli_texts > dag_texts

    verify = _cli(store.root, "verify", "-t", "acme", "--json")
    out, err = verify.communicate(timeout=120)
    assert verify.returncode == 0, out + err
