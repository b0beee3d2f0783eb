"""Issue 13: nothing lost, nothing paid twice, whatever the source or the disk does.

Each test is one probe that failed before the fix: a vanishing source, unreadable folders, a missing
cache, budgets defeated by nan or by a forged throughput file, a published schema edited in place,
inputs that stopped the whole run, state files trusted blindly, dishonest output, and offboarding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner

from ragindex.cli import main
from ragindex.cost import Throughput
from ragindex.embedder import HashEmbedder
from ragindex.index import current_id, list_generations, live_manifest
from ragindex.locking import tenant_lock
from ragindex.reindex import MassDeletion, reindex
from ragindex.repair import verify
from ragindex.search import Searcher
from tests.conftest import scifact_docs, write_jsonl
from tests.pipeline.test_incremental import make_folder, snapshot


def ragindex(*args, input=None):
    return CliRunner().invoke(main, ["--model", "hash", *args], input=input)


@pytest.fixture
def indexed_folder(store, hash_embedder, tmp_path):
    folder = make_folder(tmp_path / "docs", scifact_docs(30))
    first = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    return folder, first


# -- silent data loss ------------------------------------------------------------------------------


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


def test_an_unreadable_parquet_source_keeps_the_index(store, hash_embedder, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "docs.parquet"
    docs = scifact_docs(20)
    pq.write_table(pa.table({"id": [d["_id"] for d in docs], "text": [d["text"] for d in docs]}), src)
    first = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    src.write_bytes(src.read_bytes()[:300])  # truncated by a failed copy
    res = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.status == "unchanged" and res.changes["docs_kept_unreadable"] == 20 and res.changes["docs_deleted"] == 0
    assert "unreadable Parquet file" in res.skipped[0].reason and current_id(store.paths("acme")) == first.generation


def test_the_dagster_documents_check_refuses_a_mass_deletion(store, hash_embedder, tmp_path):
    import dagster as dg

    from ragindex.tenants import TenantSettings
    from tests.orchestration.helpers import checks, materialize

    src = write_jsonl(tmp_path / "a.jsonl", scifact_docs(10))
    store.save_settings("acme", TenantSettings(source=str(src)))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tenants", ["acme"])
    materialize(store, instance, "acme")
    live = current_id(store.paths("acme"))
    src.write_text("")
    result = materialize(store, instance, "acme", raise_on_error=False)
    assert not result.success and checks(result) == {"deletions_within_limit": False}
    assert current_id(store.paths("acme")) == live and not result.asset_materializations_for_node("embeddings")


def test_an_unreadable_subfolder_keeps_its_documents(store, hash_embedder, tmp_path, monkeypatch):
    """A folder the walk cannot list (EACCES; the tests run as root, so the OS boundary is faked) is skipped
    with a reason, and the documents it held are kept, neither deleted nor read."""
    import ragindex.sources as sources

    root = tmp_path / "docs"
    make_folder(root / "public", scifact_docs(10))
    make_folder(root / "private", scifact_docs(20)[10:])
    reindex(store, "acme", source=root, chunker="recursive-200@1", embedder=hash_embedder)
    real = os.scandir

    def scandir(path):
        if str(path).endswith("private"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(sources.os, "scandir", scandir)
    res = reindex(store, "acme", source=root, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.status == "unchanged" and res.changes["docs_kept_unreadable"] == 10 and res.changes["docs_deleted"] == 0
    assert any(s.where == "private/" and "unreadable folder" in s.reason for s in res.skipped)
    assert live_manifest(store.paths("acme")).documents == 20


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
    fixed = verify(paths, repair=True)
    assert fixed["status"] == "repaired" and verify(paths)["ok"]
    again = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert again.ledger["texts"] <= again.plan.chunks_new and hash_embedder.calls[len(calls):] == [again.ledger["texts"]]


# -- budgets that can be defeated ------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--max-cost", "nan"], ["--max-cost", "inf"], ["--max-cost", "-1"], ["--wait", "nan"],
                                  ["--budget-tokens", "nan"]])
def test_non_finite_numbers_are_rejected_at_parse_time(store, indexed_folder, args):
    folder, _ = indexed_folder
    res = ragindex("reindex", "-t", "acme", "--source", str(folder), *args)
    assert res.exit_code == 2 and ("not a finite number" in res.output or "is below" in res.output or "not a valid integer" in res.output)


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
    src = write_jsonl(tmp_path / "a.jsonl", scifact_docs(50))
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


def test_a_published_schema_edited_in_place_does_not_run(store, tmp_path, monkeypatch, indexed_folder):
    import shutil

    from ragindex.schemas.registry import PACKAGE_DIR

    folder, _ = indexed_folder
    root = tmp_path / "schemas"
    shutil.copytree(PACKAGE_DIR / "chunkers", root / "chunkers")
    shutil.copy(PACKAGE_DIR / "chunkers.lock", root / "chunkers.lock")
    f = root / "chunkers" / "recursive-200.v1.toml"
    f.write_text(f.read_text().replace("size = 200", "size = 180"))
    monkeypatch.setenv("RAGINDEX_SCHEMAS", str(root))
    for cmd in ("plan", "reindex"):
        res = ragindex(cmd, "-t", "acme", "--source", str(folder), "--chunker", "recursive-200@1")
        assert res.exit_code == 1 and "changed after it was published" in res.output and "recursive-200.v2.toml" in res.output


# -- one bad input must not stop the run ----------------------------------------------------------------


def test_hostile_files_are_skipped_one_by_one(store, hash_embedder, tmp_path):
    root = make_folder(tmp_path / "docs", scifact_docs(5))
    os.symlink("loop.md", root / "loop.md")  # a symlink loop named like a document
    (root / "escape\x1b[31mred.md").write_text("A name with a terminal escape code.")
    os.close(os.open(os.fsencode(root) + b"/latin1-\xe9.md", os.O_CREAT | os.O_WRONLY))
    (root / "bin\x1b[2J.txt").write_bytes(b"\x00\x01")  # skipped, and its name must not clear the terminal
    res = ragindex("reindex", "-t", "acme", "--source", str(root), "--chunker", "recursive-200@1")
    assert res.exit_code == 0, res.output
    assert "loop.md: unreadable" in res.stderr and "latin1-\\udce9.md: file name is not valid UTF-8" in res.stderr
    assert "bin\\x1b[2J.txt: binary file" in res.stderr and "\x1b" not in res.output
    assert "escape\\x1b[31mred.md: id contains control characters" in res.stderr
    assert live_manifest(store.paths("acme")).documents == 5  # every well-formed document, nothing stopped the run


def test_a_jsonl_line_with_a_lone_surrogate_is_skipped(store, hash_embedder, tmp_path):
    src = tmp_path / "a.jsonl"
    lines = [json.dumps({"id": d["_id"], "text": d["text"]}) for d in scifact_docs(5)]
    lines.insert(2, '{"id": "bad", "text": "broken \\ud800 surrogate"}')
    src.write_text("\n".join(lines) + "\n")
    res = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.changes["docs_new"] == 5 and [s.where for s in res.skipped] == ["a.jsonl:3"]
    assert "lone surrogate" in res.skipped[0].reason


def test_a_huge_line_without_whitespace_chunks_in_linear_work():
    """The recursive chunker's last resort (split into characters) counts each distinct character once."""
    from ragindex.chunkers import build_chunker
    from ragindex.chunkers.tokenizers import get_tokenizer
    from ragindex.schemas import SchemaRegistry

    spec = SchemaRegistry().get("default@1").spec
    chunker = build_chunker(spec)
    tok = get_tokenizer(spec.tokenizer)
    calls = {"n": 0}
    real_count = tok.count

    def counting(text):
        calls["n"] += 1
        return real_count(text)

    chunker.tok = type("T", (), {"count": staticmethod(counting), "starts": tok.starts, "name": tok.name})()
    text = ("abcdefghij" * 20_000)  # 200,000 characters, no separator at all
    spans = chunker.chunk(text)
    assert "".join(text[s.start:s.end] for s in spans) == text
    assert calls["n"] < len(text) / 50  # was one call per character


