"""Ingest: every bad input is counted with a reason and the run goes on."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ragindex.ingest.documents import normalise
from ragindex.ingest.sources import read_source
from tests.support.documents import load_documents


def _reasons(report):
    return {s.where: s.reason for s in report.skipped}


def test_folder_with_bad_files(tmp_path):
    root = tmp_path / "src"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.md").write_text("# Title\r\n\r\nCafe\u0301 text.\r\n", encoding="utf-8")
    (root / "sub" / "deeper" / "b.txt").write_text("nested", encoding="utf-8")
    (root / "bin.txt").write_bytes(b"\x00\x01\x02 binary")
    (root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "empty.md").write_bytes(b"")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / ".hidden.md").write_text("secret")
    (root / ".git").mkdir()
    outside = tmp_path / "outside.md"
    outside.write_text("outside the root")
    os.symlink(outside, root / "link.md")
    rep = read_source(root)
    ids = {d.doc_id for d in rep.documents}
    assert ids == {"a.md", "sub/deeper/b.txt"}
    r = _reasons(rep)
    assert "binary" in r["bin.txt"]
    assert "UTF-8" in r["latin1.txt"]
    assert "empty" in r["empty.md"]
    assert "unsupported" in r["image.png"]
    assert "hidden" in r[".hidden.md"] and "hidden" in r[".git"]
    assert "outside the source root" in r["link.md"]
    doc = next(d for d in rep.documents if d.doc_id == "a.md")
    assert doc.text == "# Title\n\nCafé text.\n"  # CRLF -> LF and NFC
    assert len(rep.documents) + len(rep.skipped) == 9


def test_jsonl_malformed_lines_are_listed(tmp_path):
    f = tmp_path / "docs.jsonl"
    lines = [
        json.dumps({"id": "1", "text": "one", "title": "T"}),
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"id": "2"}),
        json.dumps({"id": "1", "text": "duplicate"}),
        json.dumps({"id": "bad\x07id", "text": "x"}),
        json.dumps({"_id": "3", "text": "beir spelling", "metadata": {"k": 1}}),
        "",
    ]
    f.write_text("\n".join(lines), encoding="utf-8")
    table, rep = load_documents(f)
    assert table.column("doc_id").to_pylist() == ["1", "3"]
    assert table.column("text").to_pylist()[0] == "T\n\none"
    r = _reasons(rep)
    assert "invalid JSON" in r["docs.jsonl:2"] and "not a JSON object" in r["docs.jsonl:3"]
    assert "text" in r["docs.jsonl:4"] and "duplicate" in r["docs.jsonl:5"] and "control" in r["docs.jsonl:6"]


def test_parquet_missing_columns_and_wrong_types(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["alpha", None], "title": ["A", None]}), good)
    table, rep = load_documents(good)
    assert table.column("doc_id").to_pylist() == ["a"]
    assert "text" in _reasons(rep)["good.parquet#1"]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"ident": ["a"], "body": ["x"]}), bad)
    _, rep = load_documents(bad)
    assert "missing column" in _reasons(rep)["bad.parquet"]
    typed = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"id": [1, 2], "text": ["x", "y"]}), typed)
    _, rep = load_documents(typed)
    assert len(rep.skipped) == 2 and "id" in rep.skipped[0].reason


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_source(tmp_path / "nope")


def test_doc_hash_is_sha256_of_normalised_text(tmp_path):
    import hashlib

    (tmp_path / "d.txt").write_text("x\r\ny", encoding="utf-8")
    table, _ = load_documents(tmp_path)
    assert table.column("doc_hash")[0].as_py() == hashlib.sha256(normalise("x\r\ny").encode()).hexdigest()
