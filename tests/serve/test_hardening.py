"""`ragindex serve` against hostile and broken input (Hardening II, items 6, 7, 10, 17 and 19).

The key is checked before a body is read and bodies are bounded (6); /metrics needs its own
token and names no tenant unless told to (7); filter lists are bounded (10); a lone surrogate,
a NaN and an embedding API that is down get 422 / 422 / 503, never a 500 (17); a port in use
is exit 1 with the reason, not exit 3, "over budget" (19). Wire-level behaviour (what is read,
when the server answers, its memory) runs against a real process; the rest in process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from ragindex.api import Ragindex
from ragindex.embedders.registry import EmbedderConfig
from ragindex.indexing.run import reindex
from ragindex.search.filters import MAX_LIST_VALUES
from ragindex.serve.app import create_app
from ragindex.serve.guard import MAX_BODY_BYTES
from ragindex.store import keys
from tests.support.data import passage_docs, write_jsonl
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.http import call, free_port, serving

MB = 1 << 20
SEARCH = "/v1/tenants/acme/search"


# -- helpers: raw HTTP on a socket (bodies too big or too slow for a normal client), and the server's memory --------


def exchange(base: str, head: str, body=(), wait_s: float = 20.0) -> tuple[int, str, int]:
    """Send ``head`` (request line and headers) and then ``body`` (an iterable of bytes) from a second thread, while
    this one reads the answer: (status, answer text, body bytes the server let us send before it answered and closed).
    An answer that comes before the body is sent was given without reading it."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=wait_s)
    sent = [0]

    def send() -> None:
        try:
            sock.sendall(head.encode("latin-1"))
            for chunk in body:
                sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:  # the server answered and closed the connection: the rest is not wanted
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:  # the server closed on an unread body: what it sent before still counts
                piece = b""
            if not piece:
                break
            answer += piece
    finally:
        sock.close()
        sender.join(timeout=wait_s)
    status_line, _, rest = answer.decode("latin-1").partition("\r\n")
    return int(status_line.split()[1]), rest, sent[0]


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def post_head(path: str, key: str | None = None, length: int | None = None) -> str:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{auth}{framing}\r\n\r\n"


