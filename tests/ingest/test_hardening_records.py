"""Issue 23 (Hardening II), ingest: .jsonl and .parquet records that used to stop a reader or a run.

Parquet metadata holding dates, timestamps, decimals, bytes or maps (item 1); a .jsonl line nested
thousands of levels deep (item 2); a record larger than the document limit (item 18). Each is one
row or line skipped with a reason at most, never the rest of the file or the run.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ragindex.indexing.run import reindex
from ragindex.ingest.documents import document_hash
from ragindex.ingest.sources import read_source
from ragindex.store.manifests import live_manifest, load_live_state
from tests.support.cli import ragindex

CHUNKER = "recursive-200@1"

META_TYPE = pa.struct([
    ("published", pa.date32()),
    ("updated", pa.timestamp("us", tz="UTC")),
    ("written", pa.timestamp("ns")),  # pandas' default unit; 1 ns past a microsecond cannot become a datetime
    ("price", pa.decimal128(10, 2)),
    ("pages", pa.decimal128(6, 0)),
    ("raw", pa.binary()),
    ("blob", pa.binary()),
    ("reviews", pa.list_(pa.date32())),
    ("by_lang", pa.map_(pa.string(), pa.timestamp("us"))),
    ("at", pa.struct([("day", pa.date32()), ("time", pa.time64("us"))])),
    ("took", pa.duration("us")),
])


def _meta(i: int) -> dict:
    return {"published": dt.date(2024, 1, 1 + i), "updated": dt.datetime(2024, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
            "written": 1_700_000_000_000_000_001, "price": Decimal("12.50"), "pages": Decimal(300),
            "raw": "café".encode(), "blob": b"\xff\x00\xfe", "reviews": [dt.date(2024, 5, 6)],
            "by_lang": [("en", dt.datetime(2024, 7, 8, 9, 10, 11))], "at": {"day": dt.date(2024, 1, 2), "time": dt.time(13, 14)},
            "took": dt.timedelta(seconds=90, microseconds=500_000)}


def _write_parquet(path, texts: list[str], meta=None, meta_type=META_TYPE):
    meta = [_meta(i) for i in range(len(texts))] if meta is None else meta
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts,
                             "metadata": pa.array(meta, type=meta_type)}), path)
    return path


def _live(store) -> dict:
    paths = store.paths("acme")
    return load_live_state(paths, live_manifest(paths)).docs


# -- item 1: Parquet metadata with dates, timestamps, decimals, bytes, maps ----------------------------


def test_parquet_metadata_values_become_json_values(tmp_path):
    rep = read_source(_write_parquet(tmp_path / "docs.parquet", ["alpha", "beta"]))
    assert not rep.skipped and [d.doc_id for d in rep.documents] == ["d0", "d1"]
    assert rep.documents[0].metadata == {
        "published": "2024-01-01", "updated": "2024-02-03T04:05:06+00:00",
        "written": "2023-11-14T22:13:20", "price": 12.5, "pages": 300, "raw": "café", "blob": "base64:/wD+",
        "reviews": ["2024-05-06"], "by_lang": {"en": "2024-07-08T09:10:11"}, "at": {"day": "2024-01-02", "time": "13:14:00"},
        "took": 90.5}
    json.dumps(rep.documents[0].metadata, allow_nan=False)  # plain JSON


def test_a_new_tenant_indexes_every_row_of_a_parquet_file_with_dated_metadata(store, hash_embedder, tmp_path):
    src = _write_parquet(tmp_path / "docs.parquet", [f"document number {i} about index generations" for i in range(6)])
    res = reindex(store, "acme", source=src, chunker=CHUNKER, embedder=hash_embedder)
    assert res.status == "promoted" and res.plan.docs_new == 6 and not res.skipped
    live = _live(store)
    assert sorted(live) == [f"d{i}" for i in range(6)]
    assert json.loads(live["d3"].metadata)["published"] == "2024-01-04"


def test_an_existing_tenant_updates_the_rows_after_a_dated_one(store, hash_embedder, tmp_path):
    src = tmp_path / "docs.parquet"
    plain = pa.struct([("team", pa.string())])
    _write_parquet(src, [f"first text {i}" for i in range(6)], meta=[{"team": "a"}] * 6, meta_type=plain)
    reindex(store, "acme", source=src, chunker=CHUNKER, embedder=hash_embedder)
    new = [f"second text {i}, rewritten" for i in range(6)]
    _write_parquet(src, new)  # every row now has a date; row 0 used to stop the reader
    res = reindex(store, "acme", source=src, chunker=CHUNKER, embedder=hash_embedder)
    assert res.changes["docs_changed"] == 6 and not res.skipped
    live = _live(store)
    assert [live[f"d{i}"].doc_hash for i in range(6)] == [document_hash(t) for t in new]


def test_only_a_row_that_truly_cannot_be_read_is_skipped(tmp_path):
    """A timestamp past year 9999 has no datetime: that row alone is skipped, with its position."""
    src = tmp_path / "docs.parquet"
    t = pa.struct([("when", pa.timestamp("s"))])
    _write_parquet(src, ["one", "two", "three"], meta=[{"when": 0}, {"when": 10**13}, {"when": 86_400}], meta_type=t)
    rep = read_source(src)
    assert [d.doc_id for d in rep.documents] == ["d0", "d2"]
    assert rep.documents[1].metadata == {"when": "1970-01-02T00:00:00"}
    assert [s.where for s in rep.skipped] == ["docs.parquet#1"] and "metadata" in rep.skipped[0].reason


# -- item 2: a deeply nested .jsonl line -----------------------------------------------------------------


def _nested(levels: int) -> dict:
    meta: dict = {"leaf": 1}
    for _ in range(levels - 1):
        meta = {"a": meta}
    return meta


def _deep_jsonl(path, levels: int = 100_000):
    deep = '{"id": "deep", "text": "too deep", "metadata": ' + '{"a": ' * levels + "1" + "}" * levels + "}"
    lines = [json.dumps({"id": f"ok{i}", "text": f"a normal document number {i}"}) for i in range(3)]
    path.write_text("\n".join([lines[0], deep, lines[1], json.dumps({"id": "deep64", "text": "x", "metadata": _nested(65)}),
                               lines[2]]) + "\n")
    return path


def test_metadata_may_nest_64_levels_but_not_65(tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps({"id": f"n{n}", "text": "t", "metadata": _nested(n)}) for n in (64, 65)))
    rep = read_source(src)
    assert [d.doc_id for d in rep.documents] == ["n64"]
    assert [s.where for s in rep.skipped] == ["docs.jsonl:2"] and "more than 64 levels" in rep.skipped[0].reason


def test_plan_skips_a_deeply_nested_line_and_counts_the_others(tmp_path):
    src = _deep_jsonl(tmp_path / "docs.jsonl")
    res = ragindex("plan", "-t", "acme", "--source", str(src), "--chunker", CHUNKER, "--json")
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["docs_new"] == 3
    skipped = {s["where"]: s["reason"] for s in plan["skipped"]}
    assert set(skipped) == {"docs.jsonl:2", "docs.jsonl:4"} and all("nested" in r for r in skipped.values())


def test_reindex_skips_a_deeply_nested_line_and_indexes_the_others(store, tmp_path):
    src = _deep_jsonl(tmp_path / "docs.jsonl")
    res = ragindex("reindex", "-t", "acme", "--source", str(src), "--chunker", CHUNKER, "--json")
    assert res.exit_code == 0, res.output
    assert sorted(_live(store)) == ["ok0", "ok1", "ok2"]


def test_a_number_too_long_for_the_json_parser_skips_its_line_or_row_only(tmp_path):
    """Python's JSON parser refuses an integer of more than 4300 digits with a plain ValueError, not a JSONDecodeError."""
    huge = "9" * 5000
    src = tmp_path / "docs.jsonl"
    src.write_text(f'{{"id": "a", "text": "one"}}\n{{"id": "b", "text": "two", "metadata": {{"n": {huge}}}}}\n{{"id": "c", "text": "three"}}\n')
    rep = read_source(src)
    assert [d.doc_id for d in rep.documents] == ["a", "c"] and [s.where for s in rep.skipped] == ["docs.jsonl:2"]
    table = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["one", "two"], "metadata": ['{"n": 1}', f'{{"n": {huge}}}']}), table)
    rep = read_source(table)
    assert [d.doc_id for d in rep.documents] == ["a"] and [s.where for s in rep.skipped] == ["docs.parquet#1"]
    assert "4300 digits" in rep.skipped[0].reason


