"""Hosted APIs' limits: settings from the environment, request packing, the token-bucket rate limiter,
retry-after parsing and the pool of requests in flight (see ``embedders.hosted`` for the guarantees)."""

from __future__ import annotations

import math
import os
import re
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ragindex.embedders.bucket import Rates, pause, take, tighten
from ragindex.embedders.shared_limits import MemoryBucket
from ragindex.errors import HostedError, InputTooLong, ModelDrift, QuotaExceeded, SettingsError  # noqa: F401  (raised here)

PROVIDER = "openai-compatible"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# OpenAI's embedding models: default dimensions and the encoding they count (and bill) tokens in.
KNOWN_MODELS = {
    "text-embedding-3-small": {"dim": 1536, "encoding": "cl100k_base"},
    "text-embedding-3-large": {"dim": 3072, "encoding": "cl100k_base"},
    "text-embedding-ada-002": {"dim": 1536, "encoding": "cl100k_base"},
}
# A handful of plain sentences, embedded on first use and again on every run.
PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Retrieval-augmented generation grounds answers in documents.",
    "A protein folds into a three-dimensional structure.",
    "Interest rates rose by a quarter of a percentage point.",
    "Rotate your API keys every ninety days.",
    "Der Vertrag tritt am ersten Januar in Kraft.",
    "SELECT count(*) FROM orders WHERE status = 'open';",
    "She sells sea shells by the sea shore.",
)
DRIFT_COSINE = 0.999  # the same model gives the same vectors to float noise; an update moves them far more


def _env_number(name: str, default, whole: bool = True):
    """``$name`` as a whole number >= 1 (or, without ``whole``, a finite number > 0); ``default`` when unset.

    Anything else is a one-line SettingsError naming the variable, before a client is built or anything sent."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw.strip()) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        what = "a whole number >= 1" if whole else "a number of seconds > 0"
        raise SettingsError(f"{name} must be {what}, got {raw!r}; fix it or unset it (default: {default or 'none'})")
    return value


@dataclass(frozen=True)
class HostedSettings:
    """How to reach and pace one hosted model. Built from the environment by :meth:`from_env`."""

    model: str
    base_url: str = DEFAULT_BASE_URL
    dimensions: int | None = None
    concurrency: int = 4
    tpm: int | None = None  # tokens per minute this client may use (None: learn from x-ratelimit headers)
    rpm: int | None = None
    timeout_s: float = 60.0
    max_attempts: int = 8
    max_inputs: int = 2048
    max_request_tokens: int = 300_000
    max_input_tokens: int = 8192
    epoch: int = 0  # bumped when a drift is accepted: a new key space

    @classmethod
    def from_env(cls, model: str, dimensions: int | None = None) -> "HostedSettings":
        base = (os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        return cls(model=model, base_url=base, dimensions=dimensions,
                   concurrency=_env_number("RAGINDEX_API_CONCURRENCY", 4), tpm=_env_number("RAGINDEX_API_TPM", None),
                   rpm=_env_number("RAGINDEX_API_RPM", None), timeout_s=_env_number("RAGINDEX_API_TIMEOUT_S", 60.0, whole=False),
                   max_attempts=_env_number("RAGINDEX_API_MAX_ATTEMPTS", 8),
                   max_inputs=_env_number("RAGINDEX_API_MAX_INPUTS", 2048),
                   max_request_tokens=_env_number("RAGINDEX_API_MAX_REQUEST_TOKENS", 300_000),
                   max_input_tokens=_env_number("RAGINDEX_API_MAX_INPUT_TOKENS", 8192))


# -- pacing -------------------------------------------------------------------------------


def parse_duration(value: str | None) -> float | None:
    """'20ms', '1s', '6m0s', '1h2m3.5s', '0.5' (seconds) -> seconds; None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    total, matched = 0.0, False
    for num, unit in re.findall(r"([\d.]+)(ms|h|m|s)", value):
        matched = True
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total if matched else None


