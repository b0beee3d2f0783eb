"""The peers benchmark's own logic (benchmarks/peers.py), without the peers' packages.

The comparison is only as honest as its corpus edits, its stale-vector count and its
stand-in for a model change, so those are tested here. The LangChain and LlamaIndex
adapters need the `bench` extra and run only in the benchmark itself.
"""

from __future__ import annotations

import collections
import random
import sys

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import peers  # noqa: E402


@pytest.fixture(scope="module")
def scifact():
    return peers.load_scifact()


def test_base_corpus_holds_every_document_a_test_query_needs(scifact):
    full, queries, qrels = scifact
    corpus, spare = peers.base_corpus(full, qrels, 2000)
    assert len(corpus) == 2000 and len(queries) == len(qrels) == 300
    assert {d for rel in qrels.values() for d in rel} <= set(corpus)
    assert not set(spare) & set(corpus)


def test_edit_scenario_proportions_and_protected_documents(scifact):
    full, _, qrels = scifact
    corpus, spare = peers.base_corpus(full, qrels, 2000)
    protected = {d for rel in qrels.values() for d in rel}
    out, info = peers.edited(corpus, spare, full, protected, random.Random(0))
    assert info == {"edited": 20, "deleted": 10, "added": 10}
    deleted = set(corpus) - set(out)
    added = set(out) - set(corpus)
    changed = {d for d in set(corpus) & set(out) if out[d] != corpus[d]}
    assert len(deleted) == 10 and not deleted & protected
    assert len(added) == 10 and all(out[d] == full[d] for d in added)
    assert len(changed) == 20  # edited documents are never among the deleted ones


def test_duplicate_scenario_is_thirty_percent_exact_or_near_copies(scifact):
    full, _, qrels = scifact
    corpus, _ = peers.base_corpus(full, qrels, 2000)
    protected = {d for rel in qrels.values() for d in rel}
    out, info = peers.with_duplicates(corpus, protected, random.Random(0))
    assert len(out) == 2000 and info == {"originals": 1400, "exact_duplicates": 300, "near_duplicates": 300}
    assert protected <= set(out)  # every document a query needs is still there
    copies = {d: t for d, t in out.items() if d.startswith("dup-")}
    exact = sum(t == out[d.split("-", 2)[2]] for d, t in copies.items())
    assert len(copies) == 600 and exact == 300
    for d, t in copies.items():  # a near copy differs from its original in the last word only
        original = out[d.split("-", 2)[2]]
        assert t.split(" ")[:-1] == original.split(" ")[:-1]


class FakeSystem:
    def __init__(self, have, want):
        self.have, self.want = have, want

    def vectors(self):
        return self.have

    def expected(self, corpus):
        return collections.Counter(self.want)


def test_stale_counts_leftovers_copies_and_old_model_vectors():
    meter = peers.Meter(tokenizer=None, max_len=256)
    want = [("d1", "a"), ("d1", "b"), ("d2", "c")]
    have = [("d1", "a"), ("d1", "a"), ("d2", "c"), ("d3", "deleted doc"), ("d1", "old b")]
    out = peers.stale(FakeSystem(have, want), {}, meter)
    assert out == {"vectors": 5, "expected": 3, "stale": 3, "stale_outdated_chunks": 3, "stale_old_model": 0, "missing": 1}
    meter.model = "B"
    meter.seen_by_model["B"] = {"a"}  # after the model change only "a" was embedded again
    out = peers.stale(FakeSystem(have, want), {}, meter)
    assert out["stale_old_model"] == 1 and out["stale"] == 4  # ("d2", "c") still holds the old model's vector


def test_ratio_and_table_say_when_nothing_was_embedded():
    assert peers._ratio(0, 0) == "0/0" and peers._ratio(12, 0) == "12 / 0" and peers._ratio(1, 4) == "0.25"
    rows = [{"scenario": "2 noop", "system": s, "texts_embedded": t, "tokens_embedded": 0, "seconds": sec, "stale": 0,
             "vectors": 5, "expected": 5, "ndcg@10": 0.5} for s, t, sec in (("ragindex", 0, 1.0), ("langchain", 5, 2.0))]
    table = peers.render({"rows": rows})
    assert "| 2 noop | 0.00 | 0.50 |" in table


@pytest.mark.slow
def test_rotated_model_keeps_its_own_geometry_but_breaks_mixing(model, tmp_path):
    """Scenario 6's new model: same retrieval among its own vectors, useless against the old ones."""
    from sentence_transformers import SentenceTransformer

    rotated = peers.rotated_model(model.model_dir, seed=0, root=tmp_path)
    texts = ["Aspirin lowers the risk of heart attack.", "Myocardial infarction risk falls with aspirin.",
             "The Eiffel tower is in Paris."]
    a = SentenceTransformer(str(model.model_dir), device="cpu").encode(texts, normalize_embeddings=True)
    b = SentenceTransformer(str(rotated), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(a @ a.T, b @ b.T, atol=1e-4)  # a rotation: every similarity is kept
    assert np.abs(np.diag(a @ b.T)).max() < 0.5  # a text's old and new vectors are far apart
