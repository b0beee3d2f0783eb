"""Bad input: each gets a clear reason, nothing else is lost, counts are reported."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragindex.indexing.run import reindex
from ragindex.ingest.sources import read_source
from tests.support.documents import load_documents


def test_50_mb_document_is_skipped_with_its_size_and_the_rest_indexed(tmp_path, store, hash_embedder):
    root = tmp_path / "src"
    root.mkdir()
    with open(root / "huge.txt", "wb") as f:
        f.write(b"word " * (10 * 1024 * 1024))  # 50 MiB
    (root / "small.md").write_text("A normal document about index generations.")
    res = reindex(store, "acme", source=root, embedder=hash_embedder)
    assert [s.where for s in res.skipped] == ["huge.txt"] and "too large: 50.0 MiB" in res.skipped[0].reason
    assert res.plan.docs_new == 1


def test_deeply_nested_folders(tmp_path):
    d = tmp_path / "src"
    deep = d.joinpath(*[f"d{i}" for i in range(150)])
    deep.mkdir(parents=True)
    (deep / "bottom.md").write_text("found at the bottom")
    rep = read_source(d)
    assert [x.text for x in rep.documents] == ["found at the bottom"] and not rep.skipped


@pytest.mark.slow
def test_many_tiny_files(tmp_path):
    """100,000 tiny files; nothing lost. benchmarks/many_files.py runs the same at a million (README, Reliability)."""
    root = tmp_path / "src"
    n = 100_000
    for i in range(0, n, 1000):
        sub = root / f"b{i // 1000:03d}"
        sub.mkdir(parents=True)
        for j in range(1000):
            (sub / f"{j}.txt").write_text(f"doc {i + j}" if j % 500 else "")
    table, rep = load_documents(root)  # a hang is caught by pytest's timeout, not a timed assertion
    assert table.num_rows == n - n // 500 and len(rep.skipped) == n // 500
    assert all(s.reason == "empty file (0 bytes)" for s in rep.skipped)
    assert len(set(table.column("doc_id").to_pylist())) == table.num_rows


def test_hostile_document_ids(tmp_path, store, hash_embedder):
    f = tmp_path / "ids.jsonl"
    ids = ["../../etc/passwd", "/abs/path", "a/b\\c", "..", "x" * 1000, "tab\there", "nul\x00", "bell\x07", "ok-id", "y" * 2000]
    f.write_text("\n".join(json.dumps({"id": i, "text": f"text of {i!r}"}) for i in ids), encoding="utf-8")
    res = reindex(store, "acme", source=f, embedder=hash_embedder)
    kept = {"../../etc/passwd", "/abs/path", "a/b\\c", "..", "x" * 1000, "ok-id"}  # ids are data, never paths
    assert res.plan.docs_new == len(kept)
    assert {s.reason for s in res.skipped} == {"id contains control characters or invalid unicode", "id longer than 1024 characters"}
    tenant_files = {p.name for p in store.paths("acme").root.rglob("*")}
    assert "passwd" not in tenant_files and not (tmp_path / "etc").exists()


lines = st.one_of(
    st.text(max_size=200),
    st.builds(lambda i, t: json.dumps({"id": i, "text": t}), st.text(max_size=30), st.text(max_size=200)),
    st.builds(lambda d: json.dumps(d), st.dictionaries(st.sampled_from(["id", "_id", "text", "title", "metadata"]),
                                                        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers())))),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, max_size=20), st.binary(max_size=200))
def test_fuzz_jsonl_parser_never_crashes_and_accounts_for_every_line(tmp_path, body, junk):
    f = tmp_path / "fuzz.jsonl"
    raw = ("\n".join(body)).encode("utf-8", "surrogatepass") + b"\n" + junk
    f.write_bytes(raw)
    table, rep = load_documents(f)
    nonblank = sum(1 for line in raw.split(b"\n") if line.strip())
    # every non-blank line is a document or a listed skip (JSON may contain no raw newline)
    assert table.num_rows + len(rep.skipped) == nonblank
    for text in table.column("text").to_pylist():
        assert text.strip() and "\r" not in text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text("abc./-_", min_size=1, max_size=8).filter(lambda s: s not in {".", ".."} and "/" not in s),
                       st.binary(max_size=300), max_size=8))
def test_fuzz_folder_reader(tmp_path_factory, files):
    root = tmp_path_factory.mktemp("src")
    for name, data in files.items():
        (root / f"{name}.txt").write_bytes(data)
    table, rep = load_documents(root)
    assert table.num_rows + len(rep.skipped) == len(files)
    for s in rep.skipped:
        assert s.reason
