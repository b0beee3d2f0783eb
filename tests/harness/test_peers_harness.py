"""The peers benchmark's own logic (tests/support/peers_scenarios.py, which benchmarks/peers.py
imports), without the peers' packages.

The comparison is only as honest as its corpus edits, its stale-vector count and its
stand-in for a model change, so those are tested here. The LangChain and LlamaIndex
adapters need the `bench` extra and run only in the benchmark itself.
"""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest

from tests.support import peers_scenarios as scenarios
from tests.support.data import chroma_beir, passage_docs

# The benchmark runs on SciFact (2,000 documents, 300 test queries), which the tests never read; the
# scenario logic is the same on any labelled collection, so here it runs on the passage records and
# the chunking-evaluation questions labelled with them (tests/support/data.py), at N documents.
N = 600


@pytest.fixture(scope="module")
def collection():
    """(full corpus, queries, qrels) in the shape of load_scifact() in benchmarks/peers.py."""
    docs = passage_docs()
    queries, qrels = chroma_beir(docs)
    return {d["_id"]: (d["title"] + " " + d["text"]).strip() for d in docs}, queries, qrels


def test_base_corpus_holds_every_document_a_test_query_needs(collection):
    full, queries, qrels = collection
    corpus, spare = scenarios.base_corpus(full, qrels, N)
    # 471 of the set's 472 questions: one has a reference in text too short to make a passage (a table's tail)
    assert len(corpus) == N and len(queries) == len(qrels) == 471
    assert {d for rel in qrels.values() for d in rel} <= set(corpus)
    assert not set(spare) & set(corpus) and len(spare) == len(full) - N


def test_edit_scenario_proportions_and_protected_documents(collection):
    full, _, qrels = collection
    corpus, spare = scenarios.base_corpus(full, qrels, N)
    protected = {d for rel in qrels.values() for d in rel}
    out, info = scenarios.edited(corpus, spare, full, protected, random.Random(0))
    assert info == {"edited": 6, "deleted": 3, "added": 3}  # 1%, 0.5% and 0.5% of 600
    deleted = set(corpus) - set(out)
    added = set(out) - set(corpus)
    changed = {d for d in set(corpus) & set(out) if out[d] != corpus[d]}
    assert len(deleted) == 3 and not deleted & protected
    assert len(added) == 3 and all(out[d] == full[d] for d in added)
    assert len(changed) == 6  # edited documents are never among the deleted ones


def test_duplicate_scenario_is_thirty_percent_exact_or_near_copies(collection):
    full, _, qrels = collection
    corpus, _ = scenarios.base_corpus(full, qrels, N)
    protected = {d for rel in qrels.values() for d in rel}
    out, info = scenarios.with_duplicates(corpus, protected, random.Random(0))
    # 30% of 600 = 180 copies, half exact, half near; 420 originals (SciFact's 2,000: 1,400 / 300 / 300)
    assert len(out) == N and info == {"originals": 420, "exact_duplicates": 90, "near_duplicates": 90}
    assert protected <= set(out)  # every document a query needs is still there
    copies = {d: t for d, t in out.items() if d.startswith("dup-")}
    exact = sum(t == out[d.split("-", 2)[2]] for d, t in copies.items())
    assert len(copies) == 180 and exact == 90
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
    meter = scenarios.Meter(tokenizer=None, max_len=256)
    want = [("d1", "a"), ("d1", "b"), ("d2", "c")]
    have = [("d1", "a"), ("d1", "a"), ("d2", "c"), ("d3", "deleted doc"), ("d1", "old b")]
    out = scenarios.stale(FakeSystem(have, want), {}, meter)
    assert out == {"vectors": 5, "expected": 3, "stale": 3, "stale_outdated_chunks": 3, "stale_old_model": 0, "missing": 1}
    meter.model = "B"
    meter.seen_by_model["B"] = {"a"}  # after the model change only "a" was embedded again
    out = scenarios.stale(FakeSystem(have, want), {}, meter)
    assert out["stale_old_model"] == 1 and out["stale"] == 4  # ("d2", "c") still holds the old model's vector


def test_ratio_and_table_say_when_nothing_was_embedded():
    assert scenarios._ratio(0, 0) == "0/0" and scenarios._ratio(12, 0) == "12 / 0" and scenarios._ratio(1, 4) == "0.25"
    rows = [{"scenario": "2 noop", "system": s, "texts_embedded": t, "tokens_embedded": 0, "seconds": sec, "stale": 0,
             "vectors": 5, "expected": 5, "ndcg@10": 0.5} for s, t, sec in (("ragindex", 0, 1.0), ("langchain", 5, 2.0))]
    table = scenarios.render({"rows": rows})
    assert "| 2 noop | 0.00 | 0.50 |" in table


@pytest.mark.slow
def test_rotated_model_keeps_its_own_geometry_but_breaks_mixing(model, tmp_path):
    """Scenario 6's new model: same retrieval among its own vectors, useless against the old ones."""
    from sentence_transformers import SentenceTransformer

    rotated = scenarios.rotated_model(model.model_dir, seed=0, root=tmp_path)
    texts = ["Aspirin lowers the risk of heart attack.", "Myocardial infarction risk falls with aspirin.",
             "The Eiffel tower is in Paris."]
    a = SentenceTransformer(str(model.model_dir), device="cpu").encode(texts, normalize_embeddings=True)
    b = SentenceTransformer(str(rotated), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(a @ a.T, b @ b.T, atol=1e-4)  # a rotation: every similarity is kept
    assert np.abs(np.diag(a @ b.T)).max() < 0.5  # a text's old and new vectors are far apart
