"""A chunker that cuts on embeddings (``cluster``) in the pipeline: its pieces go through the tenant's
embedder, cache, plan, budget and ledger like any other text, and its chunks carry the embedder's identity.

Hash embedder (bookkeeping tests); the real model's clustering quality is measured in benchmarks/retrieval.py.
"""

from __future__ import annotations

import pytest

from ragindex.chunkers import build_chunker
from ragindex.indexing.prices import Prices
from ragindex.indexing.run import Budget, BudgetExceeded, TenantRun, reindex
from ragindex.ingest.documents import normalise
from ragindex.schemas import SchemaRegistry
from ragindex.search.generation import load_generation
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import current_id, live_manifest
from tests.support.data import passage_docs, write_jsonl

SCHEMA = "cluster-200@1"


def _stage(store, src, embedder):
    with TenantRun(store, "acme", embedder=embedder, source=src, chunker=SCHEMA, prices=Prices.load()) as run:
        return run.stage()


@pytest.fixture
def corpus(tmp_path):
    docs = passage_docs(60)
    return docs, write_jsonl(tmp_path / "corpus.jsonl", docs)


def _text(d) -> str:
    """A record's document text as the source reader makes it (title, blank line, body)."""
    return normalise(d["title"]) + "\n\n" + normalise(d["text"])


def _pieces(docs):
    """Distinct piece texts of documents long enough to cluster, by the schema's own splitter."""
    chunker = build_chunker(SchemaRegistry().get(SCHEMA).spec)
    out = set()
    for d in docs:
        text = _text(d)
        ps = chunker.pieces(text)
        if len(ps) > 1:
            out.update(text[p.start : p.end] for p in ps)
    return out


def test_plan_prices_the_pieces_and_bounds_the_chunks_then_the_run_matches_it(store, hash_embedder, corpus):
    docs, src = corpus
    staged, plan = _stage(store, src, hash_embedder)
    pieces = _pieces(docs)
    assert staged.bound and not plan.exact
    assert plan.chunker_texts_to_embed == len(pieces) > 0
    assert plan.texts_to_embed >= len(pieces) - 5  # the bound: every piece its own chunk (duplicates aside)

    result = reindex(store, "acme", source=src, chunker=SCHEMA, embedder=hash_embedder)
    assert result.status == "promoted"
    assert result.plan.exact and result.plan.chunker_texts_to_embed == len(pieces)
    piece_ledger = result.ledger["chunker_embeddings"]
    assert piece_ledger["texts"] == len(pieces) and piece_ledger["tokens"] == plan.chunker_tokens_to_embed
    assert result.plan.texts_to_embed <= plan.texts_to_embed, "the exact chunks are within the bound"
    # Piece texts that are also whole chunks (a short document's only piece, a run of one) were not embedded twice.
    assert sum(hash_embedder.calls) == piece_ledger["texts"] + result.ledger["texts"]

    with EmbeddingCache(store.paths("acme").cache, read_only=True) as c:
        labels = sorted(r["chunker"] for r in c.runs())
    assert labels == [SCHEMA, f"{SCHEMA} pieces"]


def test_chunks_are_what_the_chunker_makes_with_the_tenants_embedder(store, hash_embedder, corpus):
    docs, src = corpus
    reindex(store, "acme", source=src, chunker=SCHEMA, embedder=hash_embedder)
    schema = SchemaRegistry().get(SCHEMA)
    manifest = live_manifest(store.paths("acme"))
    assert manifest.chunker_fp == schema.chunk_fingerprint(hash_embedder.fingerprint) != schema.fingerprint()
    chunker = build_chunker(schema.spec, embed=hash_embedder.embed)
    gen = load_generation(store.paths("acme"), current_id(store.paths("acme")))
    rows = [r for v in gen.views for r in v.seg.rows.to_pylist()]
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for r in rows:
        by_doc.setdefault(r["doc_id"], []).append((r["start"], r["end"]))
    for d in docs[:20]:
        text = _text(d)
        assert sorted(by_doc[d["_id"]]) == [(s.start, s.end) for s in chunker.chunk(text)], d["_id"]


def test_second_run_embeds_nothing_and_an_edit_embeds_only_its_pieces(store, hash_embedder, corpus, tmp_path):
    docs, src = corpus
    reindex(store, "acme", source=src, chunker=SCHEMA, embedder=hash_embedder)
    calls = sum(hash_embedder.calls)
    again = reindex(store, "acme", source=src, chunker=SCHEMA, embedder=hash_embedder)
    assert again.status == "unchanged" and sum(hash_embedder.calls) == calls
    assert again.plan.exact and again.plan.chunker_texts_to_embed == 0

    edited = [dict(d) for d in docs]
    edited[3]["text"] += " A new closing sentence about an entirely different topic, such as volcanoes."
    src2 = write_jsonl(tmp_path / "edited.jsonl", edited)
    staged, plan = _stage(store, src2, hash_embedder)
    new_pieces = _pieces([edited[3]]) - _pieces(docs)  # the cache holds every piece of the first run
    assert plan.chunker_texts_to_embed == len(new_pieces) >= 1
    result = reindex(store, "acme", source=src2, chunker=SCHEMA, embedder=hash_embedder)
    assert result.ledger["chunker_embeddings"]["texts"] == len(new_pieces)
    assert result.changes["docs_changed"] == 1


def test_budget_covers_the_pieces_and_a_refused_run_writes_nothing(store, hash_embedder, corpus):
    docs, src = corpus
    _, plan = _stage(store, src, hash_embedder)
    # Enough for the chunks alone, not for pieces + chunks.
    with pytest.raises(BudgetExceeded, match="at most"):
        reindex(store, "acme", source=src, chunker=SCHEMA, embedder=hash_embedder,
                budget=Budget(tokens=plan.tokens_to_embed + plan.chunker_tokens_to_embed - 1))
    assert sum(hash_embedder.calls) == 0
    assert not store.paths("acme").cache.exists()
