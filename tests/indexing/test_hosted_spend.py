"""Issue 23 (Hardening II), a paid model's spend: everything sent goes through the plan, the budget and the ledger.

Each test is one probe of the report that failed before the fix, against the fake OpenAI-compatible server:
the drift probe outside the budget and the ledger (item 16), a tenant's eval-set queries embedded outside all
three by the quality gate (item 12), and `plan --accept-model-drift` (item 25).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from ragindex.cli import main
from ragindex.embedders.limits import PROBE_TEXTS, ModelDrift
from ragindex.indexing.plan import Budget
from ragindex.indexing.run import BudgetExceeded, reindex
from ragindex.store.tenants import TenantSettings
from tests.support.data import chroma_beir, passage_docs, write_beir, write_jsonl
from tests.support.hosted import MODEL, emb, ledger_runs, stage
from tests.support.tenants import register

CHUNKER = "recursive-200@1"


@pytest.fixture
def corpus(tmp_path):
    return write_jsonl(tmp_path / "c.jsonl", passage_docs(40))


def spent(runs: list[dict]) -> int:
    """Tokens the ledger says were billed or possibly billed."""
    return sum(int(r["tokens_billed"]) + int(r.get("tokens_possibly_billed") or 0) for r in runs)


# -- item 16: the drift probe -----------------------------------------------------------------------------


def test_the_probe_is_planned_budgeted_and_in_the_ledger_of_every_run_that_sends_it(store, api, corpus, tmp_path):
    _, plan = stage(store, "acme", emb(), source=corpus, chunker=CHUNKER)
    assert plan.probe_tokens > 0 and plan.total_tokens == plan.tokens_to_embed + plan.probe_tokens
    with pytest.raises(BudgetExceeded):
        reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb(), budget=Budget(plan.total_tokens - 1))
    assert not api.requests  # refused for budget reasons: nothing was sent
    res = reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb(), budget=Budget(plan.total_tokens))
    assert api.billed_tokens() == plan.total_tokens == res.ledger["tokens"] + res.ledger["probe_tokens"]  # the budget was the bill
    assert spent(ledger_runs(store, "acme")) == api.billed_tokens()

    api.behaviour.drift = 1
    more = write_jsonl(tmp_path / "more.jsonl", passage_docs(45))
    with pytest.raises(ModelDrift):
        reindex(store, "acme", source=more, chunker=CHUNKER, embedder=emb())
    runs = ledger_runs(store, "acme")
    assert runs[-1]["status"] == "refused" and runs[-1]["probe_tokens"] == plan.probe_tokens
    assert spent(runs) == api.billed_tokens()  # the refused run's probe has its ledger row

    sent = len(api.requests)
    with pytest.raises(BudgetExceeded):
        reindex(store, "acme", source=more, chunker=CHUNKER, embedder=emb(), budget=Budget(1), accept_model_drift=True)
    assert len(api.requests) == sent  # over budget with --accept-model-drift: not even the probe


def test_an_accepted_drift_sends_the_probe_once(store, api, corpus):
    reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb())
    api.behaviour.drift = 1
    sent = len(api.requests)
    reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb(), accept_model_drift=True)
    assert sum(1 for r in api.requests[sent:] if r.inputs == list(PROBE_TEXTS)) == 1


def test_an_accepted_drift_that_did_not_happen_pays_only_for_what_changed(store, api, corpus, tmp_path):
    reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb())
    more = write_jsonl(tmp_path / "more.jsonl", passage_docs(45))
    _, plain = stage(store, "acme", emb(), source=more, chunker=CHUNKER)
    _, assumed = stage(store, "acme", emb(), source=more, chunker=CHUNKER, accept_model_drift=True)
    assert assumed.total_tokens > plain.total_tokens  # the plan assumes the worst: everything embedded again
    sent = len(api.requests)
    res = reindex(store, "acme", source=more, chunker=CHUNKER, embedder=emb(), accept_model_drift=True)
    assert res.ledger["texts"] == plain.texts_to_embed and res.plan.rebuild is None  # the probe found no drift
    assert api.billed_tokens() - sum(r.billed_tokens for r in api.requests[:sent]) == plain.total_tokens
    assert sum(1 for r in api.requests[sent:] if r.inputs == list(PROBE_TEXTS)) == 1


# -- item 12: the eval set's queries ------------------------------------------------------------------------


@pytest.fixture
def eval_tenant(store, tmp_path, corpus):
    docs = passage_docs(40)
    queries, qrels = chroma_beir(docs)
    assert qrels  # some of the chunking set's questions are about these passages
    eval_set = write_beir(tmp_path / "eval", docs, queries, qrels)
    register(store, "acme", TenantSettings(source=str(corpus), chunker=CHUNKER, eval_set=str(eval_set), model=MODEL,
                                           dimensions=64, mode="dense"))
    return [queries[q] for q in qrels]


def test_eval_queries_are_planned_budgeted_ledgered_and_cached(store, api, corpus, eval_tenant, tmp_path):
    queries = eval_tenant
    _, plan = stage(store, "acme", emb())
    assert plan.eval_texts_to_embed == len(set(queries)) and plan.eval_tokens_to_embed > 0
    assert plan.total_tokens == plan.tokens_to_embed + plan.eval_tokens_to_embed + plan.probe_tokens
    with pytest.raises(BudgetExceeded):
        reindex(store, "acme", embedder=emb(), budget=Budget(plan.total_tokens - 1))
    assert not api.requests
    res = reindex(store, "acme", embedder=emb(), budget=Budget(plan.total_tokens))
    assert res.status == "promoted" and "eval_recall@10" in res.gates[-1].metadata  # the gate scored them
    assert api.billed_tokens() == plan.total_tokens and spent(ledger_runs(store, "acme")) == api.billed_tokens()

    edited = passage_docs(40)
    edited[0] = {**edited[0], "text": edited[0]["text"] + " One more sentence, so the next run commits."}
    write_jsonl(corpus, edited)
    again = reindex(store, "acme", embedder=emb())
    assert again.status == "promoted" and again.plan.eval_texts_to_embed == 0  # both generations scored from the cache
    billed = Counter(api.billed_texts())
    assert all(billed[q] == 1 for q in queries)  # no query was paid twice
    assert spent(ledger_runs(store, "acme")) == api.billed_tokens()
    assert not (store.root / "eval" / "tenant-acme").exists()  # no cache beside the tenant's own


# -- item 25: plan --accept-model-drift -----------------------------------------------------------------------


def test_plan_accept_model_drift_shows_what_the_accept_run_embeds(store, api, corpus, tmp_path):
    reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb())
    api.behaviour.drift = 1
    more = write_jsonl(tmp_path / "more.jsonl", passage_docs(45))
    sent = len(api.requests)
    out = CliRunner().invoke(main, ["--model", MODEL, "--dimensions", "64", "plan", "-t", "acme", "--source", str(more),
                                    "--chunker", CHUNKER, "--accept-model-drift", "--json"])
    assert out.exit_code == 0, out.output
    plan = json.loads(out.stdout)
    assert len(api.requests) == sent  # planning sent nothing
    assert "embedding model" in plan["rebuild"] and plan["texts_to_embed"] == plan["unique_texts"]
    res = reindex(store, "acme", source=more, chunker=CHUNKER, embedder=emb(), accept_model_drift=True)
    assert plan["total_tokens"] == res.ledger["tokens"] + res.ledger["probe_tokens"] == api.billed_tokens() - sum(
        r.billed_tokens for r in api.requests[:sent])
    assert plan["texts_to_embed"] == res.ledger["texts"]
