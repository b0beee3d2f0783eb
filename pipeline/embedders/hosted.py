"""Hosted embedding APIs (OpenAI, Azure OpenAI's v1 endpoint, vLLM, text-embeddings-inference, Ollama)
behind the same ``Embedder`` interface as a local model, with the same guarantees.

* **Packing.** Texts go in requests of at most ``max_inputs`` inputs and
  ``max_request_tokens`` tokens, counted with the model's own tiktoken encoding
  (cl100k_base for OpenAI's embedding models). A text over ``max_input_tokens``
  is refused before anything is sent (:class:`InputTooLong`), never truncated.
* **Rate.** Several requests in flight (``concurrency``); a client-side token
  bucket for tokens and requests per minute, shared by every process using the
  same account (``embedders.shared_limits``), tightened by the ``x-ratelimit-*``
  headers the server sends and paused by a 429's ``Retry-After``. 429s, 5xx,
  timeouts and dropped connections are retried by tenacity with exponential
  backoff and jitter, waiting at least what ``Retry-After`` says; a 400, a bad
  key or an exhausted quota is not retried.
* **Nothing billed is lost.** Requests complete one by one into the caller, which
  commits each one's vectors and billed tokens before taking the next; on an
  error or Ctrl-C the requests in flight are waited for and handed over too.
* **Nothing billed goes unrecorded.** Each attempt goes through the job's
  :class:`~ragindex.embedders.metering.Meter`: counted against the budget before it
  is sent, and, when its answer is lost (a timeout, a 5xx, a dropped connection),
  recorded as possibly billed, with its tokens and request id, before it is retried.
* **Size.** The first answer fixes the vectors' size for a model of unknown size;
  any answer of another size than ``--dimensions``, the model's known size or that
  first answer is refused (:class:`DimensionMismatch`). The drift probe is the first
  request of every run, so a wrong size is refused before the corpus is sent.
* **Identity.** A hosted model has no weights to hash. Its fingerprint covers the
  provider, model, dimensions, base URL and an *epoch*; a fixed probe text set is
  embedded on first use and stored in the tenant's cache, and every run embeds
  it again: if the vectors moved (the provider changed the model behind the
  name), the run is refused (:class:`ModelDrift`) rather than mixing vectors. A
  search checks the same, once per process (:meth:`OpenAIEmbedder.check_queries`).

The API key comes from ``OPENAI_API_KEY`` and the endpoint from ``OPENAI_BASE_URL``
(the client library's own variables); the key is never stored or printed.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import openai
import tenacity

from ragindex.chunkers.tokenizers import get_tokenizer
from ragindex.embedders.limits import (
    DEFAULT_BASE_URL,
    DRIFT_COSINE,
    KNOWN_MODELS,
    PROBE_TEXTS,
    PROVIDER,
    HostedError,
    HostedSettings,
    Item,
    ModelDrift,
    QuotaExceeded,
    RateLimiter,
    RequestPool,
    Result,
    _is_quota,
    pack,
    retry_after,
)
from ragindex.embedders.metering import Meter
from ragindex.embedders.shared_limits import shared_bucket
from ragindex.errors import DimensionMismatch, ModelDriftError, SettingsError
from ragindex.fsutil import fingerprint_of
from ragindex.store.cache import stored_probe
from ragindex.store.spend import PendingSpend


class OpenAIEmbedder:
    """An OpenAI-compatible embeddings endpoint, selected with ``--model openai:MODEL``."""

    device = "api"
    normalize = True

    def __init__(self, settings: HostedSettings, client=None, limiter: RateLimiter | None = None,
                 shared: dict | None = None) -> None:
        key = os.environ.get("OPENAI_API_KEY")
        if client is None and not key:
            raise SettingsError(f"--model openai:{settings.model} needs an API key and OPENAI_API_KEY is not set; set it "
                                "(any non-empty value for a server that needs none; OPENAI_BASE_URL for another endpoint)")
        self.settings = settings
        self.name = f"openai:{settings.model}"
        known = KNOWN_MODELS.get(settings.model, {})
        self._dim = settings.dimensions or known.get("dim")
        self.encoding = known.get("encoding", "cl100k_base")  # other servers' tokenizers are unknown: cl100k estimates
        self.exact_tokens = settings.model in KNOWN_MODELS and settings.base_url == DEFAULT_BASE_URL
        self._tok = get_tokenizer("cl100k_base")
        self.max_seq_length = settings.max_input_tokens
        # The key is read by the client from $OPENAI_API_KEY and lives only in its headers.
        self.client = client or openai.OpenAI(base_url=settings.base_url, max_retries=0, timeout=settings.timeout_s, api_key=key)
        # One bucket per account (base URL + key hash), shared by every process using it: embedders.shared_limits.
        self.limiter = limiter or RateLimiter(settings.tpm, settings.rpm, bucket=shared_bucket(settings.base_url, key))
        self.fingerprint = fingerprint_of(provider=PROVIDER, model=settings.model, dimensions=settings.dimensions,
                                          base_url=settings.base_url, epoch=settings.epoch)
        self.identity = fingerprint_of(provider=PROVIDER, model=settings.model, dimensions=settings.dimensions,
                                       base_url=settings.base_url)
        self.stats = {"requests": 0, "retries": 0, "billed_tokens": 0}
        # Shared by every epoch of this model in this process: the provider's probe vectors, fetched once.
        self._shared = shared if shared is not None else {"lock": threading.Lock(), "probe": None}

    def __repr__(self) -> str:  # never the key
        return f"OpenAIEmbedder({self.name!r}, base_url={self.settings.base_url!r}, epoch={self.settings.epoch})"

    @property
    def dim(self) -> int:
        if self._dim is None:  # an unknown model: its size comes with its first answer (the drift probe)
            self.probe_vectors()
        return self._dim

    @property
    def expected_dim(self) -> int | None:
        """The size every answer must have: ``--dimensions``, the model's known size, or its first answer's."""
        return self._dim

    def learn_dim(self, dim: int) -> None:
        """A model of unknown size: take the size its stored probe has (so nothing is sent just to learn it)."""
        if self._dim is None:
            self._dim = int(dim)

    def with_epoch(self, epoch: int) -> "OpenAIEmbedder":
        """The same model in another key space (after an accepted drift); shares the client, the limiter and the
        provider's probe vectors."""
        if epoch == self.settings.epoch:
            return self
        other = OpenAIEmbedder(replace(self.settings, epoch=epoch), client=self.client, limiter=self.limiter,
                               shared=self._shared)
        other._dim = self._dim
        return other

    # -- tokens --------------------------------------------------------------------

    def full_token_counts(self, texts: Sequence[str]) -> list[int]:
        return self._tok.count_many(list(texts)) if texts else []

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return self.full_token_counts(texts)  # nothing is truncated: over-long inputs are refused

    # -- sending -------------------------------------------------------------------

    def _retrying(self):
        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, openai.RateLimitError):
                return not _is_quota(exc)
            return isinstance(exc, (openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError))

        backoff = tenacity.wait_exponential_jitter(initial=0.5, max=30.0, jitter=1.0)

        def wait_for(state) -> float:
            self.stats["retries"] += 1
            exc = state.outcome.exception()
            told = retry_after(exc)
            if told is not None and isinstance(exc, openai.RateLimitError):
                self.limiter.pause(told)  # the account is limited, not this request: every process using it waits
            return told * (1 + 0.1 * np.random.random()) if told is not None else backoff(state)

        return tenacity.Retrying(retry=tenacity.retry_if_exception(retryable), wait=wait_for,
                                 stop=tenacity.stop_after_attempt(self.settings.max_attempts), reraise=True)

    def _attempt(self, batch: list[Item], tokens: int, meter: Meter):
        """One attempt, metered: reserved against the cap before it is sent; if its answer is lost, recorded as
        possibly billed before the caller may retry it."""
        request_id = f"ragindex-{uuid.uuid4().hex}"  # sent as X-Client-Request-Id: the provider logs it
        kwargs = {"dimensions": self.settings.dimensions} if self.settings.dimensions else {}
        meter.reserve(tokens)
        try:
            raw = self.client.embeddings.with_raw_response.create(
                input=[it.text for it in batch], model=self.settings.model, encoding_format="float",
                extra_headers={"X-Client-Request-Id": request_id}, **kwargs)
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            if _answer_may_be_lost(exc):
                meter.lost_answer(tokens, getattr(exc, "request_id", None) or request_id)
            else:
                meter.refused(tokens)
            raise
        except BaseException:
            meter.refused(tokens)
            raise
        return raw

    def send(self, batch: list[Item], meter: Meter | None = None) -> Result:
        """One request (retried as needed): the vectors, in order, and the tokens the API billed.

        ``meter`` (default: no cap) counts every attempt (see ``embedders.metering``). The
        first answer fixes the size every answer must have (:class:`DimensionMismatch`)."""
        meter = meter or Meter()
        tokens = sum(it.tokens for it in batch)
        self.limiter.acquire(tokens)
        t0 = time.perf_counter()
        attempts = 0
        try:
            for attempt in self._retrying():
                with attempt:
                    attempts += 1
                    raw = self._attempt(batch, tokens, meter)
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
        meter.answered(tokens, billed)
        self.stats["requests"] += 1
        self.stats["billed_tokens"] += billed
        self._check_dim(int(vectors.shape[1]))
        return Result([it.key for it in batch], vectors, [it.tokens for it in batch], billed, time.perf_counter() - t0, attempts)

    def _check_dim(self, got: int) -> None:
        """Adopt the first answer's size for a model of unknown size; refuse an answer of another size."""
        if self._dim is None:
            self._dim = got
        if got != self._dim:
            why = (f"--dimensions {self.settings.dimensions} asks for {self._dim}" if self.settings.dimensions
                   else f"{self.settings.model} is known to give {self._dim}" if self.settings.model in KNOWN_MODELS
                   else f"its first answer had {self._dim}")
            raise DimensionMismatch(
                f"{self.name} at {self.settings.base_url} returned {got}-dimensional vectors, but {why}; refused before "
                "anything else was sent (what was billed is in the ledger). Check the model name, --dimensions and "
                "OPENAI_BASE_URL")

    def requests(self, items: Sequence[tuple[str, str, int]], meter: Meter | None = None) -> RequestPool:
        """The requests for ``(key, text, tokens)`` items, packed under the limits (InputTooLong before sending).

        Under a tokens-per-minute limit, a request carries about a second of the
        rate, so the requests in flight share the budget evenly instead of one huge
        request waiting a minute for it.
        """
        tpm = self.limiter.tpm
        request_tokens = max(2_000, int(tpm / 60)) if tpm else None
        return RequestPool(self, pack([Item(*it) for it in items], self.settings, request_tokens), meter)

    def embed(self, texts: Sequence[str], on_batch=None, lengths: Sequence[int] | None = None,
              meter: Meter | None = None) -> np.ndarray:
        """Unit vectors for ``texts``, in order (queries, the probe): the same requests, without a cache."""
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        lengths = list(lengths) if lengths is not None else self.full_token_counts(texts)
        pool = self.requests([(str(i), t, n) for i, (t, n) in enumerate(zip(texts, lengths))], meter)
        out: dict[int, np.ndarray] = {}
        for res in pool:
            for k, v in zip(res.hashes, res.vectors):
                out[int(k)] = v
            if on_batch:
                on_batch(len(res.hashes), sum(res.tokens))
        return np.stack([out[i] for i in range(len(texts))])

    # -- drift -----------------------------------------------------------------------

    @property
    def probe_tokens(self) -> int:
        return sum(self.full_token_counts(list(PROBE_TEXTS)))

    def probe_vectors(self, meter: Meter | None = None) -> np.ndarray:
        """The provider's vectors for the probe texts now (sent; kept for :meth:`check_queries`)."""
        vecs = self.embed(list(PROBE_TEXTS), meter=meter)
        self._shared["probe"] = vecs
        return vecs

    def check_probe(self, cache, accept_drift: bool = False, meter: Meter | None = None) -> dict:
        """Embed the probe texts and compare them with the ones stored for this model in ``cache``.

        First use: stores them. Same vectors: ok. Moved: raises ModelDrift, unless
        ``accept_drift``, which starts a new epoch (a new key space: every text is
        embedded again by the new model) and stores the new probe under it. The
        caller records what the probe billed (``meter``) whatever the outcome.
        """
        vecs = self.probe_vectors(meter)
        tokens = self.probe_tokens
        stored = cache.probe(self.identity, self.settings.epoch)
        if stored is None:
            cache.store_probe(self.identity, self.settings.epoch, vecs)
            return {"status": "stored", "tokens": tokens, "epoch": self.settings.epoch}
        cos = min_cosine(stored, vecs)
        if cos >= DRIFT_COSINE:
            return {"status": "same", "min_cosine": round(cos, 6), "tokens": tokens, "epoch": self.settings.epoch}
        if accept_drift:
            cache.store_probe(self.identity, self.settings.epoch + 1, vecs)
            return {"status": "new epoch", "min_cosine": round(cos, 6), "tokens": tokens, "epoch": self.settings.epoch + 1}
        raise ModelDrift(
            f"{self.name} at {self.settings.base_url} now returns different vectors for the same texts (probe cosine "
            f"{cos:.4f} < {DRIFT_COSINE}): the provider changed the model behind this name. Mixing its new vectors with "
            "the stored ones would corrupt the index, so nothing was embedded. To move to the new model, re-embed "
            "everything: `ragindex reindex --tenant T --accept-model-drift` (`ragindex plan --accept-model-drift` "
            "shows the cost)")

    def check_queries(self, cache_path: Path, tenant: str) -> None:
        """Before a search embeds a query: are the provider's vectors still those of the tenant's stored probe?

        The probe is sent once per process (and shared by every epoch: the provider has one
        model behind the name at a time); each tenant's stored probe is compared with it.
        What the probe billed goes to the tenant's ledger (``store.spend``). A moved probe
        raises :class:`ModelDriftError` until the tenant is re-embedded in a new epoch.
        """
        stored = stored_probe(cache_path, self.identity, self.settings.epoch)
        if stored is None:  # never probed (nothing was ever sent for this tenant): nothing to compare with
            return
        with self._shared["lock"]:
            current = self._shared["probe"]
            if current is None:
                spend = PendingSpend(cache_path, tenant, self.fingerprint)
                meter = Meter(on_lost=spend.lost)
                try:
                    current = self.probe_vectors(meter)
                finally:
                    spend.done(meter.billed, meter.answers, self.probe_tokens if meter.answers else 0)
        cos = min_cosine(stored, current)
        if cos < DRIFT_COSINE:
            raise ModelDriftError(
                f"tenant {tenant!r} was embedded by {self.name} (epoch {self.settings.epoch}), but "
                f"{self.settings.base_url} now returns different vectors for the same texts (probe cosine {cos:.4f} < "
                f"{DRIFT_COSINE}): the provider changed the model behind this name, and a query embedded by it would be "
                "scored against the old vectors. Searches are refused until the tenant is re-embedded: "
                f"`ragindex reindex --tenant {tenant} --accept-model-drift` (`ragindex plan --tenant {tenant} "
                "--accept-model-drift` shows the cost)")


def min_cosine(stored: np.ndarray, current: np.ndarray) -> float:
    """The smallest cosine between stored and current probe vectors (-1 when their sizes differ)."""
    if stored.shape != current.shape:
        return -1.0
    return float(np.min(np.sum(stored * current, axis=1)))


def _answer_may_be_lost(exc: BaseException) -> bool:
    """Whether a failed attempt may have been billed: a 5xx (a gateway may have forwarded it), a timeout, a
    connection dropped after the request left. A 4xx or 429 was refused; a connection never made sent nothing."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500
    return type(exc.__cause__).__name__ not in ("ConnectError", "ConnectTimeout")  # the HTTP library's: never connected


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(exc).splitlines()[0][:300]
