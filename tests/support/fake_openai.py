"""A fake OpenAI-compatible embeddings server: real HTTP on localhost, for tests and the hosted benchmark.

It speaks ``POST /v1/embeddings`` as the OpenAI API does (request: ``model``,
``input`` as a string or a list of strings, optional ``dimensions`` and
``encoding_format``; response: ``data[i].embedding``, ``usage.prompt_tokens``,
``x-ratelimit-*`` headers), so the client under test is the real ``openai``
library. Vectors are deterministic (seeded by text, model and dimensions), and
``usage`` counts cl100k_base tokens, as OpenAI bills its text-embedding-3 models.

Failure modes, all set on the running server: latency, a tokens-per-minute
limit enforced with a token bucket (429 with ``Retry-After``), a share of random
429 storms and 500s, timeouts (a response slower than the client waits, billed
all the same), a 502 from a gateway *after* the provider billed the request
(``bad_gateway_every``), requests over the provider's limits answered 400, an
``insufficient_quota`` 429, vectors of another size than the model's
(``dims``), and ``drift``, which changes every vector as a provider-side model
update would, and ``throttle_request``, one 429 for the whole account (the
limit every client of it shares). Every request is recorded with its arrival time
and tokens, so a test can count what was sent and what was billed (``charged``),
answered or not, and the busiest window (``peak_tokens``).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

DEFAULT_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


@dataclass
class Request:
    t: float
    status: int
    inputs: list[str]
    billed_tokens: int
    model: str
    dimensions: int | None
    reason: str = ""
    tokens: int = 0  # what the request carried, whatever became of it
    charged: bool = False  # the provider billed it (an answer that was lost on the way counts too)


@dataclass
class Behaviour:
    latency_s: float = 0.0
    tpm: int | None = None  # tokens per minute the "account" may use
    bucket_s: float = 60.0  # how many seconds of the TPM the bucket holds (burst)
    rate_429: float = 0.0  # share of requests answered 429 at random (a storm)
    rate_500: float = 0.0
    timeout_every: int = 0  # every n-th request is answered after ``timeout_s`` (the client should give up first)
    timeout_s: float = 5.0
    quota_after_tokens: int | None = None  # then every request: 429 insufficient_quota
    drift: int = 0  # changes the vectors for every text (a model update behind the same name)
    bad_gateway_every: int = 0  # every n-th request is billed, then answered 502 by a gateway (the answer is lost)
    dims: int | None = None  # answer vectors of this size whatever the model and `dimensions` (a misbehaving server)
    max_inputs: int = 2048
    max_request_tokens: int = 300_000
    max_input_tokens: int = 8192
    retry_after_s: float = 0.2
    seed: int = 0
    # The n-th request (1-based) hits the account's limit: 429 with ``Retry-After: throttle_s`` (every client of the
    # account should wait that long, not only the one that got it).
    throttle_request: int = 0
    throttle_s: float = 2.0


@dataclass
class FakeOpenAI:
    """Start with ``with FakeOpenAI() as server:``; ``server.base_url`` is the ``/v1`` URL."""

    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        from ragindex.chunkers.tokenizers import get_tokenizer

        self._tok = get_tokenizer("cl100k_base")
        self._lock = threading.Lock()
        self._rng = random.Random(self.behaviour.seed)
        self._bucket = None
        self._bucket_t = time.monotonic()
        self._count = 0
        self._server = None
        self._thread = None

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> "FakeOpenAI":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                return

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, payload, headers = fake.handle(self.path, body, self.headers.get("Authorization", ""))
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # -- what was billed -----------------------------------------------------------

    def billed(self) -> list[Request]:
        return [r for r in self.requests if r.charged]

    def sent_tokens(self) -> int:
        """Tokens of every request that reached the server, billed or not."""
        return sum(r.tokens for r in self.requests)

    def billed_texts(self) -> list[str]:
        return [t for r in self.billed() for t in r.inputs]

    def billed_tokens(self) -> int:
        return sum(r.billed_tokens for r in self.billed())

    def peak_tokens(self, window_s: float) -> int:
        """The most tokens that arrived (billed or not) in any ``window_s``-second sliding window."""
        reqs = sorted((r.t, r.tokens) for r in self.requests)
        best = total = lo = 0
        for t, n in reqs:
            total += n
            while reqs[lo][0] <= t - window_s:
                total -= reqs[lo][1]
                lo += 1
            best = max(best, total)
        return best

    # -- the API -------------------------------------------------------------------

    def vector(self, text: str, model: str, dims: int) -> list[float]:
        seed = hashlib.sha256(f"{model}|{dims}|{self.behaviour.drift}|{text}".encode()).digest()
        v = np.random.default_rng(int.from_bytes(seed[:8], "little")).standard_normal(dims)
        return (v / np.linalg.norm(v)).astype(np.float32).tolist()

    def _take_tokens(self, n: int) -> float:
        """Token bucket: 0 when ``n`` tokens may go now, else the seconds until they may."""
        b = self.behaviour
        if not b.tpm:
            return 0.0
        rate = b.tpm / 60.0
        capacity = rate * b.bucket_s
        now = time.monotonic()
        if self._bucket is None:
            self._bucket = capacity
        self._bucket = min(capacity, self._bucket + (now - self._bucket_t) * rate)
        self._bucket_t = now
        if n <= self._bucket or self._bucket >= capacity:  # a request bigger than the window is admitted when it is full
            self._bucket -= n
            return 0.0
        return (min(n, capacity) - self._bucket) / rate

    def _headers(self, remaining_tokens: float | None = None) -> dict:
        b = self.behaviour
        if not b.tpm:
            return {}
        rem = int(self._bucket if remaining_tokens is None else remaining_tokens)
        reset = max(0.0, (b.tpm / 60 * b.bucket_s - rem) / (b.tpm / 60))
        return {"x-ratelimit-limit-tokens": str(b.tpm), "x-ratelimit-remaining-tokens": str(rem),
                "x-ratelimit-reset-tokens": f"{reset:.3f}s"}

    def handle(self, path: str, body: bytes, auth: str) -> tuple[int, dict, dict]:
        b = self.behaviour
        if b.latency_s:
            time.sleep(b.latency_s)
        if path.rstrip("/") != "/v1/embeddings":
            return 404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}}, {}
        if not auth.startswith("Bearer ") or len(auth) < 10:
            return 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                   "code": "invalid_api_key"}}, {}
        req = json.loads(body)
        inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
        model, dims = req["model"], b.dims or req.get("dimensions") or DEFAULT_DIMS.get(req["model"], 64)
        counts = self._tok.count_many(inputs)
        tokens = sum(counts)
        with self._lock:
            self._count += 1
            n = self._count
            record = Request(time.time(), 0, inputs, 0, model, req.get("dimensions"), tokens=tokens)
            self.requests.append(record)
            error = None
            if len(inputs) > b.max_inputs:
                error = (400, f"'$.input' is too long: {len(inputs)} inputs > {b.max_inputs}", "invalid_request_error", None)
            elif any(c > b.max_input_tokens for c in counts):
                i = next(i for i, c in enumerate(counts) if c > b.max_input_tokens)
                error = (400, f"input[{i}] has {counts[i]} tokens; this model's maximum is {b.max_input_tokens}",
                         "invalid_request_error", None)
            elif tokens > b.max_request_tokens:
                error = (400, f"request has {tokens} tokens > {b.max_request_tokens} per request", "invalid_request_error", None)
            elif b.throttle_request and n == b.throttle_request:
                error = (429, "Rate limit reached for requests (the account's limit)", "requests", "rate_limit_exceeded",
                         b.throttle_s)
            elif b.quota_after_tokens is not None and self.billed_tokens() + tokens > b.quota_after_tokens:
                error = (429, "You exceeded your current quota, please check your plan and billing details.",
                         "insufficient_quota", "insufficient_quota")
            elif self._rng.random() < b.rate_429:
                error = (429, "Rate limit reached (a storm)", "requests", "rate_limit_exceeded")
            elif self._rng.random() < b.rate_500:
                error = (500, "The server had an error while processing your request.", "server_error", None)
            else:
                wait = self._take_tokens(tokens)
                if wait > 0:
                    error = (429, f"Rate limit reached for tokens per min; try again in {wait:.3f}s", "tokens",
                             "rate_limit_exceeded", wait)
            if error is None and b.timeout_every and n % b.timeout_every == 0:
                error = ("timeout", "", "", None)
            if error is None and b.bad_gateway_every and n % b.bad_gateway_every == 0:
                record.status, record.billed_tokens, record.charged, record.reason = 502, tokens, True, "lost after billing"
                return 502, {"error": {"message": "Bad gateway", "type": "server_error", "code": None, "param": None}}, \
                    {"retry-after-ms": "20"}
            if error is not None and error[0] != "timeout":
                record.status, record.reason = error[0], error[1]
                headers = self._headers()
                if error[0] == 429 and error[3] != "insufficient_quota":
                    headers["Retry-After"] = f"{error[4] if len(error) > 4 else b.retry_after_s:.3f}"
                return error[0], {"error": {"message": error[1], "type": error[2], "code": error[3], "param": None}}, headers
            if error is None:
                record.status, record.billed_tokens, record.charged = 200, tokens, True
        if error is not None:  # a timeout: answer (and bill) long after the client gave up
            record.status, record.billed_tokens, record.charged = 200, tokens, True
            time.sleep(b.timeout_s)
        data = [{"object": "embedding", "index": i, "embedding": self.vector(t, model, dims)} for i, t in enumerate(inputs)]
        return 200, {"object": "list", "data": data, "model": model,
                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, self._headers()
