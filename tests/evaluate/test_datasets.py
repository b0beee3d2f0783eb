"""Dataset loading: presets under a data root, the three formats, errors that name the path tried."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ragindex.cli import main
from ragindex.evaluate import datasets
from tests.support.data import CHROMA, REPO, write_jsonl


def test_the_chroma_preset_is_the_projects_own_copy(monkeypatch):
    monkeypatch.setenv("RAGINDEX_PROJECT", str(REPO))
    assert datasets.resolve("chroma") == REPO / "benchmarks" / "data" / "chroma_chunking"
    chroma = datasets.load("chroma")
    assert chroma.kind == "spans" and len(chroma.query_ids) == 472 and len(chroma.doc_ids) == 5
    assert sum(len(v) for v in chroma.spans.values()) == 790


def test_a_preset_is_looked_up_per_folder_env_then_project_then_beside_it(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    own, beside = project / "benchmarks" / "data", tmp_path / "shared" / "data"
    for root in (own, beside):
        (root / "chroma_chunking").mkdir(parents=True)
    (beside / "scifact").mkdir()
    monkeypatch.setenv("RAGINDEX_PROJECT", str(project))
    assert datasets.resolve("chroma") == own / "chroma_chunking"  # the project's copy first
    assert datasets.resolve("scifact") == beside.resolve() / "scifact"  # what it lacks, from beside it
    (own / "chroma_chunking").rmdir()
    assert datasets.resolve("chroma") == beside.resolve() / "chroma_chunking"
    monkeypatch.setenv("RAGINDEX_DATA_ROOT", str(own))  # set: the only place looked at
    with pytest.raises(datasets.DatasetError, match="RAGINDEX_DATA_ROOT"):
        datasets.resolve("chroma")


def test_scifact_is_optional_and_its_absence_says_where_it_looked(tmp_path, monkeypatch):
    """SciFact (CC BY-NC) is never in the repository: with the data root empty it is a clear error."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("RAGINDEX_DATA_ROOT", str(empty))
    monkeypatch.setenv("RAGINDEX_PROJECT", str(tmp_path))
    with pytest.raises(datasets.DatasetError) as exc:
        datasets.resolve("scifact")
    msg = str(exc.value)
    assert str(empty / "scifact") in msg and "RAGINDEX_DATA_ROOT" in msg and "not shipped" in msg
    res = CliRunner().invoke(main, ["--model", "hash", "eval", "--dataset", "scifact"])
    assert res.exit_code == 1 and str(empty / "scifact") in res.output and "RAGINDEX_DATA_ROOT" in res.output
    assert "Traceback" not in res.output
    monkeypatch.delenv("RAGINDEX_DATA_ROOT")  # unset: the project's benchmarks/data, then ../shared/data
    with pytest.raises(datasets.DatasetError) as exc:
        datasets.resolve("scifact")
    assert str(tmp_path / "benchmarks" / "data" / "scifact") in str(exc.value) and "beside the project" in str(exc.value)


def test_chroma_offsets_are_code_points():
    import csv

    ds = datasets.load("chroma")
    text = dict(zip(ds.doc_ids, ds.texts))
    with open(CHROMA / "questions_df.csv", encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            for ref, span in zip(json.loads(row["references"]), ds.spans[f"q{i:04d}"]):
                assert text[span.doc_id][span.start : span.end] == ref["content"]


def test_missing_dataset_names_the_path_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGINDEX_DATA_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(datasets.DatasetError, match=str(tmp_path / "nowhere" / "chroma_chunking")):
        datasets.load("chroma")
    res = CliRunner().invoke(main, ["eval", "--dataset", "chroma"])
    assert res.exit_code == 1 and str(tmp_path / "nowhere" / "chroma_chunking") in res.output
    res = CliRunner().invoke(main, ["eval", "run", "--dataset", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "not found" in res.output and str(tmp_path / "nope") in res.output


def test_data_root_option_overrides(tmp_path):
    ds = datasets.load("chroma", data_root=CHROMA.parent)
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
