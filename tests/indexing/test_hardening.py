"""Issue 13, the indexing run: nothing lost, nothing paid twice, whatever the source or the cache does.

Each test is one probe that failed before the fix: a vanishing source, a missing cache, a budget
defeated by a forged throughput file, a failure that left a stale lock behind, a same-length edit.
(The probes of the other parts live with them: ingest/test_unreadable_input.py, store/test_state_files.py,
store/test_offboarding.py, cli/test_cli_errors.py, schemas/test_published_schema_edit.py,
chunkers/test_linear_work.py, orchestration/test_dagster_deletion_check.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from ragindex.embedders.local import HashEmbedder
from ragindex.indexing.plan import Throughput
from ragindex.indexing.repair import verify
from ragindex.indexing.run import MassDeletion, reindex
from ragindex.store.manifests import current_id, live_manifest
from tests.support.cli import ragindex
from tests.support.data import passage_docs, write_jsonl
from tests.support.folders import snapshot
from tests.support.tenants import writing


def test_an_emptied_source_is_refused_not_indexed(store, hash_embedder, indexed_folder):
    folder, first = indexed_folder
    paths = store.paths("acme")
    before = snapshot(paths)
    for f in folder.iterdir():
        f.unlink()  # what an unmounted share looks like
    res = ragindex("reindex", "-t", "acme", "--source", str(folder), "--chunker", "recursive-200@1", "--json")
    assert res.exit_code == 7, res.output
    err = json.loads(res.stdout)["error"]
    assert err["kind"] == "mass deletion refused" and "30 of 30" in err["message"] and "--allow-deletions" in err["message"]
    assert snapshot(paths) == before and current_id(paths) == first.generation
    ok = ragindex("reindex", "-t", "acme", "--source", str(folder), "--chunker", "recursive-200@1", "--allow-deletions")
    assert ok.exit_code == 0, ok.output
    assert live_manifest(paths).documents == 0


def test_more_than_half_deleted_is_refused_but_less_is_not(store, hash_embedder, indexed_folder):
    folder, _ = indexed_folder
    files = sorted(folder.iterdir())
    for f in files[:14]:
        f.unlink()
    assert reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder).changes["docs_deleted"] == 14
    for f in files[14:24]:
        f.unlink()  # 10 of the 16 left: 62%
    with pytest.raises(MassDeletion, match="10 of 16"):
        reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)


def test_a_folder_whose_files_all_fail_is_refused(store, hash_embedder, indexed_folder):
    folder, _ = indexed_folder
    for f in folder.iterdir():
        f.write_bytes(b"\x00\x01binary now")
    with pytest.raises(MassDeletion):
        reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)


def test_a_deleted_cache_is_refilled_not_paid_again(store, hash_embedder, indexed_folder):
    folder, first = indexed_folder
    paths = store.paths("acme")
    paths.cache.unlink()
    report = verify(paths)
    assert report["status"] == "damaged" and "cache" in report["problems"][0] and "missing" in report["problems"][0]
    f = sorted(folder.iterdir())[0]
    f.write_text(f.read_text() + "\nA change that needs a run.\n")
    res = ragindex("reindex", "-t", "acme", "--source", str(folder), "--chunker", "recursive-200@1")
    assert res.exit_code == 1 and "verify --tenant acme --repair" in res.output and not paths.cache.exists()
    calls = list(hash_embedder.calls)
    with writing(paths):
        fixed = verify(paths, repair=True)
    assert fixed["status"] == "repaired" and verify(paths)["ok"]
    again = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert again.ledger["texts"] <= again.plan.chunks_new and hash_embedder.calls[len(calls):] == [again.ledger["texts"]]


def test_a_forged_throughput_cannot_lower_the_cost(store, tmp_path):
    emb = HashEmbedder()
    t = Throughput(store.root)
    t.record(emb, 100_000, 1.0)
    f = t.path(emb)
    f.write_text(json.dumps({"tokens_per_s": 1e300, "embedder_fp": emb.fingerprint}))
    rate, source = t.get(emb)
    assert rate <= 250_000 and "implausible" in source  # ignored, measured again
    for bad in ("[1, 2]", '{"tokens_per_s": "fast"}', "not json", '{"tokens_per_s": -5}', '{"tokens_per_s": NaN}'):
        f.write_text(bad)
        rate, source = t.get(emb)
        assert 0 < rate <= 250_000 and source.startswith("calibrated")
    src = write_jsonl(tmp_path / "a.jsonl", passage_docs(50))
    f.write_text(json.dumps({"tokens_per_s": 1e300, "embedder_fp": emb.fingerprint}))
    res = ragindex("reindex", "-t", "newco", "--source", str(src), "--max-cost", "1e-12")
    assert res.exit_code == 3 and not store.exists("newco")


def test_parallel_throughput_writes_never_corrupt_the_file(store):
    emb = HashEmbedder()
    t = Throughput(store.root)
    threads = [threading.Thread(target=lambda i=i: [t.record(emb, 10_000 + i, 1.0) for _ in range(20)]) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    data = json.loads(t.path(emb).read_text())
    assert 10_000 <= data["tokens_per_s"] < 10_008 and not list(t.dir.glob(".*tmp"))


def test_no_stale_lock_warning_after_an_ordinary_failure(store, hash_embedder, indexed_folder, tmp_path):
    folder, _ = indexed_folder
    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_MODEL": "hash"}
    bad = subprocess.run([sys.executable, "-m", "ragindex.cli", "reindex", "-t", "acme", "--source", str(folder),
                          "--max-cost", "0"], env=env, capture_output=True, text=True)
    f = sorted(folder.iterdir())[0]
    f.write_text(f.read_text() + "\nchanged\n")
    bad = subprocess.run([sys.executable, "-m", "ragindex.cli", "reindex", "-t", "acme", "--source", str(folder),
                          "--chunker", "recursive-200@1", "--max-cost", "0"], env=env, capture_output=True, text=True)
    assert bad.returncode == 3
    ok = subprocess.run([sys.executable, "-m", "ragindex.cli", "reindex", "-t", "acme", "--source", str(folder),
                         "--chunker", "recursive-200@1"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "stale lock" not in ok.stderr


def test_a_same_length_edit_counts_a_new_chunk(store, hash_embedder, indexed_folder):
    folder, _ = indexed_folder
    f = sorted(folder.iterdir())[4]
    text = f.read_text()
    i = text.index("the ")
    f.write_text(text[:i] + "THE " + text[i + 4:])
    res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.ledger["texts"] == 1 and res.plan.chunks_new == 1 and res.plan.texts_to_embed == 1
