"""`ragindex serve` as a real process on a free localhost port, called over HTTP.

Auth (keys per tenant, no existence leak), bounds, filters, every mode, a hot swap
during a reindex with no failed request, metrics off by default, OpenAPI docs, graceful shutdown.
The hash embedder keeps it fast; what is tested is the service, not the model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from ragindex.store import keys
from tests.support.data import passage_docs, write_jsonl
from tests.support.http import call


def test_a_key_opens_its_own_tenant_only_and_says_nothing_about_others(server, store):
    base, k = server["base"], server["keys"]
    url = base + "/v1/tenants/{}/search"
    status, body = call(url.format("acme"), {"query": "cancer"}, k["acme"])
    assert status == 200 and body["tenant"] == "acme" and body["hits"] and body["generation"]
    wrong_tenant = call(url.format("globex"), {"query": "cancer"}, k["acme"])
    no_tenant = call(url.format("nobody"), {"query": "cancer"}, k["acme"])
    bad_name = call(url.format("..%2Fglobex"), {"query": "cancer"}, k["acme"])
    assert wrong_tenant == no_tenant == (401, {"detail": "missing or invalid API key for this tenant"})
    assert bad_name[0] in (401, 404)
    assert call(url.format("acme"), {"query": "cancer"})[0] == 401  # no key
    assert call(url.format("acme"), {"query": "cancer"}, k["acme"][:-1] + "x")[0] == 401  # a forged key
    keys.revoke(store, "acme", k["acme"].split("_")[1])
    assert call(url.format("acme"), {"query": "cancer"}, k["acme"])[0] == 401  # revoked: the next request sees it
    assert b"rgx_" not in (store.paths("acme").root / "keys.json").read_bytes()  # only hashes are stored


def test_bounds_are_enforced_with_a_clear_message(server):
    url, key = server["base"] + "/v1/tenants/acme/search", server["keys"]["acme"]
    assert call(url, {"query": "x" * 2001}, key) == (413, {"detail": "query of 2001 characters; the limit is 2000"})
    status, body = call(url, {"query": "cancer", "k": 0}, key)
    assert status == 422 and "greater than or equal to 1" in json.dumps(body)
    assert call(url, {"query": "cancer", "k": 101}, key)[0] == 422
    status, body = call(server["base"] + "/v1/tenants/acme/search/batch", {"queries": ["q"] * 65}, key)
    assert status == 413 and "limit is 64" in body["detail"]


def test_every_mode_and_the_batch_form(server):
    url, key = server["base"] + "/v1/tenants/acme", server["keys"]["acme"]
    title = server["docs"][10]["title"]
    for mode in ("dense", "bm25", "hybrid"):
        status, body = call(url + "/search", {"query": title, "k": 3, "mode": mode}, key)
        assert status == 200 and body["mode"] == mode and len(body["hits"]) == 3
        assert set(body["hits"][0]) == {"rank", "score", "doc_id", "chunk_id", "start", "end", "text", "heading_path",
                                        "page", "page_end"}
    status, body = call(url + "/search/batch", {"queries": [title, "million"], "k": 2, "mode": "bm25"}, key)
    assert status == 200 and [len(r) for r in body["results"]] == [2, 2]
    assert body["results"][0][0]["doc_id"] == server["docs"][10]["_id"]


def test_filters_apply_inside_the_search(server):
    # Words that BM25 finds in more than 8 of the 15 documents the filter lets through (the passages mix
    # five corpora, so no single word is in enough of them), so every mode can fill k with matches.
    QUERY = "million people used power during years"
    url, key = server["base"] + "/v1/tenants/acme/search", server["keys"]["acme"]
    for mode in ("dense", "bm25", "hybrid"):
        status, body = call(url, {"query": QUERY, "k": 8, "mode": mode, "filter": {"team": "bio", "year": {">": 2010}}}, key)
        assert status == 200 and len(body["hits"]) == 8  # k matches, not the matches among the top k
        ok = {d["_id"] for d in server["docs"][:40] if d["metadata"]["team"] == "bio" and d["metadata"]["year"] > 2010}
        assert {h["doc_id"] for h in body["hits"]} <= ok
    status, body = call(url, {"query": "cells", "filter": {"year": {"between": 1}}}, key)
    assert status == 422 and "unknown operator" in body["detail"]


def test_a_promotion_is_picked_up_without_a_failed_request(server, store):
    url, key = server["base"] + "/v1/tenants/acme/search", server["keys"]["acme"]
    before = call(url, {"query": "cancer"}, key)[1]["generation"]
    stop, seen, failures = threading.Event(), set(), []

    def hammer():
        while not stop.is_set():
            status, body = call(url, {"query": "protein folding", "mode": "hybrid"}, key)
            if status != 200:
                failures.append((status, body))
            else:
                seen.add(body["generation"])

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    more = write_jsonl(server["sources"]["acme"].with_name("more.jsonl"), passage_docs(70)[:50])
    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_MODEL": "hash"}
    env.pop("DAGSTER_HOME", None)
    done = subprocess.run([sys.executable, "-m", "ragindex.cli", "reindex", "-t", "acme", "--source", str(more), "--json"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = json.loads(done.stdout)["generation"]
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert not failures and {before, after} <= seen
    assert call(url, {"query": "cancer"}, key)[1]["generation"] == after


def test_metrics_docs_and_health(server):
    key = server["keys"]["acme"]
    call(server["base"] + "/v1/tenants/acme/search", {"query": "cancer"}, key)
    status, body = call(server["base"] + "/metrics")  # off without --metrics-token (tests/serve/test_hardening.py)
    assert status == 404 and "--metrics-token" in body["detail"]
    assert call(server["base"] + "/healthz") == (200, {"status": "ok"})
    assert call(server["base"] + "/docs")[0] == 200
    spec = call(server["base"] + "/openapi.json")[1]
    assert spec["paths"]["/v1/tenants/{tenant}/search"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "/metrics" not in spec["paths"]


def test_sigterm_lets_requests_in_flight_finish(server):
    url, key = server["base"] + "/v1/tenants/acme/search/batch", server["keys"]["acme"]
    results = []

    def ask():
        for _ in range(3):
            try:
                status = call(url, {"queries": ["cancer cells protein"] * 64, "mode": "hybrid", "k": 100}, key)[0]
            except OSError:  # sent after the server stopped listening: refused, never half-answered
                return
            results.append((status, time.monotonic()))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    sent = time.monotonic()
    server["proc"].send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    answered_after = [s for s, t in results if t > sent]
    # uvicorn shuts down gracefully, then re-raises the signal it caught, as a process ended by SIGTERM should.
    assert server["proc"].wait(timeout=30) in (0, -signal.SIGTERM)
    assert answered_after and all(s == 200 for s in answered_after)  # requests in flight at SIGTERM were answered
