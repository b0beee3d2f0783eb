"""Issue 23 (Hardening II), the hosted embedder: lost answers, vector sizes, drift on the query path, settings.

Each test is one probe of the report that failed before the fix, against the fake OpenAI-compatible server
(real HTTP, the real `openai` client): a 502 from a gateway after the provider billed, a client timeout, a
server answering vectors of another size, a provider-side model change seen by `search`, a missing key and
unreadable settings.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ragindex.cli import main
from ragindex.embedders.limits import PROBE_TEXTS
from ragindex import errors
from ragindex.errors import BudgetExceeded, HostedError, ModelDrift
from ragindex.indexing.plan import Budget
from ragindex.indexing.run import reindex
from ragindex.search.searcher import Searcher
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import live_manifest
from tests.support.hosted import MODEL, emb, ledger_runs, stage

CHUNKER = "recursive-200@1"


def cli(*args, dims: str | None = "64"):
    return CliRunner().invoke(main, ["--model", MODEL, *(["--dimensions", dims] if dims else []), *args])


# -- item 11: an answer lost after the provider billed -----------------------------------------------


def test_lost_answers_are_in_the_ledger_as_possibly_billed_so_it_is_never_below_the_provider(store, api, corpus, monkeypatch):
    monkeypatch.setenv("RAGINDEX_API_TIMEOUT_S", "0.5")
    monkeypatch.setenv("RAGINDEX_API_MAX_INPUTS", "4")
    api.behaviour.bad_gateway_every, api.behaviour.timeout_every, api.behaviour.timeout_s = 4, 7, 1.5
    res = reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb())
    lost_at_gateway = [r for r in api.requests if r.status == 502]
    assert lost_at_gateway and all(r.charged for r in lost_at_gateway)  # billed, and the answer never came
    with EmbeddingCache(store.paths("acme").cache, read_only=True) as c:
        totals, lost = c.totals(), c.lost_requests()
    answered = sum(r.billed_tokens for r in api.requests if r.status == 200) - sum(
        r.billed_tokens for i, r in enumerate(api.requests, 1) if i % 7 == 0 and r.status == 200)
    assert totals.tokens_billed == answered < api.billed_tokens()  # what the usage fields said: too low alone
    assert totals.tokens_billed + totals.tokens_possibly_billed >= api.billed_tokens()  # never below the provider
    assert len(lost) >= len(lost_at_gateway) and all(x["request_id"] and x["tokens"] > 0 for x in lost)
    assert sum(x["tokens"] for x in lost) == totals.tokens_possibly_billed
    assert res.ledger["tokens_possibly_billed"] == totals.tokens_possibly_billed


def test_the_budget_counts_possibly_billed_tokens_and_covers_everything_sent(store, api, corpus, monkeypatch):
    monkeypatch.setenv("RAGINDEX_API_MAX_INPUTS", "4")
    api.behaviour.bad_gateway_every = 3
    _, plan = stage(store, "acme", emb(), source=corpus, chunker=CHUNKER)
    budget = plan.total_tokens + 300  # room for a retry or two, not for a third of the requests lost
    with pytest.raises(BudgetExceeded, match="possibly billed"):
        reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb(), budget=Budget(budget))
    assert api.sent_tokens() <= budget  # everything sent, retries included, within the budget
    status = cli("status", "-t", "acme", "--json")
    led = json.loads(status.stdout)["ledger"]
    assert led["tokens_billed"] + led["tokens_possibly_billed"] >= api.billed_tokens()
    assert led["tokens_possibly_billed"] > 0 and led["planned_tokens"] == plan.total_tokens
    human = cli("status", "-t", "acme").output
    assert "possibly billed" in human and "planned" in human


# -- item 15: the dimension of the first answer --------------------------------------------------------


def test_a_wrong_dimension_is_refused_on_the_first_answer_before_the_corpus_is_sent(store, api, corpus):
    api.behaviour.dims = 64  # the server answers 64 dimensions for a model known to give 1,536
    with pytest.raises(HostedError, match=r"64-dimensional.*1536") as refused:
        reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb(None))
    assert isinstance(refused.value, errors.DimensionMismatch)
    assert [r.inputs for r in api.requests] == [list(PROBE_TEXTS)]  # only the probe was paid
    assert sum(r["tokens_billed"] for r in ledger_runs(store, "acme")) == api.billed_tokens()  # and it is in the ledger
    with pytest.raises(HostedError, match="--dimensions 256"):
        reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb(256))
    res = cli("reindex", "-t", "acme", "--source", str(corpus), "--chunker", CHUNKER, dims=None)
    assert res.exit_code == 1 and "64-dimensional" in res.output and "bug" not in res.output
    assert len(api.requests) == 3  # each run: the probe, nothing more


def test_an_unknown_models_dimension_is_adopted_from_its_first_answer(store, api, corpus):
    res = reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb(None, "openai:acme-embed-1"))
    assert res.status == "promoted" and live_manifest(store.paths("acme")).dim == 64
    assert "dimension probe" not in api.billed_texts()  # learnt from the drift probe, not from a request of its own


def test_cached_vectors_of_the_wrong_size_are_never_loaded(store, api, corpus):
    e = emb(None)
    _, plan = stage(store, "acme", e, source=corpus, chunker=CHUNKER)
    hashes = list(plan.to_embed)
    # What an earlier version left behind after a server answered 64 dimensions for this model.
    with EmbeddingCache(store.paths("acme").cache) as c:
        c.start_run("run-old", "acme", CHUNKER, e.fingerprint, "api", plan)
        c.commit_batch("run-old", e.fingerprint, hashes, np.ones((len(hashes), 64), np.float32) / 8, [1] * len(hashes), 0, 0.0, 0.0)
    res = reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=e)
    assert res.plan.texts_to_embed == len(hashes) and res.ledger["texts"] == len(hashes)  # embedded again, not loaded
    assert live_manifest(store.paths("acme")).dim == 1536
    with EmbeddingCache(store.paths("acme").cache, read_only=True) as c:
        assert c.vectors(e.fingerprint, hashes[:3], 1536).shape == (3, 1536)


# -- item 3: a provider-side model change seen by a search ---------------------------------------------


def test_a_search_after_the_provider_changed_the_model_is_refused_until_the_tenant_is_reembedded(store, api, corpus):
    reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb())
    api.behaviour.drift = 1  # the provider swaps the model behind the same name
    before = len(api.requests)
    with pytest.raises(ModelDrift, match="accept-model-drift") as refused:
        Searcher(store, emb()).search("acme", "protein folding", k=3)  # a new process: a new embedder
    assert isinstance(refused.value, errors.ModelDriftError)  # what `ragindex serve` answers 503 for
    assert [r.inputs for r in api.requests[before:]] == [list(PROBE_TEXTS)]  # the query itself was never sent
    res = cli("search", "-t", "acme", "protein folding", "--json")
    assert res.exit_code == 1 and "accept-model-drift" in res.output and "bug" not in res.output
    led = json.loads(cli("status", "-t", "acme", "--json").stdout)["ledger"]
    assert led["tokens_billed"] == api.billed_tokens()  # the searches' probes are in the tenant's ledger
    reindex(store, "acme", source=corpus, chunker=CHUNKER, embedder=emb(), accept_model_drift=True)
    runs = ledger_runs(store, "acme")  # the reindex, the cache's writer, moved the searches' rows into the ledger
    assert sum(1 for r in runs if r["chunker"] == "(search: drift probe)") == 2
    assert not (store.paths("acme").cache.parent / "ledger-pending.jsonl").read_text()
    searcher = Searcher(store, emb())
    assert searcher.search("acme", "protein folding", k=3)
    n = len(api.requests)
    searcher.search("acme", "interest rates", k=3)
    assert len(api.requests) == n + 1  # checked once per process and model epoch: the next search sends its query only


# -- item 22: a missing key, unreadable settings ------------------------------------------------------------


def test_a_hosted_plan_without_a_key_says_so_in_one_line(store, api, corpus, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    res = cli("plan", "-t", "acme", "--source", str(corpus), "--chunker", CHUNKER)
    assert res.exit_code == 1 and "OPENAI_API_KEY" in res.stderr and "bug" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1 and not api.requests


@pytest.mark.parametrize(("variable", "value"), [("RAGINDEX_API_TIMEOUT_S", "soon"), ("RAGINDEX_API_TIMEOUT_S", "nan"),
                                                 ("RAGINDEX_API_TIMEOUT_S", "0"), ("RAGINDEX_API_MAX_INPUTS", "0"),
                                                 ("RAGINDEX_API_CONCURRENCY", "four")])
def test_an_unreadable_api_setting_is_one_line_naming_the_variable(store, api, corpus, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    res = cli("plan", "-t", "acme", "--source", str(corpus), "--chunker", CHUNKER)
    assert res.exit_code == 1 and variable in res.stderr and repr(value) in res.stderr and "bug" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1 and not api.requests
