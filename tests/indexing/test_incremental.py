"""A run costs what changed: stat-based change detection, chunk reuse, shared segments, no-op runs that write nothing.

Real text (chunking-set passages) in real files; the hash embedder, because these are bookkeeping tests.
"""

from __future__ import annotations

import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ragindex.embedders.local import HashEmbedder
from ragindex.indexing.run import reindex
from ragindex.search.searcher import Searcher
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import current_id, list_generations, live_manifest, load_live_state
from tests.support.data import passage_docs, write_jsonl
from tests.support.folders import OLD, make_folder, snapshot


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "docs", passage_docs(60))


def test_noop_reads_nothing_and_writes_nothing(store, hash_embedder, folder):
    first = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    paths = store.paths("acme")
    before = snapshot(paths)
    calls = list(hash_embedder.calls)
    again = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert again.status == "unchanged" and again.generation == first.generation
    assert again.changes["files_seen"] == 60 and again.changes["files_read"] == 0
    assert again.plan.docs_chunked == 0 and again.bytes_written == 0
    assert snapshot(paths) == before  # not a byte, not an mtime
    assert hash_embedder.calls == calls
    with EmbeddingCache(paths.cache, read_only=True) as c:
        assert len(c.runs()) == 1


def test_a_file_with_unchanged_stat_is_not_read_until_rescan(store, hash_embedder, folder):
    """Same size, same mtime, different bytes: only --rescan notices, which proves the file was not read."""
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    f = sorted(folder.iterdir())[3]
    text = f.read_text()
    swapped = text.replace("the", "teh", 1)
    assert len(swapped.encode()) == len(text.encode()) and swapped != text
    st = f.stat()
    f.write_text(swapped)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    quiet = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert quiet.status == "unchanged" and quiet.changes["files_read"] == 0
    loud = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder, rescan=True)
    assert loud.status == "promoted" and loud.changes["files_read"] == 60
    assert loud.changes["docs_changed"] == 1 and loud.plan.docs_chunked == 1


def test_touched_file_is_read_once_and_its_new_stat_kept(store, hash_embedder, folder):
    """A touch (or a checkout) moves the stat, not the content: the file is read once, found unchanged, and its
    chunks are re-homed with the new stat (nothing chunked or embedded), so later runs read nothing."""
    first = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    f = sorted(folder.iterdir())[5]
    os.utime(f, (OLD + 100, OLD + 100))
    calls = list(hash_embedder.calls)
    res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.changes["files_read"] == 1 and res.changes["docs_changed"] == 0 and res.changes["docs_restated"] == 1
    assert res.plan.docs_chunked == 0 and res.ledger["texts"] == 0 and hash_embedder.calls == calls
    assert res.plan.chunks_new == 0 and res.versions == first.versions  # same content, same data versions
    before = snapshot(store.paths("acme"))
    again = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert again.status == "unchanged" and again.changes["files_read"] == 0
    assert snapshot(store.paths("acme")) == before


def test_a_file_edited_just_before_a_run_is_read_again_once(store, hash_embedder, folder):
    """Racily clean: a file modified within the timestamp tick of the scan could change again unseen, so its
    stat is not trusted; the next run reads it, and (unchanged) records a trustworthy stat."""
    from ragindex.ingest.changes import racy

    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    f = sorted(folder.iterdir())[2]
    f.write_text(f.read_text() + "\nEdited just now.\n")
    now = time.time_ns()
    os.utime(f, ns=(now, now))
    assert racy(now, time.time_ns())
    edit = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert edit.changes["docs_changed"] == 1
    os.utime(f, ns=(now - 10**10, now - 10**10))  # the same file, now ten seconds old
    later = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert later.changes["files_read"] == 1 and later.changes["docs_changed"] == 0 and later.changes["docs_restated"] == 1
    assert reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder).changes["files_read"] == 0


