"""tenant_quality: a tenant generation scored on the tenant's own eval set (the promotion check's number)."""

from __future__ import annotations

import json

import pytest

from ragindex.evaluate import tenant_quality
from ragindex.indexing.run import reindex
from ragindex.store.manifests import current_id
from ragindex.store.tenants import TenantSettings
from tests.support.data import chroma_beir, passage_docs, write_beir, write_jsonl
from tests.support.tenants import register


def _beir_eval_set(folder, docs):
    """A BEIR folder over ``docs``: the chunking-evaluation questions whose relevant passages are all among them."""
    queries, qrels = chroma_beir(docs)
    return write_beir(folder, docs, queries, qrels), len(qrels)


def _docs_with_their_queries(n_queries: int = 15, distractors: int = 40) -> list[dict]:
    """The relevant passages of the first ``n_queries`` labelled questions, plus the first ``distractors`` passages."""
    docs = passage_docs()
    _, qrels = chroma_beir(docs)
    wanted = {d for q in list(qrels)[:n_queries] for d in qrels[q]}
    return [d for d in docs if d["_id"] in wanted] + [d for d in docs[:distractors] if d["_id"] not in wanted]


@pytest.fixture
def eval_tenant(tmp_path, store):
    docs = _docs_with_their_queries()
    src = write_jsonl(tmp_path / "docs.jsonl", docs)
    eval_set, n = _beir_eval_set(tmp_path / "eval", docs)
    assert n >= 15
    return src, eval_set


def test_none_without_eval_set(store, hash_embedder, eval_tenant):
    src, _ = eval_tenant
    gen = reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=hash_embedder).generation
    assert tenant_quality(store, "acme", gen, hash_embedder) is None


def test_metrics_for_a_generation_with_the_real_model(store, model, eval_tenant):
    src, eval_set = eval_tenant
    register(store, "acme", TenantSettings(source=str(src), chunker="recursive-250@1", eval_set=str(eval_set)))
    gen = reindex(store, "acme", embedder=model).generation
    assert current_id(store.paths("acme")) == gen  # first generation: the quality gate had nothing to compare with
    q = tenant_quality(store, "acme", gen, model)
    assert set(q) == {"ndcg@10", "recall@5", "recall@10", "recall@100", "mrr@10"}
    # The real model finds the passages the questions were written from (nDCG@10 0.86 measured; the
    # hash embedder's random vectors score far lower).
    assert q["recall@100"] >= q["recall@10"] >= q["recall@5"] and q["ndcg@10"] > 0.7
    # queries are cached: a second call embeds nothing new
    assert tenant_quality(store, "acme", gen, model) == q


def test_cli_eval_tenant_scores_the_live_generation_and_explains_a_missing_eval_set(store, hash_embedder, eval_tenant):
    from click.testing import CliRunner

    from ragindex.cli import main

    src, eval_set = eval_tenant
    run = CliRunner(env={"RAGINDEX_HOME": str(store.root)})
    assert run.invoke(main, ["tenants", "add", "acme", "--source", str(src)]).exit_code == 0
    assert run.invoke(main, ["--model", "hash", "reindex", "-t", "acme"]).exit_code == 0
    res = run.invoke(main, ["--model", "hash", "eval", "tenant", "-t", "acme"])
    assert res.exit_code == 1 and "has no eval set" in res.output and "--eval-set" in res.output

    register(store, "acme", TenantSettings(source=str(src), eval_set=str(eval_set)))
    res = run.invoke(main, ["--model", "hash", "eval", "tenant", "-t", "acme", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    gen = current_id(store.paths("acme"))
    assert out["generation"] == gen and out["metrics"]["ndcg@10"] > 0
    assert out["metrics"] == tenant_quality(store, "acme", gen, hash_embedder)
