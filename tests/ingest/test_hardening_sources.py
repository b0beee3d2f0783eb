"""Issue 23 (Hardening II), ingest: mistakes in a source or a setting are one clear line, never "this is a bug".

A source of a kind ragindex does not read (a .csv), a folder source replaced by a file between
runs, and a size or page limit in the environment that is not a number (item 22, ingest's part).
"""

from __future__ import annotations

import json
import shutil

import pytest

from ragindex.errors import EXIT_ERROR, SettingsError, SourceError
from ragindex.ingest.documents import max_doc_bytes
from ragindex.ingest.sources import source_kind
from ragindex.store.manifests import current_id
from tests.support.cli import ragindex
from tests.support.folders import snapshot

CHUNKER = "recursive-200@1"


def _one_line_error(res, *needles: str) -> dict:
    """The --json error object of a failed command, after checking it is one line that is not a bug report."""
    assert res.exit_code == EXIT_ERROR, res.output
    err = json.loads(res.stdout)["error"]
    assert "\n" not in err["message"] and "bug" not in res.output and "Traceback" not in res.output
    for needle in needles:
        assert needle in err["message"], err["message"]
    return err


# -- a source of a kind ragindex does not read ------------------------------------------------------------


def test_source_kind_names_the_kind_or_says_what_is_wrong(tmp_path):
    (tmp_path / "folder").mkdir()
    for name in ("docs.jsonl", "docs.parquet", "guide.md", "deck.pptx", "data.csv", "notes"):
        (tmp_path / name).write_text("x")
    kinds = {n: source_kind(tmp_path / n) for n in ("folder", "docs.jsonl", "docs.parquet", "guide.md", "deck.pptx")}
    assert kinds == {"folder": "folder", "docs.jsonl": "jsonl", "docs.parquet": "parquet", "guide.md": "file", "deck.pptx": "file"}
    for name in ("data.csv", "notes"):
        with pytest.raises(SourceError, match="is not a source ragindex reads") as exc:
            source_kind(tmp_path / name)
        assert "\n" not in str(exc.value) and ".jsonl" in str(exc.value)
    with pytest.raises(SourceError, match="does not exist") as missing:
        source_kind(tmp_path / "nope")
    assert isinstance(missing.value, FileNotFoundError)  # what callers caught before


def test_reindex_of_a_csv_source_is_a_clear_error(tmp_path):
    src = tmp_path / "data.csv"
    src.write_text("id,text\n1,hello\n")
    err = _one_line_error(ragindex("reindex", "-t", "acme", "--source", str(src), "--chunker", CHUNKER, "--json"), "data.csv", ".csv")
    assert err["kind"] == "source"


def test_tenants_add_refuses_a_csv_source(tmp_path):
    src = tmp_path / "data.csv"
    src.write_text("id,text\n1,hello\n")
    res = ragindex("tenants", "add", "acme", "--source", str(src))
    assert res.exit_code == EXIT_ERROR and res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: source ") and "data.csv" in res.output and "bug" not in res.output
    assert json.loads(ragindex("tenants", "list", "--json").stdout) == []


# -- a folder source replaced by a file between runs ------------------------------------------------------


def test_a_folder_source_replaced_by_a_file_is_refused_and_the_index_kept(store, indexed_folder):
    folder, first = indexed_folder
    paths = store.paths("acme")
    before = snapshot(paths)
    shutil.rmtree(folder)
    folder.write_text("an archive, or a sync that went wrong")
    for cmd in ("plan", "reindex"):
        res = ragindex(cmd, "-t", "acme", "--source", str(folder), "--chunker", CHUNKER, "--json")
        _one_line_error(res, "was a folder", "is now a file", str(folder))
    assert snapshot(paths) == before and current_id(paths) == first.generation


# -- limits in the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "", "nan", "inf", "0", "-3", "1e400"])
def test_a_bad_max_doc_mb_is_an_error_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("RAGINDEX_MAX_DOC_MB", value)
    with pytest.raises(SettingsError, match="RAGINDEX_MAX_DOC_MB") as exc:
        max_doc_bytes()
    assert "\n" not in str(exc.value) and repr(value) in str(exc.value)


def test_a_limit_may_be_a_fraction_of_a_mib(monkeypatch):
    monkeypatch.setenv("RAGINDEX_MAX_DOC_MB", " 0.5 ")
    assert max_doc_bytes() == 512 * 1024


@pytest.mark.parametrize("variable,value", [("RAGINDEX_MAX_DOC_MB", "32MB"), ("RAGINDEX_MAX_FILE_MB", "lots"),
                                            ("RAGINDEX_MAX_PAGES", "ten"), ("RAGINDEX_MAX_PAGES", "2.5")])
def test_reindex_with_a_bad_limit_is_one_line_naming_the_variable(store, tmp_path, monkeypatch, variable, value):
    src = tmp_path / "docs"
    src.mkdir()
    (src / "a.md").write_text("# A\n\nA markdown document.")
    (src / "b.html").write_text("<html><body><h1>B</h1><p>An HTML document.</p></body></html>")
    monkeypatch.setenv(variable, value)
    err = _one_line_error(ragindex("reindex", "-t", "acme", "--source", str(src), "--chunker", CHUNKER, "--json"),
                          variable, repr(value))
    assert err["kind"] == "settings" and current_id(store.paths("acme")) is None
