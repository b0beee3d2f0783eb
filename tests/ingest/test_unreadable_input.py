"""Issue 13, ingest: an unreadable source or folder keeps its documents; one bad file or line never stops a run."""

from __future__ import annotations

import json
import os

from ragindex.indexing.run import reindex
from ragindex.store.manifests import current_id, live_manifest
from tests.support.cli import ragindex
from tests.support.data import passage_docs
from tests.support.folders import make_folder


def test_an_unreadable_parquet_source_keeps_the_index(store, hash_embedder, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "docs.parquet"
    docs = passage_docs(20)
    pq.write_table(pa.table({"id": [d["_id"] for d in docs], "text": [d["text"] for d in docs]}), src)
    first = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    src.write_bytes(src.read_bytes()[:300])  # truncated by a failed copy
    res = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.status == "unchanged" and res.changes["docs_kept_unreadable"] == 20 and res.changes["docs_deleted"] == 0
    assert "unreadable Parquet file" in res.skipped[0].reason and current_id(store.paths("acme")) == first.generation


def test_an_unreadable_subfolder_keeps_its_documents(store, hash_embedder, tmp_path, monkeypatch):
    """A folder the walk cannot list (EACCES; the tests run as root, so the OS boundary is faked) is skipped
    with a reason, and the documents it held are kept, neither deleted nor read."""
    import ragindex.ingest.sources as sources

    root = tmp_path / "docs"
    make_folder(root / "public", passage_docs(10))
    make_folder(root / "private", passage_docs(20)[10:])
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


def test_hostile_files_are_skipped_one_by_one(store, hash_embedder, tmp_path):
    root = make_folder(tmp_path / "docs", passage_docs(5))
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
    lines = [json.dumps({"id": d["_id"], "text": d["text"]}) for d in passage_docs(5)]
    lines.insert(2, '{"id": "bad", "text": "broken \\ud800 surrogate"}')
    src.write_text("\n".join(lines) + "\n")
    res = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.changes["docs_new"] == 5 and [s.where for s in res.skipped] == ["a.jsonl:3"]
    assert "lone surrogate" in res.skipped[0].reason