class RateLimiter:
    """Token buckets for tokens and requests per minute, shared by all threads, and, through ``bucket``, by every
    process using the same account (see ``embedders.shared_limits``; default: this process only).

    Providers enforce a per-minute limit over much shorter windows, so the
    buckets hold ``burst_s`` seconds of the rate (at least one request), not a
    minute's worth. Configured limits come from settings; the server's
    ``x-ratelimit-*`` headers tighten them (a server that says 0 tokens remain
    for 2 s pauses everyone), and so does a 429's ``Retry-After`` (:meth:`pause`).
    """

    def __init__(self, tpm: int | None, rpm: int | None, margin: float = 0.95, burst_s: float = 1.0,
                 bucket=None) -> None:
        self.tpm = tpm * margin if tpm else None
        self.rpm = rpm * margin if rpm else None
        self.burst_s = burst_s
        self.bucket = bucket if bucket is not None else MemoryBucket()
        self.waited_s = 0.0

    @property
    def rates(self) -> Rates:
        return Rates(self.tpm / 60 if self.tpm else None, self.rpm / 60 if self.rpm else None, self.burst_s)

    def acquire(self, tokens: int) -> None:
        """Block until a request of ``tokens`` tokens may be sent (the wait happens outside the shared lock)."""
        need = tokens if self.tpm else 0
        while True:
            rates = self.rates
            delay = self.bucket.transact(lambda st, now, rates=rates: take(st, now, rates, need))
            if delay <= 0:
                return
            self.waited_s += delay
            time.sleep(min(delay, 5.0))

    def pause(self, seconds: float) -> None:
        """Nobody using the account sends for ``seconds`` (a 429's ``Retry-After``)."""
        if seconds and seconds > 0:
            self.bucket.transact(lambda st, now: pause(st, now, seconds))

    def observe(self, headers) -> None:
        """Learn from a response's ``x-ratelimit-*`` headers: what is left caps the shared levels; none left pauses."""
        if headers is None:
            return
        limit = headers.get("x-ratelimit-limit-tokens")
        if limit and limit.isdigit() and not self.tpm:
            self.tpm = int(limit) * 0.95
        left = {kind: _number(headers.get(f"x-ratelimit-remaining-{kind}")) for kind in ("tokens", "requests")}
        wait = max([parse_duration(headers.get(f"x-ratelimit-reset-{kind}")) or 0.0
                    for kind in ("tokens", "requests") if left[kind] is not None and left[kind] <= 0] or [0.0])
        if left["tokens"] is None and left["requests"] is None:
            return
        rates = self.rates

        def update(st, now):
            tighten(st, now, rates, left["tokens"], left["requests"])
            if wait > 0:
                pause(st, now, wait)

        self.bucket.transact(update)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


# -- requests ---------------------------------------------------------------------------


@dataclass
class Result:
    """One successful request: what it embedded, and what the API billed for it."""

    hashes: list[str]
    vectors: np.ndarray
    tokens: list[int]  # planned, per text
    billed_tokens: int
    seconds: float
    attempts: int


@dataclass
class Item:
    key: str  # text hash
    text: str
    tokens: int


def pack(items: Sequence[Item], settings: HostedSettings, request_tokens: int | None = None) -> list[list[Item]]:
    """Requests under the provider's limits (and ``request_tokens``, if smaller), in order.

    InputTooLong names every text over the input limit.
    """
    too_long = [it for it in items if it.tokens > settings.max_input_tokens]
    if too_long:
        raise InputTooLong(f"{len(too_long)} text(s) exceed {settings.model}'s {settings.max_input_tokens}-token input "
                           f"limit (largest {max(it.tokens for it in too_long)} tokens; text hashes "
                           f"{', '.join(it.key[:12] for it in too_long[:5])}); nothing was sent. Use a schema with smaller "
                           "chunks; hosted inputs are never silently truncated")
    budget = min(settings.max_request_tokens, request_tokens or settings.max_request_tokens)
    out: list[list[Item]] = []
    cur: list[Item] = []
    cur_tokens = 0
    for it in items:
        if cur and (len(cur) >= settings.max_inputs or cur_tokens + it.tokens > budget):
            out.append(cur)
            cur, cur_tokens = [], 0
        cur.append(it)
        cur_tokens += it.tokens
    if cur:
        out.append(cur)
    return out


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``retry-after``), if it said."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    return parse_duration(headers.get("retry-after"))


def _is_quota(exc: BaseException) -> bool:
    return getattr(exc, "code", None) == "insufficient_quota" or "insufficient_quota" in str(getattr(exc, "body", "") or "")


class RequestPool:
    """Runs the requests of one embedding job, ``concurrency`` at a time; iterate to get them as they finish.

    Iteration yields each successful request's :class:`Result` in completion
    order. A request is submitted only when a slot is free, so at most
    ``concurrency`` requests are ever in flight. If the consumer stops (an error,
    Ctrl-C, a fatal API error), :meth:`drain` waits for the requests in flight
    and returns those that succeeded, so their billed vectors can still be saved.
    """

    def __init__(self, embedder, batches: list[list[Item]], meter=None) -> None:
        self.embedder = embedder
        self.meter = meter  # embedders.metering.Meter: the cap and the record of lost answers (None: none)
        self.pending = deque(batches)
        self.inflight: set[Future] = set()
        self.pool = ThreadPoolExecutor(max_workers=embedder.settings.concurrency, thread_name_prefix="embed-api")
        self.requests = len(batches)

    def _fill(self) -> None:
        while self.pending and len(self.inflight) < self.embedder.settings.concurrency:
            self.inflight.add(self.pool.submit(self.embedder.send, self.pending.popleft(), self.meter))

    def __iter__(self) -> Iterator[Result]:
        try:
            self._fill()
            while self.inflight:
                done, _ = wait(self.inflight, return_when=FIRST_COMPLETED)
                for f in done:
                    self.inflight.discard(f)
                    yield f.result()  # a fatal error surfaces here; the caller then drains
                    self._fill()
        finally:
            if not self.inflight and not self.pending:
                self.pool.shutdown(wait=False)

    def drain(self) -> list[Result]:
        """Stop sending; wait for the requests in flight; return the ones that succeeded."""
        self.pending.clear()
        out = []
        for f in list(self.inflight):
            try:
                out.append(f.result())
            except BaseException:  # noqa: BLE001 - a failed request's lost answers are already in the meter's record
                continue
        self.inflight.clear()
        self.pool.shutdown(wait=True)
        return out


# -- the embedder ---------------------------------------------------------------------------
