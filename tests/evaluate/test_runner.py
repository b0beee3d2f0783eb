"""Evaluation through the cache: a partly changed input embeds only its new texts (hash embedder: bookkeeping)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ragindex.cli import main
from ragindex.evaluate import datasets
from ragindex.evaluate.gate import GateConfig
from ragindex.evaluate.runner import chunk_dataset, evaluate
from ragindex.schemas import SchemaRegistry
from tests.support.data import write_jsonl, write_span_set


def test_partly_changed_input_embeds_only_changed_texts(tmp_path):
    folder = write_span_set(tmp_path / "ev", n_docs=20)
    schema = SchemaRegistry().get("recursive-250@1")
    cfg = GateConfig(model="hash")
    ds = datasets.load(str(folder))
    first = evaluate(ds, schema, cfg.embedder_for(str(folder)))
    n_unique = len(set(chunk_dataset(ds, schema).texts) | set(ds.queries))
    assert first.embed.embedded == n_unique and set(first.metrics) == {"recall", "precision", "iou", "precision_omega"}

    # Append a paragraph to one passage (offsets of earlier text stay valid): only its tail chunk is new.
    docs = [json.loads(line) for line in open(folder / "corpus.jsonl", encoding="utf-8")]
    docs[3]["text"] += "\n\nAn added closing paragraph about something else entirely."
    write_jsonl(folder / "corpus.jsonl", docs)
    ds2 = datasets.load(str(folder))
    again = evaluate(ds2, schema, GateConfig(model="hash").embedder_for(str(folder)))
    new_texts = set(chunk_dataset(ds2, schema).texts) - set(chunk_dataset(ds, schema).texts)
    assert 1 <= again.embed.embedded == len(new_texts) <= 2
    assert again.dataset_fingerprint != first.dataset_fingerprint


def test_cli_eval_json_and_cache_reuse(tmp_path):
    folder = write_span_set(tmp_path / "ev", n_docs=10)
    args = ["--model", "hash", "eval", "--dataset", str(folder), "--chunker", "token-200@1", "-k", "3", "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["chunker"] == "token-200@1" and out["k"] == 3 and out["embed"]["embedded"] > 0
    assert 0 <= out["metrics"]["recall"] <= 1 and "recall" in out["noise"]
    res = CliRunner().invoke(main, ["--model", "hash", "eval", "run", "--dataset", str(folder), "--chunker", "token-200@1", "-k", "3"])
    assert res.exit_code == 0 and "embedded 0 of" in res.output and "recall" in res.output
