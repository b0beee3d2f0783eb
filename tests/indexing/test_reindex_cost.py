"""Dedup, cache, plan == ledger, budgets: the cost-control contract on real text (chunking-set passages).

These tests are about bookkeeping, so they use the deterministic hash embedder
(DESIGN/STYLE: fakes only at true boundaries); the real model is exercised in
test_search_e2e.py and the benchmarks.
"""

from __future__ import annotations

import random

import pytest

from ragindex.embedders.local import HashEmbedder
from ragindex.indexing.prices import Prices
from ragindex.indexing.run import Budget, BudgetExceeded, TenantRun, reindex
from ragindex.search.generation import load_generation
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import current_id, list_generations, live_manifest
from tests.support.data import passage_docs, write_jsonl


def _plan(store, tenant, source, chunker, embedder):
    with TenantRun(store, tenant, embedder=embedder, source=source, chunker=chunker, prices=Prices.load()) as run:
        return run.stage()


def _live_rows(store, tenant):
    gen = load_generation(store.paths(tenant), current_id(store.paths(tenant)))
    return [row for v in gen.views for i, row in enumerate(v.seg.rows.to_pylist()) if v.mask is None or v.mask[i]]


def _ledger(store, tenant, run_id):
    with EmbeddingCache(store.paths(tenant).cache, read_only=True) as c:
        return c.run(run_id)


@pytest.fixture
def corpus(tmp_path):
    docs = passage_docs(400)
    return docs, write_jsonl(tmp_path / "corpus.jsonl", docs)


def test_second_reindex_embeds_nothing(store, hash_embedder, corpus):
    _, src = corpus
    first = reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=hash_embedder)
    assert first.ledger["texts"] == first.plan.texts_to_embed > 0
    second = reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=hash_embedder)
    assert second.status == "unchanged" and second.plan.texts_to_embed == 0
    assert second.ledger["texts"] == 0 and second.ledger["tokens"] == 0 and second.run_id is None
    assert second.plan.docs_unchanged == len(corpus[0]) and second.plan.chunks_new == 0
    assert sum(hash_embedder.calls) == first.plan.texts_to_embed  # the model never saw a text twice
    assert current_id(store.paths("acme")) == second.generation == first.generation
    with EmbeddingCache(store.paths("acme").cache, read_only=True) as c:
        assert len(c.runs()) == 1  # no ledger row for a run that embedded nothing


def test_one_percent_edit_embeds_exactly_the_plan(store, hash_embedder, corpus, tmp_path):
    docs, src = corpus
    reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=hash_embedder)
    rng = random.Random(7)
    edited = [dict(d) for d in docs]
    picked = rng.sample(range(len(edited)), k=len(edited) // 100)
    for i in picked:
        edited[i]["text"] = edited[i]["text"] + " This sentence was added by the edit test."
    src2 = write_jsonl(tmp_path / "edited.jsonl", edited)
    _, plan = _plan(store, "acme", src2, "recursive-250@1", hash_embedder)
    assert plan.docs_changed == len(picked) and plan.docs_new == 0 and plan.docs_deleted == 0
    assert 0 < plan.texts_to_embed <= 3 * len(picked)  # only the edited documents' changed chunks
    before = sum(hash_embedder.calls)
    result = reindex(store, "acme", source=src2, chunker="recursive-250@1", embedder=hash_embedder)
    ledger = _ledger(store, "acme", result.run_id)
    assert (ledger["texts"], ledger["tokens"]) == (plan.texts_to_embed, plan.tokens_to_embed)
    assert ledger["tokens_cl100k"] == plan.tokens_to_embed_cl100k
    assert sum(hash_embedder.calls) - before == plan.texts_to_embed
    # every text embedded belongs to an edited document
    edited_ids = {edited[i]["_id"] for i in picked}
    with EmbeddingCache(store.paths("acme").cache, read_only=True) as c:
        new_hashes = {r[0] for r in c.con.execute("SELECT text_hash FROM embeddings WHERE run_id = ?", [result.run_id]).fetchall()}
    owners = {c["doc_id"] for c in _live_rows(store, "acme") if c["text_hash"] in new_hashes}
    assert owners <= edited_ids
    assert result.plan.docs_chunked == len(picked)  # only the edited documents were chunked again
    assert len(live_manifest(store.paths("acme")).segments) == 2  # the first run's segment is shared, not copied


def test_chunker_move_reuses_identical_texts(store, hash_embedder, corpus):
    _, src = corpus
    reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=hash_embedder)
    staged, plan = _plan(store, "acme", src, "recursive-200@1", hash_embedder)
    old = {r["text_hash"] for r in _live_rows(store, "acme")}
    new = set(staged.rows.column("text_hash").to_pylist())
    assert plan.rebuild and "chunker schema recursive-250@1 -> recursive-200@1" in plan.rebuild
    assert plan.vectors_reused == len(old & new) > 0  # every identical text, and the plan says how many
    assert plan.texts_to_embed == len(new - old)
    result = reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    assert result.ledger["texts"] == len(new - old)
    assert result.ledger["cache_hits"] == len(old & new)
    assert len(live_manifest(store.paths("acme")).segments) == 1  # a schema change is one new segment