# -- state files are validated, never trusted ------------------------------------------------------------


def test_current_pointing_at_another_tenant_is_refused_and_repaired(store, hash_embedder, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", scifact_docs(10))
    b = write_jsonl(tmp_path / "b.jsonl", scifact_docs(20)[10:])
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
        fixed = verify(paths, repair=True)
        assert fixed["status"] == "repaired" and current_id(paths) == ga, (forged, fixed)
        hits = Searcher(store, hash_embedder).search("ta", "cancer", k=50)
        assert {h.doc_id for h in hits} <= {d["_id"] for d in scifact_docs(10)}


def test_a_manifest_missing_fields_is_damage_that_repair_handles(store, hash_embedder, tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", scifact_docs(10))
    first = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    second = reindex(store, "acme", source=write_jsonl(tmp_path / "b.jsonl", scifact_docs(12)), chunker="recursive-200@1",
                     embedder=hash_embedder)
    paths = store.paths("acme")
    m = json.loads(paths.manifest(second.generation).read_text())
    del m["segments"], m["embedder_fp"]
    paths.manifest(second.generation).write_text(json.dumps(m))
    res = ragindex("search", "-t", "acme", "cancer")
    assert res.exit_code == 1 and "corrupt manifest" in res.output and "Traceback" not in res.output
    fixed = verify(paths, repair=True)
    assert fixed["status"] == "partly repaired" and current_id(paths) == first.generation and verify(paths)["ok"]


def test_a_bad_price_table_or_tenant_file_is_one_line_not_a_traceback(store, indexed_folder, tmp_path):
    folder, _ = indexed_folder
    prices = tmp_path / "prices.toml"
    prices.write_text("self_hosted = [1, 2]\n")
    res = ragindex("plan", "-t", "acme", "--source", str(folder), "--prices", str(prices))
    assert res.exit_code == 1 and "bad price table" in res.output and "Traceback" not in res.output
    store.save_settings("other", __import__("ragindex.tenants", fromlist=["TenantSettings"]).TenantSettings(source=str(folder)))
    store.paths("other").settings_file.write_text("{ not json")
    res = ragindex("tenants", "list", "--json")
    assert res.exit_code == 0
    rows = {r["tenant"]: r for r in json.loads(res.stdout)}
    assert rows["acme"]["error"] is None and "unreadable tenant settings" in rows["other"]["error"]


# -- honest output ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["search", "-t", "nobody", "x"], ["status", "-t", "nobody"], ["generations", "-t", "nobody"],
                                  ["plan", "-t", "nobody"], ["verify", "-t", "nobody"], ["reindex", "-t", "nobody"]])
