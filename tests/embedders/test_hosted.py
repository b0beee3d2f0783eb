"""Hosted embedding APIs against a fake OpenAI-compatible server on localhost (real HTTP, the real `openai` client).

What each test proves: the plan equals what the API bills; requests stay under the provider's limits; 429
storms, 5xx and timeouts are retried; a 400 is not; a quota error, Ctrl-C or a SIGKILL loses nothing that
was billed and the next run sends none of it again; a provider-side model change is refused; the API key
never reaches a file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from ragindex.cli import main
from ragindex.embedders.limits import PROBE_TEXTS, HostedError, InputTooLong, ModelDrift, QuotaExceeded
from ragindex.indexing.run import reindex
from ragindex.search.searcher import Searcher
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import live_manifest
from tests.support.data import passage_docs, write_jsonl
from tests.support.hosted import KEY, MODEL, PRICE, billed_once, cli_env, emb


def first_chunk(source, doc_id: str) -> str:
    """The text of ``doc_id``'s first chunk as the pipeline cuts it (recursive-200@1). The fake API seeds a
    vector by its text, so a query of exactly that text finds that chunk first only if it was embedded by the
    same model, through the same API."""
    from ragindex.chunkers import build_chunker
    from ragindex.ingest.sources import read_source
    from ragindex.schemas import SchemaRegistry

    doc = next(d for d in read_source(source).documents if d.doc_id == doc_id)
    span = build_chunker(SchemaRegistry().get("recursive-200@1").spec).chunk(doc.text)[0]
    return doc.text[span.start : span.end]


def test_a_run_through_the_api_bills_exactly_the_plan(store, api, corpus):
    e = emb()
    res = reindex(store, "acme", source=corpus, chunker="recursive-200@1", embedder=e)
    led = res.ledger
    counts = billed_once(api)
    assert max(counts.values()) == 1 and len(counts) == res.plan.texts_to_embed  # every text once, and only once
    assert led["tokens_billed"] == api.billed_tokens() == res.plan.tokens_to_embed + res.plan.probe_tokens
    assert led["billed_vs_planned"] == {"planned": led["tokens_billed"], "billed": led["tokens_billed"], "difference": 0,
                                        "differs": False}
    assert led["cost_usd"] == pytest.approx(led["tokens_billed"] / 1e6 * PRICE)
    assert res.plan.cost_usd == pytest.approx((res.plan.tokens_to_embed + res.plan.probe_tokens) / 1e6 * PRICE)
    assert led["probe"]["status"] == "stored" and led["requests"] == len(api.billed())
    query = first_chunk(corpus, passage_docs(40)[3]["_id"])
    hits = Searcher(store, e).search("acme", query, k=3)
    assert hits and (hits[0].doc_id, hits[0].text) == (passage_docs(40)[3]["_id"], query)  # the query went through the API too
    again = reindex(store, "acme", source=corpus, chunker="recursive-200@1", embedder=e)
    assert again.status == "unchanged" and len(api.billed()) == led["requests"] + 1  # + the search above


def test_requests_stay_under_the_provider_limits(store, api, corpus, monkeypatch):
    monkeypatch.setenv("RAGINDEX_API_MAX_INPUTS", "7")
    monkeypatch.setenv("RAGINDEX_API_MAX_REQUEST_TOKENS", "1500")
    api.behaviour.max_inputs, api.behaviour.max_request_tokens = 7, 1500
    reindex(store, "acme", source=corpus, chunker="recursive-200@1", embedder=emb())
    assert all(r.status == 200 for r in api.requests)  # the server refused nothing
    assert all(len(r.inputs) <= 7 and r.billed_tokens <= 1500 for r in api.requests)
    assert max(billed_once(api).values()) == 1


def test_an_input_over_the_limit_is_refused_before_anything_is_sent(store, api, corpus, monkeypatch):
    monkeypatch.setenv("RAGINDEX_API_MAX_INPUT_TOKENS", "120")
    res = CliRunner().invoke(main, ["--model", MODEL, "--dimensions", "64", "plan", "-t", "acme", "--source", str(corpus),
                                    "--chunker", "recursive-200@1", "--json"])
    plan = json.loads(res.stdout)
    assert plan["truncated_to_embed"] > 0 and plan["max_input_tokens"] == 120
    with pytest.raises(InputTooLong, match="never silently truncated"):
        reindex(store, "acme", source=corpus, chunker="recursive-200@1", embedder=emb())
    assert [r.inputs for r in api.requests] == [list(PROBE_TEXTS)]  # only the probe was ever sent


def test_429_storms_500s_and_timeouts_are_retried(store, api, corpus, monkeypatch):
    monkeypatch.setenv("RAGINDEX_API_TIMEOUT_S", "0.5")
    monkeypatch.setenv("RAGINDEX_API_MAX_INPUTS", "4")
    api.behaviour.rate_429, api.behaviour.rate_500, api.behaviour.retry_after_s = 0.3, 0.25, 0.05
    api.behaviour.timeout_every, api.behaviour.timeout_s = 7, 1.5
    res = reindex(store, "acme", source=corpus, chunker="recursive-200@1", embedder=emb())
    statuses = Counter(r.status for r in api.requests)
    assert statuses[429] > 0 and statuses[500] > 0
    timed_out = {t for i, r in enumerate(api.requests, 1) if i % 7 == 0 and r.status == 200 for t in r.inputs}
    twice = {t for t, n in billed_once(api).items() if n > 1}
    assert twice <= timed_out  # only a request the client gave up on (the provider billed it anyway) is paid twice
    with EmbeddingCache(store.paths("acme").cache, read_only=True) as c:
        assert c.stats()["vectors"] == res.plan.texts_to_embed


def test_the_client_keeps_under_the_tokens_per_minute_limit(store, api, corpus, monkeypatch):
    monkeypatch.setenv("RAGINDEX_API_MAX_INPUTS", "8")
    monkeypatch.setenv("RAGINDEX_API_TPM", "120000")
    api.behaviour.tpm, api.behaviour.bucket_s = 120_000, 2.0  # 2,000 tokens/s, two seconds of burst
    t0 = time.monotonic()
    res = reindex(store, "acme", source=corpus, chunker="recursive-200@1", embedder=emb())
    wall = time.monotonic() - t0
    assert not [r for r in api.requests if "tokens per min" in r.reason]  # the server never had to say no
    assert res.ledger["tokens_billed"] / wall <= 2_000 * 1.0 + 4_000 / wall  # rate + the bucket's burst


def test_a_400_is_not_retried_and_names_the_request(store, api, corpus, monkeypatch):
    api.behaviour.max_inputs = 9  # the server is stricter than the client believes (the probe's 8 still pass)
    monkeypatch.setenv("RAGINDEX_API_MAX_INPUTS", "10")
    with pytest.raises(HostedError, match=r"rejected a request of 10 texts .*too long.*not retried"):
        reindex(store, "acme", source=corpus, chunker="recursive-200@1", embedder=emb())
    rejected = [tuple(r.inputs) for r in api.requests if r.status == 400]
    assert rejected and len(rejected) == len(set(rejected)) <= 4  # each request in flight once: none was retried


def test_an_exhausted_quota_keeps_what_was_billed(store, api, corpus, monkeypatch):
    monkeypatch.setenv("RAGINDEX_API_MAX_INPUTS", "8")
    monkeypatch.setenv("RAGINDEX_API_CONCURRENCY", "3")
    api.behaviour.quota_after_tokens = 4000
    with pytest.raises(QuotaExceeded, match="what was embedded before is saved"):
        reindex(store, "acme", source=corpus, chunker="recursive-200@1", embedder=emb())
    paid = set(billed_once(api))
    with EmbeddingCache(store.paths("acme").cache, read_only=True) as c:
        assert c.stats()["vectors"] == len(paid) > 0  # every billed vector was saved
        assert c.runs()[-1]["tokens_billed"] == api.billed_tokens()
    api.behaviour.quota_after_tokens = None
    reindex(store, "acme", source=corpus, chunker="recursive-200@1", embedder=emb())
    assert max(billed_once(api).values()) == 1  # the second run sent none of them again


@pytest.mark.slow
def test_a_killed_run_resumes_without_resending_what_was_billed(store, api, corpus):
    args = [sys.executable, "-m", "ragindex.cli", "reindex", "-t", "acme", "--source", str(corpus), "--chunker", "recursive-200@1"]
    killed = subprocess.run(args, env=cli_env(store, api, RAGINDEX_FAULT="mid-embedding", RAGINDEX_API_CONCURRENCY="1",
                                               RAGINDEX_API_MAX_INPUTS="8"), capture_output=True, text=True)
    assert killed.returncode == -9
    first = len(billed_once(api))
    done = subprocess.run(args, env=cli_env(store, api, RAGINDEX_API_MAX_INPUTS="8"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    counts = billed_once(api)
    assert max(counts.values()) == 1 and len(counts) > first


@pytest.mark.slow
def test_ctrl_c_waits_for_requests_in_flight_and_saves_them(store, api, corpus):
    api.behaviour.latency_s = 0.4
    args = [sys.executable, "-m", "ragindex.cli", "reindex", "-t", "acme", "--source", str(corpus), "--chunker", "recursive-200@1"]
    # Ctrl-C in a terminal: SIGINT at its default disposition. A runner started in the background
    # (`cmd &` in a script) hands its children SIGINT *ignored*, and Python then never raises
    # KeyboardInterrupt, so the child is given the terminal's disposition explicitly.
    proc = subprocess.Popen(args, env=cli_env(store, api, RAGINDEX_API_CONCURRENCY="4", RAGINDEX_API_MAX_INPUTS="4"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and len(api.billed()) < 6:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, f"the run was not interrupted: {out[-500:]} {err[-500:]}"
    paid = set(billed_once(api))
    with EmbeddingCache(store.paths("acme").cache, read_only=True) as c:
        assert c.stats()["vectors"] == len(paid)  # the requests in flight at Ctrl-C were saved too
    api.behaviour.latency_s = 0
    done = subprocess.run(args, env=cli_env(store, api), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert max(billed_once(api).values()) == 1


def test_a_provider_side_model_change_is_refused_then_accepted(store, api, corpus, tmp_path):
    e = emb()
    reindex(store, "acme", source=corpus, chunker="recursive-200@1", embedder=e)
    api.behaviour.drift = 1  # the provider swaps the model behind the same name
    more = write_jsonl(tmp_path / "more.jsonl", passage_docs(45))
    before = len(api.requests)
    with pytest.raises(ModelDrift, match="accept-model-drift"):
        reindex(store, "acme", source=more, chunker="recursive-200@1", embedder=e)
    assert [r.inputs for r in api.requests[before:]] == [list(PROBE_TEXTS)]  # only the probe: no new text was mixed in
    res = reindex(store, "acme", source=more, chunker="recursive-200@1", embedder=e, accept_model_drift=True)
    m = live_manifest(store.paths("acme"))
    assert m.embedder_epoch == 1 and "embedding model" in res.plan.rebuild
    assert res.ledger["texts"] == res.plan.unique_texts  # a new key space: everything embedded by the new model
    query = first_chunk(more, passage_docs(45)[42]["_id"])
    hits = Searcher(store, e).search("acme", query, k=3)
    assert (hits[0].doc_id, hits[0].text) == (passage_docs(45)[42]["_id"], query)  # the query: the new model's vector


def test_the_api_key_never_reaches_a_file_or_the_output(store, api, corpus):
    runner = CliRunner()
    outputs = [runner.invoke(main, ["--model", MODEL, "--dimensions", "64", *args]).output for args in (
        ["reindex", "-t", "acme", "--source", str(corpus), "--chunker", "recursive-200@1", "--json"],
        ["status", "-t", "acme", "--json"], ["search", "-t", "acme", "cancer", "--json"],
        ["plan", "-t", "acme", "--source", str(corpus), "--chunker", "recursive-200@1", "--json"])]
    assert all(KEY not in o and "SECRET" not in o for o in outputs)
    for f in store.root.rglob("*"):
        if f.is_file():
            assert b"SECRET" not in f.read_bytes(), f
    status = json.loads(outputs[1])
    month = status["spend_by_month"][0]
    search = api.billed()[-2:]  # after status: the search's drift probe (a new process checks once), then its query
    assert search[0].inputs == list(PROBE_TEXTS) and search[1].inputs == ["cancer"]
    assert month["tokens_billed"] == api.billed_tokens() - sum(r.billed_tokens for r in search)
    assert month["cost_usd"] == pytest.approx(month["tokens_billed"] / 1e6 * PRICE)


def test_an_unknown_price_cannot_pass_a_money_budget(store, api, corpus, monkeypatch):
    monkeypatch.delenv("RAGINDEX_PRICE_OVERRIDES")
    monkeypatch.setenv("RAGINDEX_PRICE_OVERRIDES", str(store.root / "none.toml"))
    res = CliRunner().invoke(main, ["--model", MODEL, "--dimensions", "64", "reindex", "-t", "acme", "--source", str(corpus),
                                    "--chunker", "recursive-200@1", "--max-cost", "1"])
    assert res.exit_code == 3 and "cannot be checked" in res.output and "add it to" in res.output
    assert not api.requests
