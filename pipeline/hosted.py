"""Hosted embedding APIs (OpenAI, Azure OpenAI's v1 endpoint, vLLM, text-embeddings-inference, Ollama)
behind the same ``Embedder`` interface as a local model, with the same guarantees.

* **Packing.** Texts go in requests of at most ``max_inputs`` inputs and
  ``max_request_tokens`` tokens, counted with the model's own tiktoken encoding
  (cl100k_base for OpenAI's embedding models). A text over ``max_input_tokens``
  is refused before anything is sent (:class:`InputTooLong`), never truncated.
* **Rate.** Several requests in flight (``concurrency``); a client-side token
  bucket for tokens and requests per minute, tightened by the ``x-ratelimit-*``
  headers the server sends. 429s, 5xx, timeouts and dropped connections are
  retried by tenacity with exponential backoff and jitter, waiting at least what
  ``Retry-After`` says; a 400, a bad key or an exhausted quota is not retried.
* **Nothing billed is lost.** Requests complete one by one into the caller, which
  commits each one's vectors and billed tokens before taking the next; on an
  error or Ctrl-C the requests in flight are waited for and handed over too.
* **Identity.** A hosted model has no weights to hash. Its fingerprint covers the
  provider, model, dimensions, base URL and an *epoch*; a fixed probe text set is
  embedded on first use and stored in the tenant's cache, and every run embeds
  it again: if the vectors moved (the provider changed the model behind the
  name), the run is refused (:class:`ModelDrift`) rather than mixing vectors.

The API key comes from ``OPENAI_API_KEY`` and the endpoint from ``OPENAI_BASE_URL``
(the client library's own variables); the key is never stored or printed.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np

from ragindex.fsutil import fingerprint_of

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


class HostedError(RuntimeError):
    """The embedding API refused the work for a reason retrying cannot fix (the message says what to do)."""


class InputTooLong(HostedError):
    """A text is over the model's input limit; it is refused, not truncated."""


class QuotaExceeded(HostedError):
    """The account's quota is exhausted; what was billed before is saved."""


class ModelDrift(HostedError):
    """The provider's model behind this name now gives different vectors than the ones stored."""


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"${name} must be a whole number >= 1, got {raw!r}")
    return int(raw)


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
                   concurrency=_env_int("RAGINDEX_API_CONCURRENCY", 4), tpm=_env_int("RAGINDEX_API_TPM", None),
                   rpm=_env_int("RAGINDEX_API_RPM", None), timeout_s=float(os.environ.get("RAGINDEX_API_TIMEOUT_S", "60")),
                   max_attempts=_env_int("RAGINDEX_API_MAX_ATTEMPTS", 8),
                   max_inputs=_env_int("RAGINDEX_API_MAX_INPUTS", 2048),
                   max_request_tokens=_env_int("RAGINDEX_API_MAX_REQUEST_TOKENS", 300_000),
                   max_input_tokens=_env_int("RAGINDEX_API_MAX_INPUT_TOKENS", 8192))


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
    """Token buckets for tokens and requests per minute, shared by all threads.

    Providers enforce a per-minute limit over much shorter windows, so the
    buckets hold ``burst_s`` seconds of the rate (at least one request), not a
    minute's worth. Configured limits come from settings; the server's
    ``x-ratelimit-*`` headers tighten them (a server that says 0 tokens remain
    for 2 s pauses everyone).
    """

    def __init__(self, tpm: int | None, rpm: int | None, margin: float = 0.95, burst_s: float = 1.0) -> None:
        self._lock = threading.Lock()
        self.tpm = tpm * margin if tpm else None
        self.rpm = rpm * margin if rpm else None
        self.burst_s = burst_s
        self._tokens = self._cap_tokens(0)
        self._requests = self._cap_requests()
        self._t = time.monotonic()
        self._paused_until = 0.0
        self.waited_s = 0.0

    def _cap_tokens(self, request: int) -> float:
        return max(self.tpm / 60 * self.burst_s, request) if self.tpm else 0.0

    def _cap_requests(self) -> float:
        return max(self.rpm / 60 * self.burst_s, 1.0) if self.rpm else 0.0

    def _refill(self, now: float, request: int) -> None:
        dt = now - self._t
        self._t = now
        if self.tpm:
            self._tokens = min(self._cap_tokens(request), self._tokens + dt * self.tpm / 60)
        if self.rpm:
            self._requests = min(self._cap_requests(), self._requests + dt * self.rpm / 60)

    def acquire(self, tokens: int) -> None:
        """Block until a request of ``tokens`` tokens may be sent."""
        while True:
            with self._lock:
                now = time.monotonic()
                self._refill(now, tokens)
                need_t = tokens if self.tpm else 0
                delay = max(self._paused_until - now, 0.0)
                if self.tpm and self._tokens < need_t:
                    delay = max(delay, (need_t - self._tokens) / (self.tpm / 60))
                if self.rpm and self._requests < 1:
                    delay = max(delay, (1 - self._requests) / (self.rpm / 60))
                if delay <= 0:
                    if self.tpm:
                        self._tokens -= need_t
                    if self.rpm:
                        self._requests -= 1
                    return
            self.waited_s += delay
            time.sleep(min(delay, 5.0))

    def observe(self, headers) -> None:
        """Learn from a response's ``x-ratelimit-*`` headers."""
        if headers is None:
            return
        with self._lock:
            limit = headers.get("x-ratelimit-limit-tokens")
            if limit and limit.isdigit() and not self.tpm:
                self.tpm = int(limit) * 0.95
                self._tokens = self._cap_tokens(0)
            remaining, reset = headers.get("x-ratelimit-remaining-tokens"), parse_duration(headers.get("x-ratelimit-reset-tokens"))
            if remaining is not None and remaining.isdigit() and int(remaining) == 0 and reset:
                self._paused_until = max(self._paused_until, time.monotonic() + reset)


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

    def __init__(self, embedder: "OpenAIEmbedder", batches: list[list[Item]]) -> None:
        self.embedder = embedder
        self.pending = deque(batches)
        self.inflight: set[Future] = set()
        self.pool = ThreadPoolExecutor(max_workers=embedder.settings.concurrency, thread_name_prefix="embed-api")
        self.requests = len(batches)

    def _fill(self) -> None:
        while self.pending and len(self.inflight) < self.embedder.settings.concurrency:
            self.inflight.add(self.pool.submit(self.embedder.send, self.pending.popleft()))

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
            except BaseException:  # noqa: BLE001 - a failed request billed nothing
                continue
        self.inflight.clear()
        self.pool.shutdown(wait=True)
        return out