def test_json_failures_print_a_json_error_object(store, args):
    res = ragindex(*args, "--json")
    assert res.exit_code == 1
    err = json.loads(res.stdout)["error"]
    assert err["exit_code"] == 1 and err["kind"] == "tenant" and "nobody" in err["message"]


def test_a_queued_rollback_reports_what_it_replaced(store, hash_embedder, tmp_path):
    gens = [reindex(store, "acme", source=write_jsonl(tmp_path / f"{n}.jsonl", scifact_docs(n)), chunker="recursive-200@1",
                    embedder=hash_embedder).generation for n in (10, 12, 14)]
    paths = store.paths("acme")
    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_MODEL": "hash"}
    with tenant_lock(paths.lock):
        proc = subprocess.Popen([sys.executable, "-m", "ragindex.cli", "rollback", "-t", "acme", "--wait", "60", "--json"],
                                env=env, stdout=subprocess.PIPE, text=True)
        import time

        time.sleep(1.5)
        from ragindex.generations import rollback

        rollback(paths)  # another writer rolls back first: gens[2] -> gens[1]
    out = json.loads(proc.communicate(timeout=60)[0])
    assert (out["from"], out["to"]) == (gens[1], gens[0])


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


def test_a_corrupt_cache_message_advises_repair_not_paying_again(store, indexed_folder):
    paths = store.paths("acme")
    paths.cache.write_bytes(b"garbage" * 1000)
    res = ragindex("status", "-t", "acme")
    assert res.exit_code == 1 and "verify --tenant acme --repair" in res.output and "move it aside" not in res.output


# -- offboarding ---------------------------------------------------------------------------------


def test_tenants_remove_deletes_everything_and_only_that_tenant(store, hash_embedder, tmp_path, monkeypatch):
    import dagster as dg

    from benchmarks.support.devserver import fresh_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(fresh_dagster_home(tmp_path / "dh")))
    a = write_jsonl(tmp_path / "a.jsonl", scifact_docs(10))
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


def test_a_usage_error_with_json_is_a_json_error_too():
    env = {**os.environ, "RAGINDEX_MODEL": "hash"}
    p = subprocess.run([sys.executable, "-m", "ragindex.cli", "search", "-t", "acme", "--json"], env=env, capture_output=True, text=True)
    assert p.returncode == 2 and json.loads(p.stdout)["error"] == {"kind": "usage", "message": "Missing argument 'QUERY'.",
                                                                   "exit_code": 2}