# -- item 18: the document limit applies to every record ------------------------------------------------


@pytest.fixture
def one_mib(monkeypatch):
    monkeypatch.setenv("RAGINDEX_MAX_DOC_MB", "1")
    return 1024 * 1024


def test_a_jsonl_record_over_the_limit_is_skipped_with_its_size(tmp_path, one_mib):
    src = tmp_path / "docs.jsonl"
    records = [{"id": "small", "text": "a small record"}, {"id": "big", "text": "x" * (3 * one_mib // 2)},
               {"id": "huge", "text": "x" * (8 * one_mib)}, {"id": "meta", "text": "t", "metadata": {"k": "v" * one_mib}},
               {"id": "after", "text": "the line after"}]
    src.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    rep = read_source(src)
    assert [d.doc_id for d in rep.documents] == ["small", "after"]
    reasons = {s.where: s.reason for s in rep.skipped}
    assert set(reasons) == {"docs.jsonl:2", "docs.jsonl:3", "docs.jsonl:4"}
    assert all(r.startswith("too large: ") and "> 1 MiB (raise RAGINDEX_MAX_DOC_MB" in r for r in reasons.values())
    assert "too large: 1.5 MiB" in reasons["docs.jsonl:2"]


def test_a_jsonl_line_past_any_possible_document_is_skipped_unparsed(tmp_path, monkeypatch, one_mib):
    """A line longer than a document within the limit could ever be in JSON is skipped as it is read, never decoded."""
    from ragindex.ingest import records

    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"id": "huge", "text": "x" * (8 * one_mib)}) + "\n" + json.dumps({"id": "ok", "text": "y"}) + "\n")
    parsed = []
    real = records.json.loads
    monkeypatch.setattr(records.json, "loads", lambda s: parsed.append(len(s)) or real(s))
    rep = read_source(src)
    assert [d.doc_id for d in rep.documents] == ["ok"] and "too large: 8.0 MiB" in rep.skipped[0].reason
    assert max(parsed) < 100  # the 8 MiB line was never decoded


def test_a_parquet_record_over_the_limit_is_skipped_and_the_rest_indexed(store, hash_embedder, tmp_path, one_mib):
    src = tmp_path / "docs.parquet"
    texts = ["a normal document", "word " * (one_mib // 2), "another normal document"]
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": texts}), src)
    res = reindex(store, "acme", source=src, chunker=CHUNKER, embedder=hash_embedder)
    assert res.plan.docs_new == 2 and sorted(_live(store)) == ["a", "c"]
    assert [s.where for s in res.skipped] == ["docs.parquet#1"] and res.skipped[0].reason.startswith("too large: 2.5 MiB > 1 MiB")