# -- the embedder ---------------------------------------------------------------------------


class OpenAIEmbedder:
    """An OpenAI-compatible embeddings endpoint, selected with ``--model openai:MODEL``."""

    device = "api"
    normalize = True

    def __init__(self, settings: HostedSettings, client=None, limiter: RateLimiter | None = None) -> None:
        import openai

        from ragindex.chunkers.tokenizers import get_tokenizer

        self.settings = settings
        self.name = f"openai:{settings.model}"
        known = KNOWN_MODELS.get(settings.model, {})
        self._dim = settings.dimensions or known.get("dim")
        self.encoding = known.get("encoding", "cl100k_base")  # other servers' tokenizers are unknown: cl100k estimates
        self.exact_tokens = settings.model in KNOWN_MODELS and settings.base_url == DEFAULT_BASE_URL
        self._tok = get_tokenizer("cl100k_base")
        self.max_seq_length = settings.max_input_tokens
        # The key is read by the client from $OPENAI_API_KEY and lives only in its headers.
        self.client = client or openai.OpenAI(base_url=settings.base_url, max_retries=0, timeout=settings.timeout_s,
                                              api_key=os.environ.get("OPENAI_API_KEY") or None)
        self.limiter = limiter or RateLimiter(settings.tpm, settings.rpm)
        self.fingerprint = fingerprint_of(provider=PROVIDER, model=settings.model, dimensions=settings.dimensions,
                                          base_url=settings.base_url, epoch=settings.epoch)
        self.identity = fingerprint_of(provider=PROVIDER, model=settings.model, dimensions=settings.dimensions,
                                       base_url=settings.base_url)
        self.stats = {"requests": 0, "retries": 0, "billed_tokens": 0}

    def __repr__(self) -> str:  # never the key
        return f"OpenAIEmbedder({self.name!r}, base_url={self.settings.base_url!r}, epoch={self.settings.epoch})"

    @property
    def dim(self) -> int:
        if self._dim is None:  # an unknown model: ask once
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def with_epoch(self, epoch: int) -> "OpenAIEmbedder":
        """The same model in another key space (after an accepted drift); shares the client and the limiter."""
        if epoch == self.settings.epoch:
            return self
        other = OpenAIEmbedder(replace(self.settings, epoch=epoch), client=self.client, limiter=self.limiter)
        other._dim = self._dim
        return other

    # -- tokens --------------------------------------------------------------------

    def full_token_counts(self, texts: Sequence[str]) -> list[int]:
        return self._tok.count_many(list(texts)) if texts else []

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return self.full_token_counts(texts)  # nothing is truncated: over-long inputs are refused

    # -- sending -------------------------------------------------------------------

    def _retrying(self):
        import openai
        import tenacity

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, openai.RateLimitError):
                return not _is_quota(exc)
            return isinstance(exc, (openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError))

        backoff = tenacity.wait_exponential_jitter(initial=0.5, max=30.0, jitter=1.0)

        def wait_for(state) -> float:
            self.stats["retries"] += 1
            told = retry_after(state.outcome.exception())
            return told * (1 + 0.1 * np.random.random()) if told is not None else backoff(state)

        return tenacity.Retrying(retry=tenacity.retry_if_exception(retryable), wait=wait_for,
                                 stop=tenacity.stop_after_attempt(self.settings.max_attempts), reraise=True)

    def send(self, batch: list[Item]) -> Result:
        """One request (retried as needed): the vectors, in order, and the tokens the API billed."""
        import openai

        tokens = sum(it.tokens for it in batch)
        self.limiter.acquire(tokens)
        t0 = time.perf_counter()
        attempts = 0
        kwargs = {"dimensions": self.settings.dimensions} if self.settings.dimensions else {}
        try:
            for attempt in self._retrying():
                with attempt:
                    attempts += 1
                    raw = self.client.embeddings.with_raw_response.create(
                        input=[it.text for it in batch], model=self.settings.model, encoding_format="float", **kwargs)
        except openai.AuthenticationError as exc:
            raise HostedError(f"{self.settings.base_url} refused the API key ({exc.status_code}); set OPENAI_API_KEY "
                              "to a valid key") from None
        except openai.RateLimitError as exc:
            if _is_quota(exc):
                raise QuotaExceeded(f"{self.name}: the account's quota is exhausted ({_message(exc)}); what was embedded "
                                    "before is saved, and the next run sends only the rest") from None
            raise HostedError(f"{self.name}: still rate-limited after {attempts} attempts ({_message(exc)}); what was "
                              "embedded is saved; lower RAGINDEX_API_TPM or RAGINDEX_API_CONCURRENCY and run again") from None
        except openai.BadRequestError as exc:
            raise HostedError(f"{self.name} rejected a request of {len(batch)} texts ({_message(exc)}); first text "
                              f"{batch[0].key[:12]}: {batch[0].text[:80]!r}; not retried") from None
        except (openai.APIStatusError, openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise HostedError(f"{self.name}: the request failed after {attempts} attempts ({type(exc).__name__}: "
                              f"{_message(exc)}); what was embedded is saved; run again to continue") from None
        self.limiter.observe(raw.headers)
        resp = raw.parse()
        data = sorted(resp.data, key=lambda d: d.index)
        if len(data) != len(batch):
            raise HostedError(f"{self.name} returned {len(data)} embeddings for {len(batch)} inputs")
        vectors = np.asarray([d.embedding for d in data], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        billed = int(resp.usage.prompt_tokens) if resp.usage is not None else tokens
        self.stats["requests"] += 1
        self.stats["billed_tokens"] += billed
        if self._dim is None:
            self._dim = vectors.shape[1]
        return Result([it.key for it in batch], vectors, [it.tokens for it in batch], billed, time.perf_counter() - t0, attempts)

    def requests(self, items: Sequence[tuple[str, str, int]]) -> RequestPool:
        """The requests for ``(key, text, tokens)`` items, packed under the limits (InputTooLong before sending).

        Under a tokens-per-minute limit, a request carries about a second of the
        rate, so the requests in flight share the budget evenly instead of one huge
        request waiting a minute for it.
        """
        tpm = self.limiter.tpm
        request_tokens = max(2_000, int(tpm / 60)) if tpm else None
        return RequestPool(self, pack([Item(*it) for it in items], self.settings, request_tokens))

    def embed(self, texts: Sequence[str], on_batch=None, lengths: Sequence[int] | None = None) -> np.ndarray:
        """Unit vectors for ``texts``, in order (queries, the probe): the same requests, without a cache."""
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        lengths = list(lengths) if lengths is not None else self.full_token_counts(texts)
        pool = self.requests([(str(i), t, n) for i, (t, n) in enumerate(zip(texts, lengths))])
        out: dict[int, np.ndarray] = {}
        for res in pool:
            for k, v in zip(res.hashes, res.vectors):
                out[int(k)] = v
            if on_batch:
                on_batch(len(res.hashes), sum(res.tokens))
        return np.stack([out[i] for i in range(len(texts))])

    # -- drift -----------------------------------------------------------------------

    def check_probe(self, cache, accept_drift: bool = False) -> dict:
        """Embed the probe texts and compare them with the ones stored for this model in ``cache``.

        First use: stores them. Same vectors: ok. Moved: raises ModelDrift, unless
        ``accept_drift``, which starts a new epoch (a new key space: every text is
        embedded again by the new model) and stores the new probe under it.
        """
        vecs = self.embed(list(PROBE_TEXTS))
        tokens = sum(self.full_token_counts(list(PROBE_TEXTS)))
        stored = cache.probe(self.identity, self.settings.epoch)
        if stored is None:
            cache.store_probe(self.identity, self.settings.epoch, vecs)
            return {"status": "stored", "tokens": tokens, "epoch": self.settings.epoch}
        cos = float(np.min(np.sum(stored * vecs, axis=1)))
        if cos >= DRIFT_COSINE:
            return {"status": "same", "min_cosine": round(cos, 6), "tokens": tokens, "epoch": self.settings.epoch}
        if accept_drift:
            cache.store_probe(self.identity, self.settings.epoch + 1, vecs)
            return {"status": "new epoch", "min_cosine": round(cos, 6), "tokens": tokens, "epoch": self.settings.epoch + 1}
        raise ModelDrift(
            f"{self.name} at {self.settings.base_url} now returns different vectors for the same texts (probe cosine "
            f"{cos:.4f} < {DRIFT_COSINE}): the provider changed the model behind this name. Mixing its new vectors with "
            "the stored ones would corrupt the index, so nothing was embedded. To move to the new model, re-embed "
            "everything: `ragindex reindex --tenant T --accept-model-drift` (see `ragindex plan` for the cost)")


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(exc).splitlines()[0][:300]
