"""tenant_quality: a tenant generation scored on the tenant's own eval set (the promotion check's number)."""

from __future__ import annotations

import json

import pytest

from ragindex.evaluate import tenant_quality
from ragindex.index import current_id
from ragindex.reindex import reindex
from ragindex.tenants import TenantSettings
from tests.conftest import DATA, scifact_docs, write_jsonl


def _beir_eval_set(folder, docs):
    """A BEIR folder over ``docs``: the SciFact test queries whose relevant documents are all among them."""
    ids = {d["_id"] for d in docs}
    qrels: dict[str, list[str]] = {}
    with open(DATA / "scifact" / "qrels" / "test.tsv", encoding="utf-8") as f:
        for line in f.read().splitlines()[1:]:
            q, d, _ = line.split("\t")
            qrels.setdefault(q, []).append(d)
    keep = {q: ds for q, ds in qrels.items() if set(ds) <= ids}
    queries = [json.loads(line) for line in open(DATA / "scifact" / "queries.jsonl", encoding="utf-8")]
    folder.mkdir()
    write_jsonl(folder / "corpus.jsonl", docs)
    write_jsonl(folder / "queries.jsonl", [q for q in queries if q["_id"] in keep])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, ds in keep.items() for d in ds))
    return folder, len(keep)


def _docs_with_their_queries(n_queries: int = 15, distractors: int = 40) -> list[dict]:
    """The relevant documents of the first ``n_queries`` test queries, plus the first ``distractors`` documents."""
    wanted: list[str] = []
    with open(DATA / "scifact" / "qrels" / "test.tsv", encoding="utf-8") as f:
        rows = [line.split("\t") for line in f.read().splitlines()[1:]]
    queries = list(dict.fromkeys(r[0] for r in rows))[:n_queries]
    wanted = {r[1] for r in rows if r[0] in queries}
    docs = scifact_docs()
    return [d for d in docs if d["_id"] in wanted] + [d for d in docs[:distractors] if d["_id"] not in wanted]


@pytest.fixture
def scifact_tenant(tmp_path, store):
    docs = _docs_with_their_queries()
    src = write_jsonl(tmp_path / "docs.jsonl", docs)
    eval_set, n = _beir_eval_set(tmp_path / "eval", docs)
    assert n >= 5
    return src, eval_set


def test_none_without_eval_set(store, hash_embedder, scifact_tenant):
    src, _ = scifact_tenant
    gen = reindex(store, "acme", source=src, chunker="recursive-250@1", embedder=hash_embedder).generation
    assert tenant_quality(store, "acme", gen, hash_embedder) is None


def test_metrics_for_a_generation_with_the_real_model(store, model, scifact_tenant):
    src, eval_set = scifact_tenant
    store.save_settings("acme", TenantSettings(source=str(src), chunker="recursive-250@1", eval_set=str(eval_set)))
    gen = reindex(store, "acme", embedder=model).generation
    assert current_id(store.paths("acme")) == gen  # first generation: the quality gate had nothing to compare with
    q = tenant_quality(store, "acme", gen, model)
    assert set(q) == {"ndcg@10", "recall@5", "recall@10", "recall@100", "mrr@10"}
    assert q["recall@100"] >= q["recall@10"] >= q["recall@5"] and q["ndcg@10"] > 0.5  # a real model finds SciFact evidence
    # queries are cached: a second call embeds nothing new
    assert tenant_quality(store, "acme", gen, model) == q


def test_cli_eval_tenant_scores_the_live_generation_and_explains_a_missing_eval_set(store, hash_embedder, scifact_tenant):
    from click.testing import CliRunner

    from ragindex.cli import main

    src, eval_set = scifact_tenant
    run = CliRunner(env={"RAGINDEX_HOME": str(store.root)})
    assert run.invoke(main, ["tenants", "add", "acme", "--source", str(src)]).exit_code == 0
    assert run.invoke(main, ["--model", "hash", "reindex", "-t", "acme"]).exit_code == 0
    res = run.invoke(main, ["--model", "hash", "eval", "tenant", "-t", "acme"])
    assert res.exit_code == 1 and "has no eval set" in res.output and "--eval-set" in res.output

    store.save_settings("acme", TenantSettings(source=str(src), eval_set=str(eval_set)))
    res = run.invoke(main, ["--model", "hash", "eval", "tenant", "-t", "acme", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    gen = current_id(store.paths("acme"))
    assert out["generation"] == gen and out["metrics"]["ndcg@10"] > 0
    assert out["metrics"] == tenant_quality(store, "acme", gen, hash_embedder)
