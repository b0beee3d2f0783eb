"""Metrics, checked by hand on small cases and as invariants on the chunking-evaluation set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragindex.evaluate.metrics import bootstrap_se, doc_scores, span_scores, union
from ragindex.evaluate.runner import rank_documents, top_chunks


def test_doc_scores_by_hand():
    s = doc_scores(["a", "x", "b", "y"], {"a": 1, "b": 1})
    idcg = 1 + 1 / math.log2(3)
    assert s["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / idcg)
    assert s["recall@5"] == 1.0 and s["mrr@10"] == 1.0
    s = doc_scores(["x"] * 1 + ["y", "b"], {"a": 1, "b": 1})
    assert s["recall@10"] == 0.5 and s["mrr@10"] == pytest.approx(1 / 3)


def test_span_scores_follow_the_study_definitions():
    # one reference [100, 200); chunks [50, 150), [150, 250) in its doc, one chunk elsewhere
    refs = [("d", 100, 200)]
    retrieved = [("d", 50, 150), ("other", 0, 100), ("d", 150, 250)]
    all_chunks = {"d": [(0, 50), (50, 150), (150, 250), (250, 300)]}
    s = span_scores(retrieved, refs, all_chunks)
    assert s["recall"] == 1.0
    assert s["precision"] == pytest.approx(100 / 300)  # plain sum over all k chunks
    assert s["iou"] == pytest.approx(100 / 300)
    assert s["precision_omega"] == pytest.approx(100 / 200)  # union of the two touching chunks
    # half the reference missed: IoU's denominator adds the uncovered characters
    s = span_scores([("d", 50, 150)], refs, all_chunks)
    assert s["recall"] == 0.5 and s["precision"] == 0.5
    assert s["iou"] == pytest.approx(50 / (100 + 50))


def test_overlapping_chunks_count_once_in_numerator_twice_in_precision():
    s = span_scores([("d", 0, 100), ("d", 50, 150)], [("d", 0, 150)])
    assert s["recall"] == 1.0 and s["precision"] == pytest.approx(150 / 200)


def test_union_merges():
    assert union([(5, 10), (0, 3), (3, 4), (8, 12), (20, 20)]) == [(0, 4), (5, 12)]


def test_exact_search_helpers():
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((30, 8)).astype(np.float32)
    q = rng.standard_normal((4, 8)).astype(np.float32)
    top = top_chunks(q, vecs, 5)
    np.testing.assert_array_equal(top, np.argsort(-(q @ vecs.T), axis=1)[:, :5])
    docs = [f"d{i // 3}" for i in range(30)]  # 10 docs of 3 chunks
    ranked = rank_documents(q, vecs, docs, depth=10)
    best = (q @ vecs.T).reshape(4, 10, 3).max(axis=2)
    assert ranked == [[f"d{j}" for j in np.argsort(-row)] for row in best]


def test_bootstrap_se_close_to_analytic():
    x = np.random.default_rng(1).random(400)
    assert bootstrap_se(x) == pytest.approx(x.std(ddof=1) / math.sqrt(len(x)), rel=0.15)


def test_oracle_chunks_score_perfect_recall_on_chroma():
    """Invariant on the real set: retrieving the references themselves gives recall = precision = IoU = 1."""
    from ragindex.evaluate import datasets

    ds = datasets.load("chroma")
    for q in ds.query_ids:
        refs = [(s.doc_id, s.start, s.end) for s in ds.spans[q]]
        if len(union((s, e) for _, s, e in refs)) != len(refs):
            continue  # overlapping references: precision counts them twice by definition
        s = span_scores(refs, refs, {d: [(s, e) for dd, s, e in refs if dd == d] for d, _, _ in refs})
        assert s == pytest.approx({"recall": 1.0, "precision": 1.0, "iou": 1.0, "precision_omega": 1.0}), q