def pieces(total: int, size: int = 64 * 1024):
    for _ in range(total // size):
        yield b"x" * size


def chunked(*parts: bytes):
    for p in parts:
        yield f"{len(p):x}\r\n".encode() + p + b"\r\n"
    yield b"0\r\n\r\n"


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@contextmanager
def client(store, **options):
    """The app in process over ``store`` with the hash model; 500s come back as answers, not exceptions."""
    with TestClient(create_app(Ragindex(store.root, model="hash"), **options), raise_server_exceptions=False) as c:
        yield c


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


# -- 6: the key before the body, and bodies bounded -----------------------------------------------------------------


def test_an_unauthenticated_body_is_refused_before_it_is_read_and_costs_no_memory(server):
    base, pid = server["base"], server["proc"].pid
    assert call(base + SEARCH, {"query": "cancer"}, server["keys"]["acme"])[0] == 200  # warm: the tenant is loaded
    before = rss_bytes(pid)
    for key in (None, server["keys"]["globex"], "rgx_00000000_" + "A" * 43):  # no key, another tenant's, a forged one
        # 400 MB announced, at most 64 MB sent: the answer can only come first if the body is never read.
        status, text, sent = exchange(base, post_head(SEARCH, key, length=400 * MB), pieces(64 * MB))
        assert status == 401 and "missing or invalid API key for this tenant" in text
        assert sent < 64 * MB
    grown = rss_bytes(pid) - before
    assert grown < 48 * MB, f"the server grew by {grown / MB:.0f} MB answering three 401s"


def test_bodies_over_the_bound_get_413_whether_announced_or_chunked(server):
    base, key = server["base"], server["keys"]["acme"]
    # Announced: refused on the header alone, before any body is sent.
    status, text, _ = exchange(base, post_head(SEARCH, key, length=MAX_BODY_BYTES + 1))
    assert status == 413 and f"the limit is {MAX_BODY_BYTES} bytes" in text
    # Chunked (no Content-Length): a valid JSON body the old server answered 200, refused once it passes the bound.
    padding = list(pieces(2 * MB))
    status, text, _ = exchange(base, post_head(SEARCH, key), chunked(b'{"query": "cancer", "pad": "', *padding, b'"}'))
    assert status == 413 and f"the limit is {MAX_BODY_BYTES} bytes" in text
    # Under the bound, chunked, it is an ordinary request.
    status, text, _ = exchange(base, post_head(SEARCH, key), chunked(b'{"query": "cancer",', b' "k": 2}'))
    assert status == 200 and len(json.loads(text.split("\r\n\r\n", 1)[1])["hits"]) == 2


def test_the_body_bound_is_configurable(store, tenants):
    with client(store, max_body_bytes=4096) as c:
        ok = json.dumps({"query": "cancer", "pad": "x" * 3000})
        too_big = json.dumps({"query": "cancer", "pad": "x" * 5000})
        assert c.post(SEARCH, content=ok, headers=auth(tenants["keys"]["acme"])).status_code == 200
        r = c.post(SEARCH, content=too_big, headers=auth(tenants["keys"]["acme"]))
        assert r.status_code == 413 and r.json() == {"detail": f"request body of {len(too_big)} bytes; the limit is 4096 bytes"}


# -- 7: /metrics behind its own token, no tenant names unless asked ------------------------------------------------


def test_metrics_are_off_without_a_token_and_need_it_when_on(store, tenants):
    with client(store) as c:
        r = c.get("/metrics")
        assert r.status_code == 404 and "--metrics-token" in r.json()["detail"]
    with client(store, metrics_token="m3trics") as c:
        gen = c.post(SEARCH, json={"query": "cancer"}, headers=auth(tenants["keys"]["acme"])).json()["generation"]
        assert c.post(SEARCH, json={"query": "cancer"}).status_code == 401
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/metrics", headers={"Authorization": f"Bearer {tenants['keys']['acme']}"}).status_code == 401
        r = c.get("/metrics", headers={"Authorization": "Bearer m3trics"})
        assert r.status_code == 200 and 'ragindex_requests_total{mode="dense",status="200"} 1.0' in r.text
        assert 'ragindex_requests_total{mode="-",status="401"} 1.0' in r.text  # the Guard's refusals count too
        assert "ragindex_request_seconds_bucket" in r.text and "ragindex_generation_switches_total 1.0" in r.text
        assert "acme" not in r.text and gen not in r.text and "tenant=" not in r.text  # no tenant, no generation id


def test_tenant_labels_only_when_asked(store, tenants):
    with client(store, metrics_token="m3trics", metrics_tenant_labels=True) as c:
        gen = c.post(SEARCH, json={"query": "cancer"}, headers=auth(tenants["keys"]["acme"])).json()["generation"]
        text = c.get("/metrics", headers={"Authorization": "Bearer m3trics"}).text
        assert 'ragindex_requests_total{mode="dense",status="200",tenant="acme"} 1.0' in text
        assert f'ragindex_generation_served{{generation="{gen}",tenant="acme"}} 1.0' in text


def test_the_serve_options_come_from_the_environment(store, tenants, monkeypatch):
    monkeypatch.setenv("RAGINDEX_METRICS_TOKEN", "m3trics")
    monkeypatch.setenv("RAGINDEX_METRICS_TENANT_LABELS", "1")
    monkeypatch.setenv("RAGINDEX_MAX_BODY_BYTES", "4096")
    with serving(store.root) as (base, _):
        assert call(base + SEARCH, {"query": "cancer", "pad": "x" * 5000}, tenants["keys"]["acme"])[0] == 413
        assert call(base + SEARCH, {"query": "cancer"}, tenants["keys"]["acme"])[0] == 200
        assert call(base + "/metrics")[0] == 401
        status, text = call(base + "/metrics", key="m3trics")
        assert status == 200 and 'tenant="acme"' in text


# -- 10: filter lists bounded --------------------------------------------------------------------------------------


def test_a_huge_filter_list_gets_422_with_the_limit(store, tenants):
    with client(store) as c:
        r = c.post(SEARCH, json={"query": "cancer", "filter": {"year": {"in": list(range(MAX_LIST_VALUES + 1))}}},
                   headers=auth(tenants["keys"]["acme"]))
        assert r.status_code == 422 and f"at most {MAX_LIST_VALUES} values" in r.json()["detail"]
        r = c.post(SEARCH, json={"query": "cancer", "filter": {"year": {"in": list(range(MAX_LIST_VALUES))}}},
                   headers=auth(tenants["keys"]["acme"]))
        assert r.status_code == 200
        r = c.post(SEARCH, json={"query": "cancer", "filter": {"year": {"in": list(range(200_000))}}},
                   headers=auth(tenants["keys"]["acme"]))
        assert r.status_code == 413  # 200,000 values do not even fit the body bound


# -- 17: 422 and 503 instead of 500 --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["dense", "hybrid", "bm25"])
def test_a_lone_surrogate_is_422_in_every_mode(store, tenants, mode):
    with client(store) as c:
        h = auth(tenants["keys"]["acme"])
        r = c.post(SEARCH, content=f'{{"query": "\\ud800 abc", "mode": "{mode}"}}', headers=h)
        assert r.status_code == 422 and r.json() == {"detail": "query is not valid text: a lone surrogate at character 0"}
        r = c.post(SEARCH + "/batch", content=f'{{"queries": ["fine", "abc \\udfff"], "mode": "{mode}"}}', headers=h)
        assert r.status_code == 422 and r.json()["detail"] == "query 2 is not valid text: a lone surrogate at character 4"


@pytest.mark.parametrize("body", ['{"query": "cancer", "k": NaN}', '{"query": "cancer", "k": Infinity}',
                                  '{"query": NaN}', '{"queries": ["\\ud800"], "k": -Infinity}'])
def test_non_finite_numbers_and_odd_strings_get_a_readable_422(store, tenants, body):
    with client(store) as c:
        path = SEARCH + "/batch" if "queries" in body else SEARCH
        r = c.post(path, content=body, headers=auth(tenants["keys"]["acme"]))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "body"


MODEL = "openai:text-embedding-3-small"


def test_a_hosted_tenant_answers_503_with_the_reason_while_the_embedding_api_is_down(store, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    monkeypatch.setenv("RAGINDEX_API_TIMEOUT_S", "2")
    monkeypatch.setenv("RAGINDEX_API_MAX_ATTEMPTS", "1")
    with FakeOpenAI(Behaviour()) as api:
        monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
        source = write_jsonl(tmp_path / "c.jsonl", passage_docs(20))
        reindex(store, "hosted", source=source, chunker="recursive-200@1", embedder=EmbedderConfig(MODEL, dimensions=64).build())
        key = keys.create(store, "hosted")[0]
        url = "/v1/tenants/hosted/search"
        with TestClient(create_app(Ragindex(store.root, model=MODEL, dimensions=64)), raise_server_exceptions=False) as c:
            assert c.post(url, json={"query": "cancer"}, headers=auth(key)).status_code == 200
            api.behaviour.rate_500 = 1.0  # the API answers 500 to everything
            for mode in ("dense", "hybrid"):
                r = c.post(url, json={"query": "cancer", "mode": mode}, headers=auth(key))
                assert r.status_code == 503 and r.json()["detail"].startswith("the embedding API is unavailable; retry later (")
                assert "InternalServerError" in r.json()["detail"] and "sk-test" not in r.text
            assert c.post(url, json={"query": "cancer", "mode": "bm25"}, headers=auth(key)).status_code == 200  # no model needed
    with TestClient(create_app(Ragindex(store.root, model=MODEL, dimensions=64)), raise_server_exceptions=False) as c:
        r = c.post(url, json={"query": "cancer"}, headers=auth(key))  # the API is gone altogether: connection refused
        assert r.status_code == 503 and "APIConnectionError" in r.json()["detail"]


# -- 19: a port that cannot be bound ---------------------------------------------------------------------------------


def serve_cli(*args: str, model: str = "hash") -> subprocess.CompletedProcess:
    env = {**os.environ, "RAGINDEX_MODEL": model}
    return subprocess.run([sys.executable, "-m", "ragindex.cli", "serve", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_port_in_use_or_a_foreign_address_is_exit_1_with_the_reason():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve_cli("--port", str(port))
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"error: cannot listen on 127.0.0.1:{port}: address already in use"
    done = serve_cli("--host", "192.0.2.1", "--port", str(free_port()))  # TEST-NET-1: never this machine's address
    assert done.returncode == 1 and "error: cannot listen on 192.0.2.1:" in done.stderr
    assert "bug" not in done.stderr and "budget" not in done.stderr


def test_a_model_that_fails_to_load_is_its_own_error_not_exit_3(tmp_path):
    done = serve_cli("--port", str(free_port()), model=str(tmp_path / "no-such-model"))
    assert done.returncode == 1  # uvicorn's own startup failure is exit 3, which the CLI means "over budget"
    assert done.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'no-such-model'} is not a sentence-transformers " \
                                                   "model directory (no modules.json or config.json)"
