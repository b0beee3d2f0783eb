"""`--mode hybrid-ctx` (issue 26): hybrid fusion with the evidence of a chunk's neighbours in its document.

1. BM25 over windows (the mode's form): a window's index is the index of the window texts; a question whose
   words fall on both sides of a chunk boundary ranks that passage first.
2. The neighbour-score bonus (the mode's earlier form, kept for the benchmarks): without neighbours it is
   the weighted fusion; a candidate whose neighbour also answers the query outranks an equal one whose
   neighbours do not; with ``keep_doc_order`` documents rank exactly as in the plain fusion and only the
   order inside each document changes.
3. Search and the evaluation rank alike: the search service finds neighbours from a segment's rows,
   the evaluation from the chunks' offsets, and both give the same hits; the mode changes some of them.
4. A tenant moves to default@3 in hybrid-ctx by `ragindex migrate`, and searches in that mode after.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ragindex.cli import main
from ragindex.evaluate.runner import Chunks, lexical_index, lexical_scores, rank_chunks
from ragindex.indexing.run import reindex
from ragindex.search.hybrid import CTX_HYBRID, DEFAULT_HYBRID, NEIGHBOUR_BONUS, HybridParams, fuse, params_for
from ragindex.search.searcher import Searcher
from ragindex.store.lexical import LexicalIndex, windowed
from ragindex.store.manifests import live_manifest
from tests.support.data import passage_docs
from tests.support.folders import make_folder


def test_neighbours_lift_a_candidate_whose_neighbour_answers_too():
    dense = [("a", 0.9), ("b", 0.9), ("c", 0.1)]
    lexical = [("a", 5.0), ("b", 5.0), ("c", 0.5)]
    dense_of = {"a": 0.9, "b": 0.9, "c": 0.1, "a+1": 0.8, "b+1": 0.0}
    lexical_of = {"a": 5.0, "b": 5.0, "c": 0.5, "a+1": 4.0, "b+1": 0.0}
    near = {"a": ["a+1"], "b": ["b+1"], "c": []}
    plain = HybridParams("weighted", alpha=0.2, depth=50)
    assert [k for k, _ in fuse(dense, lexical, dense_of, lexical_of, plain, near)] == \
           [k for k, _ in fuse(dense, lexical, dense_of, lexical_of, plain)]
    ranked = fuse(dense, lexical, dense_of, lexical_of, HybridParams("weighted", 0.2, neighbours=0.5), near)
    assert ranked[0][0] == "a" and ranked[0][1] > ranked[1][1]  # "a+1" answers too; "b+1" does not
    assert params_for("hybrid-ctx") is CTX_HYBRID and params_for("hybrid") is DEFAULT_HYBRID
    assert CTX_HYBRID.label() == "weighted(alpha=0.2, depth=50, bm25_window=0.5)"
    assert NEIGHBOUR_BONUS.label() == "weighted(alpha=0.2, depth=50, neighbours=0.5, keep_doc_order)"


def test_a_window_index_is_the_index_of_the_window_texts():
    # three documents of 1, 2 and 3 chunks, rows in document order
    texts = ["solar panels on roofs", "wind turbines offshore", "turbines need wind maps", "grid storage batteries",
             "batteries store solar power", "power lines and wind"]
    before = np.array([-1, -1, 1, -1, 3, 4])
    after = np.array([-1, 2, -1, 4, 5, -1])
    rows = LexicalIndex.build(texts)
    full = windowed(rows, before, after, 1.0)  # neighbours counted in full: the index of the window texts
    want = LexicalIndex.build([" ".join(([texts[b]] if b >= 0 else []) + [t] + ([texts[a]] if a >= 0 else []))
                               for t, b, a in zip(texts, before, after)])
    assert np.array_equal(full.terms, want.terms) and np.array_equal(full.doc_len, want.doc_len)
    assert np.array_equal(full.tf.toarray(), want.tf.toarray())
    half = windowed(rows, before, after, 0.5)  # the mode's share: the row itself plus half of each neighbour
    assert np.allclose(half.tf.toarray(), (rows.tf.toarray() + full.tf.toarray()) / 2)
    assert np.allclose(half.doc_len, (rows.doc_len + full.doc_len) / 2)
    # a one-chunk document is its own window, so it scores exactly as without windows
    assert np.array_equal(half.tf.toarray()[0], rows.tf.toarray()[0]) and half.doc_len[0] == rows.doc_len[0]


def test_documents_of_one_chunk_rank_as_in_hybrid():
    """Whole documents (SciFact's benchmark) have no neighbours: hybrid-ctx must not change their ranking."""
    docs = passage_docs(30)
    chunks = Chunks(doc_ids=[d["_id"] for d in docs], starts=[0] * len(docs), ends=[len(d["text"]) for d in docs],
                    texts=[d["text"] for d in docs])
    rng = np.random.default_rng(3)
    cvecs = rng.normal(size=(len(docs), 8)).astype(np.float32)

    class Questions:
        queries = tuple(d["title"] for d in docs[:10])

    qvecs = rng.normal(size=(10, 8)).astype(np.float32)
    assert rank_chunks(Questions(), chunks, qvecs, cvecs, 10, "hybrid-ctx") == rank_chunks(Questions(), chunks, qvecs, cvecs, 10, "hybrid")


def test_a_question_split_over_a_chunk_boundary_ranks_that_passage_first():
    chunks = Chunks(doc_ids=["a", "a", "b", "b"], starts=[0, 30, 0, 30], ends=[30, 60, 30, 60],
                    texts=["the reactor vessel was inspected", "for cracks in the welds", "the reactor vessel was shut",
                           "down for the holidays"])
    query = "reactor vessel cracks"
    plain = lexical_scores(lexical_index(chunks), query)
    ctx = lexical_scores(windowed(lexical_index(chunks), np.array([-1, 0, -1, 2]), np.array([1, -1, 3, -1]), 0.5), query)
    assert plain[0] == plain[2] and ctx[0] > ctx[2]  # "cracks" sits in chunk 0's neighbour, not in chunk 2's
    qvec = np.ones((1, 4), np.float32) / 2

    class Questions:
        queries = (query,)

    ranked = rank_chunks(Questions(), chunks, qvec, np.tile(qvec, (4, 1)), 4, "hybrid-ctx")[0]  # dense ties all
    assert set(ranked[:2]) == {0, 1} and ranked[2] == 2


def _doc_order(ranked, doc_of):
    return list(dict.fromkeys(doc_of[k] for k, _ in ranked))


def test_keep_doc_order_ranks_documents_as_the_plain_fusion_and_chunks_as_the_neighbours_do():
    rng = np.random.default_rng(7)
    moved_docs = moved_chunks = 0
    for trial in range(200):
        sizes = rng.integers(1, 5, size=8)  # eight documents of one to four chunks
        doc_of = {(d, i): d for d, n in enumerate(sizes) for i in range(n)}
        near = {(d, i): [(d, j) for j in (i - 1, i + 1) if 0 <= j < sizes[d]] for d, i in doc_of}
        dense_of = {k: float(rng.random()) for k in doc_of}
        lexical_of = {k: float(rng.random() * 8) for k in doc_of}
        keys = list(doc_of)
        cands = [keys[i] for i in rng.choice(len(keys), size=min(len(keys), 12), replace=False)]
        dense = sorted(((k, dense_of[k]) for k in cands[:8]), key=lambda kv: -kv[1])
        lexical = sorted(((k, lexical_of[k]) for k in cands[4:]), key=lambda kv: -kv[1])
        plain = fuse(dense, lexical, dense_of, lexical_of, DEFAULT_HYBRID)
        free = fuse(dense, lexical, dense_of, lexical_of, HybridParams("weighted", 0.2, neighbours=0.5), near)
        kept = fuse(dense, lexical, dense_of, lexical_of, NEIGHBOUR_BONUS, near, doc_of)
        assert _doc_order(kept, doc_of) == _doc_order(plain, doc_of), trial
        for d in set(doc_of.values()):
            assert [k for k, _ in kept if k[0] == d] == [k for k, _ in free if k[0] == d], (trial, d)
        moved_docs += _doc_order(free, doc_of) != _doc_order(plain, doc_of)
        moved_chunks += [k for k, _ in kept] != [k for k, _ in plain]
    # the check has teeth: free neighbours do move documents, and the kept order still moves chunks
    assert moved_docs > 20 and moved_chunks > 20
    with pytest.raises(ValueError, match="document"):
        fuse(dense, lexical, dense_of, lexical_of, NEIGHBOUR_BONUS, near)


def test_search_and_the_evaluation_find_the_same_neighbours(store, hash_embedder, tmp_path):
    docs = passage_docs(12)
    reindex(store, "acme", source=make_folder(tmp_path / "docs", docs), chunker="default@3", embedder=hash_embedder)
    s = Searcher(store, hash_embedder)
    gen = s.generation("acme")
    (view,) = gen.views
    rows = view.seg.rows
    chunks = Chunks(doc_ids=[d.split("#")[0] for d in rows.column("doc_id").to_pylist()],
                    starts=rows.column("start").to_pylist(), ends=rows.column("end").to_pylist(),
                    texts=rows.column("text").to_pylist())
    queries = [d["title"] for d in docs] + ["cells in the immune system", "rates of infection in children"]
    qvecs, cvecs = hash_embedder.embed(queries), hash_embedder.embed(chunks.texts)

    class Questions:  # what rank_chunks reads of a dataset
        pass

    ds = Questions()
    ds.queries = queries
    lex = lexical_index(chunks)
    for mode in ("hybrid", "hybrid-ctx"):
        ranked = rank_chunks(ds, chunks, qvecs, cvecs, 5, mode, lex=lex)
        for q, top in zip(queries, ranked):
            hits = s.search("acme", q, k=5, mode=mode)
            assert [(h.start, h.end) for h in hits] == [(chunks.starts[i], chunks.ends[i]) for i in top], (mode, q)
    with pytest.raises(ValueError, match="offline"):  # the bonus is an evaluation-only fusion
        gen.search_hybrid(queries[0], qvecs[0], 5, NEIGHBOUR_BONUS)
    plain = rank_chunks(ds, chunks, qvecs, cvecs, 5, "hybrid", lex=lex)
    ctx = rank_chunks(ds, chunks, qvecs, cvecs, 5, "hybrid-ctx", lex=lex)
    changed = sum(a != b for a, b in zip(plain, ctx))
    assert changed > 0  # the neighbours moved some hits: the mode is not the plain fusion under another name
    assert np.all(np.asarray([len(t) for t in ctx]) == 5)


def test_a_tenant_migrates_to_default3_in_hybrid_ctx(store, hash_embedder, tmp_path):
    folder = make_folder(tmp_path / "docs", passage_docs(20))
    reindex(store, "acme", source=folder, chunker="default@2", embedder=hash_embedder)
    res = CliRunner().invoke(main, ["--model", "hash", "migrate", "-t", "acme", "--to", "default@3", "--mode", "hybrid-ctx",
                                    "--json"])
    assert res.exit_code == 0, res.output
    m = live_manifest(store.paths("acme"))
    assert (m.chunker, m.search_mode) == ("default@3", "hybrid-ctx")
    assert (store.settings("acme").chunker, store.settings("acme").mode) == ("default@3", "hybrid-ctx")
    out = CliRunner().invoke(main, ["--model", "hash", "search", "-t", "acme", "immune cells", "--json"])
    assert out.exit_code == 0 and len(json.loads(out.stdout)) == 5