def test_one_edited_file_is_one_small_segment_sharing_the_rest(store, hash_embedder, folder):
    first = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    paths = store.paths("acme")
    seg0 = live_manifest(paths).segments[0]
    f = sorted(folder.iterdir())[10]
    f.write_text(f.read_text() + "\nA sentence added by the edit.\n")
    res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.status == "promoted" and res.changes["files_read"] == 1 and res.changes["docs_changed"] == 1
    assert res.plan.docs_chunked == 1 and 0 < res.ledger["texts"] <= res.plan.chunks_new
    m = live_manifest(paths)
    assert [r.id for r in m.segments] == [seg0.id, res.segment]  # the first segment is shared by reference
    assert m.segments[0].deleted_docs == 1 and m.segments[1].docs == 1
    assert res.bytes_written < 0.2 * first.bytes_written
    assert m.documents == 60 and m.chunks == first.plan.chunks_total - m.segments[0].deleted_rows + m.segments[1].rows
    hits = Searcher(store, hash_embedder).search("acme", "A sentence added by the edit.", k=200)
    assert sum(1 for h in hits if h.doc_id == f.name) == m.segments[1].rows  # the new version only, never the old


def test_rename_reuses_chunks_and_embeds_nothing(store, hash_embedder, folder):
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    f = sorted(folder.iterdir())[7]
    f.rename(folder / "renamed.md")
    res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert (res.changes["docs_new"], res.changes["docs_deleted"]) == (1, 1)
    assert res.plan.docs_reused == 1 and res.plan.docs_chunked == 0 and res.plan.texts_to_embed == 0
    live = load_live_state(store.paths("acme"), live_manifest(store.paths("acme")))
    assert "renamed.md" in live.docs and f.name not in live.docs


def test_jsonl_records_hashed_as_they_stream(store, hash_embedder, tmp_path):
    docs = passage_docs(80)
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    os.utime(src, (OLD, OLD))
    reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    same = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    assert same.status == "unchanged" and same.changes["files_read"] == 0  # the file's own stat is unchanged
    edited = [dict(d, text=d["text"] + " Revised.") if i in (3, 40) else d for i, d in enumerate(docs)]
    write_jsonl(src, edited[:-1] + [dict(docs[-1], metadata={"team": "b"})])
    res = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.changes["docs_changed"] == 3 and res.changes["docs_unchanged"] == 77
    assert res.plan.docs_chunked == 2 and res.plan.docs_reused == 1  # the metadata-only change copies its chunks
    rows = [r for v in Searcher(store, hash_embedder).generation("acme").views for r in v.seg.rows.to_pylist()]
    assert json.loads([r for r in rows if r["doc_id"] == docs[-1]["_id"]][-1]["metadata"]) == {"team": "b"}


def test_a_rewritten_but_byte_identical_record_file_is_not_parsed(store, hash_embedder, tmp_path, monkeypatch):
    """A pipeline that exports its .jsonl on every run gives it a new mtime each time; the bytes decide."""
    import ragindex.ingest.changes as changes

    docs = passage_docs(80)
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    os.utime(src, (OLD, OLD))
    first = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    paths = store.paths("acme")
    before = snapshot(paths)
    parsed = []
    real = changes.iter_jsonl
    monkeypatch.setattr(changes, "iter_jsonl", lambda *a, **kw: (parsed.append(1), *real(*a, **kw))[1:])
    write_jsonl(src, docs)  # the same bytes, a new mtime
    os.utime(src, (OLD + 60, OLD + 60))
    same = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    assert same.status == "unchanged" and same.generation == first.generation
    assert same.changes["files_read"] == 1 and same.plan.docs_chunked == 0  # its bytes hashed, nothing more
    assert parsed == [] and snapshot(paths) == before  # not parsed, nothing written
    write_jsonl(src, docs[:-1])  # one record fewer: the bytes differ, the file is parsed
    res = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    assert parsed == [1] and res.changes["docs_deleted"] == 1 and res.changes["files_read"] == 1