def test_duplicate_documents_embed_each_text_once(store, hash_embedder, tmp_path):
    docs = passage_docs(100)
    dupes = [dict(d, _id=f"copy-{d['_id']}") for d in docs[:50]]
    src = write_jsonl(tmp_path / "dupes.jsonl", docs + dupes)
    result = reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=hash_embedder)
    plan = result.plan
    assert plan.duplicates_in_run > 0
    assert plan.texts_to_embed == plan.unique_texts < plan.chunks_total
    assert result.ledger["texts"] == plan.unique_texts
    assert sum(hash_embedder.calls) == plan.unique_texts


def test_over_budget_changes_nothing(store, hash_embedder, corpus, tmp_path):
    docs, src = corpus
    first = reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=hash_embedder)
    paths = store.paths("acme")
    before = {p: p.read_bytes() for p in paths.root.rglob("*") if p.is_file() and p.name != "lock"}
    bigger = write_jsonl(tmp_path / "more.jsonl", docs + passage_docs(600)[400:])
    calls = list(hash_embedder.calls)
    with pytest.raises(BudgetExceeded) as exc:
        reindex(store, "acme", source=bigger, chunker="recursive-250@1", embedder=hash_embedder, budget=Budget(tokens=10))
    assert "budget-tokens" in str(exc.value) and exc.value.plan.texts_to_embed > 0
    with pytest.raises(BudgetExceeded):
        reindex(store, "acme", source=bigger, chunker="recursive-250@1", embedder=hash_embedder, budget=Budget(cost_usd=0.0))
    after = {p: p.read_bytes() for p in paths.root.rglob("*") if p.is_file() and p.name != "lock"}
    assert after == before
    assert hash_embedder.calls == calls
    assert current_id(paths) == first.generation and len(list_generations(paths)) == 1


def test_over_budget_new_tenant_leaves_nothing_behind(store, hash_embedder, corpus):
    _, src = corpus
    with pytest.raises(BudgetExceeded):
        reindex(store, "newco", source=src, chunker="recursive-250@1", embedder=hash_embedder, budget=Budget(tokens=10))
    assert not store.exists("newco") and not hash_embedder.calls
    within = reindex(store, "newco", source=src, chunker="recursive-250@1", embedder=hash_embedder,
                     budget=Budget(tokens=10**9))
    assert within.ledger["texts"] == within.plan.texts_to_embed > 0


def test_model_change_is_a_new_key_space(store, corpus):
    _, src = corpus
    a = reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=HashEmbedder(dim=32))
    b = reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=HashEmbedder(dim=32, max_seq_length=128))
    assert a.plan.embedder_fp != b.plan.embedder_fp
    assert b.plan.vectors_reused == 0 and b.ledger["texts"] == b.plan.unique_texts


def test_crash_between_commits_resumes_without_reembedding(store, hash_embedder, corpus, monkeypatch):
    """A failure after some batches were committed keeps them; the next run embeds only the rest."""
    import ragindex.indexing.embed as r

    _, src = corpus
    commits = {"n": 0}
    real = r.EmbeddingCache.commit_batch

    def failing(self, *a, **k):
        if commits["n"] == 2:
            raise KeyboardInterrupt("simulated crash")
        commits["n"] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(r.EmbeddingCache, "commit_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=hash_embedder)
    monkeypatch.setattr(r.EmbeddingCache, "commit_batch", real)
    result = reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=hash_embedder)
    assert result.plan.vectors_reused == 2 * r.COMMIT_EVERY
    assert result.ledger["texts"] == result.plan.unique_texts - 2 * r.COMMIT_EVERY
    with EmbeddingCache(store.paths("acme").cache, read_only=True) as c:
        runs = c.runs()
    assert [x["status"] for x in runs] == ["interrupted", "complete"]
    assert runs[0]["texts"] == 2 * r.COMMIT_EVERY  # the ledger kept what the dead run paid for
