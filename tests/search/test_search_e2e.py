"""The end-to-end slice with the real model: index the repo's docs, search, get the right doc first."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from ragindex.cli import main
from tests.support.data import REPO


def test_docs_tenant_phrase_finds_its_document(tmp_path, monkeypatch):
    runner = CliRunner()
    res = runner.invoke(main, ["reindex", "--tenant", "docs", "--source", str(REPO / "docs"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["ledger"]["texts"] == out["plan"]["texts_to_embed"] > 0
    queries = {
        "cost-control.md": "Changing the chunker reuses the vector of every chunk whose text did not change",
        "tenant-isolation.md": "only then replaces the CURRENT pointer atomically",
        "chunker-schemas.md": "a comment-only edit changes nothing",
    }
    for doc, phrase in queries.items():
        res = runner.invoke(main, ["search", "--tenant", "docs", phrase, "-k", "3", "--json"])
        assert res.exit_code == 0, res.output
        hits = json.loads(res.output)
        assert hits[0]["doc_id"] == doc, (phrase, [h["doc_id"] for h in hits])
        source = (REPO / "docs" / doc).read_text(encoding="utf-8")
        assert source[hits[0]["start"] : hits[0]["end"]] == hits[0]["text"]
        assert set(hits[0]) >= {"doc_id", "chunk_id", "score", "start", "end", "text"}
    # idempotent: a second reindex embeds nothing
    res = runner.invoke(main, ["reindex", "--tenant", "docs", "--source", str(REPO / "docs"), "--json"])
    assert json.loads(res.output)["ledger"]["texts"] == 0


def test_embedder_matches_raw_sentence_transformers_in_input_order(model):
    from tests.support.data import passage_docs

    texts = [d["title"] + " " + d["text"] for d in passage_docs(40)]
    texts = texts + ["short", "a bit longer text here"]
    ours = model.embed(texts)
    raw = model.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (len(texts), model.dim)
    np.testing.assert_allclose((ours * raw).sum(1), 1.0, atol=1e-4)
    assert model.token_counts(["hello world"]) == [4]  # [CLS] hello world [SEP]


def test_plan_batches_respect_token_budget():
    from ragindex.embedders.local import plan_batches

    lengths = [5, 256, 17, 256, 3, 100, 100, 64] * 20
    batches = plan_batches(lengths, token_budget=1024)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(lengths)))  # each text exactly once
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 1024
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)  # longest first