def test_a_record_file_written_while_it_is_read_is_read_again_next_time(store, hash_embedder, tmp_path, monkeypatch):
    import ragindex.ingest.changes as changes

    docs = passage_docs(30)
    src = write_jsonl(tmp_path / "c.jsonl", docs[:20])
    os.utime(src, (OLD, OLD))
    real = changes.iter_jsonl

    def appending(*a, **kw):  # a writer appends while the run reads the file
        for i, doc in enumerate(real(*a, **kw)):
            if i == 0:
                with open(src, "a", encoding="utf-8") as f:
                    f.write(json.dumps(docs[25]) + "\n")
                os.utime(src, (OLD + 5, OLD + 5))
            yield doc

    monkeypatch.setattr(changes, "iter_jsonl", appending)
    reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    monkeypatch.setattr(changes, "iter_jsonl", real)
    assert live_manifest(store.paths("acme")).source.sha256 is None  # what was hashed may not be what was read
    again = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    assert again.changes["files_read"] == 1  # so the next run reads it, and sees the appended record
    assert docs[25]["_id"] in {r["doc_id"] for v in Searcher(store, hash_embedder).generation("acme").views for r in v.seg.rows.to_pylist()}


def test_parquet_source_streams_in_batches(store, hash_embedder, tmp_path):
    """Many rows, optional columns missing: every valid row becomes a document, bad rows are reported."""
    from ragindex.ingest.sources import PARQUET_BATCH

    n = PARQUET_BATCH * 3 + 17
    ids = [f"d{i}" for i in range(n)]
    texts = [f"Row {i} talks about topic {i % 97} in plain words." if i % 1000 else None for i in range(n)]
    pq.write_table(pa.table({"id": ids, "text": texts}), tmp_path / "big.parquet")
    res = reindex(store, "acme", source=tmp_path / "big.parquet", chunker="recursive-200@1", embedder=hash_embedder)
    bad = sum(1 for t in texts if t is None)
    assert res.changes["docs_new"] == n - bad and len(res.skipped) == bad
    assert {s.where for s in res.skipped} == {f"big.parquet#{i}" for i in range(0, n, 1000)}


def test_schema_change_rebuilds_into_one_segment_reusing_vectors(store, hash_embedder, folder):
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    res = reindex(store, "acme", source=folder, chunker="recursive-250@1", embedder=hash_embedder)
    assert res.plan.rebuild and res.plan.docs_chunked == 60 and res.changes["files_read"] == 60
    m = live_manifest(store.paths("acme"))
    assert len(m.segments) == 1 and m.chunker == "recursive-250@1" and m.documents == 60
    assert 0 < res.plan.vectors_reused  # identical texts under both schemas are not paid twice


def test_model_change_copies_chunks_and_embeds_everything_again(store, folder):
    a, b = HashEmbedder(dim=32), HashEmbedder(dim=32, max_seq_length=128)
    first = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=a)
    res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=b)
    assert "embedding model" in res.plan.rebuild
    assert res.changes["files_read"] == 0 and res.plan.docs_chunked == 0 and res.plan.docs_reused == 60
    assert res.ledger["texts"] == first.ledger["texts"]  # a new key space: everything once more, nothing twice
    assert live_manifest(store.paths("acme")).embedder_fp == b.fingerprint


def test_deleted_document_never_found_and_deletion_set_names_it(store, hash_embedder, folder):
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    gone = sorted(folder.iterdir())[0]
    title = gone.read_text().splitlines()[0][2:]
    gone.unlink()
    res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.changes["docs_deleted"] == 1 and res.segment is None  # nothing new: deletions only
    m = live_manifest(store.paths("acme"))
    assert len(m.segments) == 1 and m.segments[0].deleted_docs == 1 and m.documents == 59
    hits = Searcher(store, hash_embedder).search("acme", title, k=m.chunks)
    assert len(hits) == m.chunks and gone.name not in {h.doc_id for h in hits}


def test_cli_says_unchanged_in_json(store, hash_embedder, folder):
    from click.testing import CliRunner

    from ragindex.cli import main

    args = ["--model", "hash", "reindex", "-t", "acme", "--source", str(folder), "--chunker", "recursive-200@1", "--json"]
    first = json.loads(CliRunner().invoke(main, args).stdout)
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    again = json.loads(out.stdout)
    assert again["status"] == "unchanged" and again["generation"] == first["generation"] and again["bytes_written"] == 0
    assert len(list_generations(store.paths("acme"))) == 1 and current_id(store.paths("acme")) == first["generation"]
