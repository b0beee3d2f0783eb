"""Dataset loading: presets under a data root, the three formats, errors that name the path tried."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ragindex.cli import main
from ragindex.evaluate import datasets
from tests.conftest import DATA, write_jsonl


def test_presets_load_real_data():
    chroma = datasets.load("chroma")
    assert chroma.kind == "spans" and len(chroma.query_ids) == 472 and len(chroma.doc_ids) == 5
    assert sum(len(v) for v in chroma.spans.values()) == 790
    sci = datasets.load("scifact")
    assert sci.kind == "docs" and len(sci.doc_ids) == 5183 and len(sci.query_ids) == 300


def test_chroma_offsets_are_code_points():
    import csv

    ds = datasets.load("chroma")
    text = dict(zip(ds.doc_ids, ds.texts))
    with open(DATA / "chroma_chunking" / "questions_df.csv", encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            for ref, span in zip(json.loads(row["references"]), ds.spans[f"q{i:04d}"]):
                assert text[span.doc_id][span.start : span.end] == ref["content"]


def test_missing_dataset_names_the_path_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGINDEX_DATA_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(datasets.DatasetError, match=str(tmp_path / "nowhere" / "scifact")):
        datasets.load("scifact")
    res = CliRunner().invoke(main, ["eval", "--dataset", "chroma"])
    assert res.exit_code == 1 and str(tmp_path / "nowhere" / "chroma_chunking") in res.output
    res = CliRunner().invoke(main, ["eval", "run", "--dataset", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "not found" in res.output and str(tmp_path / "nope") in res.output


def test_data_root_option_overrides(tmp_path):
    ds = datasets.load("chroma", data_root=DATA)
    assert ds.name == "chroma"
    with pytest.raises(datasets.DatasetError, match="tried"):
        datasets.load("chroma", data_root=tmp_path)


def test_span_folder_and_fingerprint(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.md").write_text("alpha beta gamma", encoding="utf-8")
    write_jsonl(tmp_path / "questions.jsonl", [{"id": "1", "question": "beta?", "references": [{"doc_id": "a", "start": 6, "end": 10}]}])
    ds = datasets.load(str(tmp_path))
    assert ds.kind == "spans" and ds.texts[0][6:10] == "beta"
    fp = ds.fingerprint()
    write_jsonl(tmp_path / "questions.jsonl", [{"id": "1", "question": "beta?", "references": [{"doc_id": "a", "start": 6, "end": 11}]}])
    assert datasets.load(str(tmp_path)).fingerprint() != fp  # labels are part of the identity
    write_jsonl(tmp_path / "questions.jsonl", [{"id": "1", "question": "?", "references": [{"doc_id": "a", "start": 6, "end": 99}]}])
    with pytest.raises(datasets.DatasetError, match="outside its document"):
        datasets.load(str(tmp_path))


def test_beir_folder(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "title": "T", "text": "body"}, {"_id": "d2", "title": "", "text": "x"}])
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "body?"}, {"_id": "q2", "text": "unlabelled"}])
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    ds = datasets.load(str(tmp_path))
    assert ds.kind == "docs" and ds.texts == ["T body", "x"] and ds.query_ids == ["q1"] and ds.qrels == {"q1": {"d1": 1}}
