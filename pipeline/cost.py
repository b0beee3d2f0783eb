"""Know the cost before spending: the plan of a reindex, prices, throughput and budgets."""

from __future__ import annotations

import json
import os
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from chunkers.tokenizers import get_tokenizer

PRICES_FILE = Path(__file__).with_name("prices.toml")


class Prices(BaseModel):
    """The price table: per device-hour for self-hosted embedding, per 1M tokens for hosted APIs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    cuda_hour_usd: float = Field(ge=0)
    cpu_hour_usd: float = Field(ge=0)
    hosted: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> "Prices":
        path = Path(path or os.environ.get("RAGINDEX_PRICES") or PRICES_FILE)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            return cls(**raw.get("self_hosted", {}), hosted=raw.get("hosted", {}))
        except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
            raise ValueError(f"{path}: bad price table: {exc}") from exc

    def hour_usd(self, device: str) -> float:
        return self.cuda_hour_usd if device.startswith("cuda") else self.cpu_hour_usd

    def seconds_usd(self, seconds: float, device: str) -> float:
        return seconds / 3600.0 * self.hour_usd(device)

    def hosted_usd(self, tokens_cl100k: int) -> dict[str, float]:
        return {name: tokens_cl100k / 1e6 * p for name, p in self.hosted.items()}


@dataclass
class Plan:
    """What a reindex will do and cost, known before any embedding. Exact for texts and tokens."""

    tenant: str
    chunker: str
    chunker_fp: str
    embedder: str
    embedder_fp: str
    device: str
    docs_new: int
    docs_changed: int
    docs_deleted: int
    docs_unchanged: int
    docs_skipped: int
    chunks_total: int
    chunks_unchanged: int
    chunks_new: int
    chunks_removed: int
    unique_texts: int
    vectors_reused: int  # distinct texts whose vector is already in the tenant's cache
    duplicates_in_run: int  # chunks whose text another chunk of this run already brings
    texts_to_embed: int
    tokens_to_embed: int  # model tokens, as the model will process them
    tokens_to_embed_cl100k: int  # hosted-price equivalent
    truncated_chunks: int  # chunks over the model's input limit: the model sees only their start
    truncated_to_embed: int
    max_input_tokens: int
    throughput_tokens_per_s: float
    throughput_source: str
    est_seconds: float
    cost_usd: float  # self-hosted, at the device-hour price
    hosted_usd: dict[str, float] = field(default_factory=dict)
    # text_hash -> text of what will be embedded, longest first, and per-text token
    # counts (model, cl100k); the embed stage reuses them instead of tokenising
    # again, and they are what makes the ledger equal the plan. Not in the report.
    to_embed: dict[str, str] = field(default_factory=dict, repr=False)
    to_embed_tokens: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    @property
    def reused_pct(self) -> float:
        return 100.0 * self.vectors_reused / self.unique_texts if self.unique_texts else 100.0

    def report(self) -> dict:
        d = asdict(self)
        d.pop("to_embed")
        d.pop("to_embed_tokens")
        d["reused_pct"] = round(self.reused_pct, 2)
        return d


def diff_documents(documents: pa.Table, live: dict[str, str]) -> dict[str, int]:
    """new / changed / deleted / unchanged documents against the live generation (doc_id -> doc_hash)."""
    now = dict(zip(documents.column("doc_id").to_pylist(), documents.column("doc_hash").to_pylist()))
    new = sum(1 for d in now if d not in live)
    changed = sum(1 for d, h in now.items() if d in live and live[d] != h)
    return {
        "docs_new": new,
        "docs_changed": changed,
        "docs_unchanged": len(now) - new - changed,
        "docs_deleted": sum(1 for d in live if d not in now),
    }


def make_plan(*, tenant: str, schema, chunks: pa.Table, documents: pa.Table, skipped: int,
              live_docs: dict[str, str], live_chunk_ids: set[str], cached: set[str],
              embedder, prices: Prices, throughput: "Throughput") -> Plan:
    """Compute the plan. ``cached`` is the set of text hashes the cache holds for this embedder."""
    ids = chunks.column("chunk_id").to_pylist()
    hashes = chunks.column("text_hash").to_pylist()
    texts = chunks.column("text").to_pylist()
    first_text: dict[str, str] = {}
    for h, t in zip(hashes, texts):
        first_text.setdefault(h, t)
    missing = [h for h in first_text if h not in cached]
    missing_texts = [first_text[h] for h in missing]
    full = embedder.full_token_counts(texts)
    limit = embedder.max_seq_length
    full_missing = embedder.full_token_counts(missing_texts)
    counts_missing = [min(n, limit) for n in full_missing]
    order = sorted(range(len(missing)), key=lambda i: -counts_missing[i])
    tokens = int(sum(counts_missing))
    cl100k_each = get_tokenizer("cl100k_base").count_many(missing_texts) if missing_texts else []
    cl100k = int(sum(cl100k_each))
    rate, source = throughput.get(embedder)
    seconds = tokens / rate if rate > 0 else 0.0
    id_set = set(ids)
    return Plan(
        tenant=tenant,
        chunker=schema.ref,
        chunker_fp=schema.fingerprint(),
        embedder=embedder.name,
        embedder_fp=embedder.fingerprint,
        device=embedder.device,
        **diff_documents(documents, live_docs),
        docs_skipped=skipped,
        chunks_total=len(ids),
        chunks_unchanged=len(id_set & live_chunk_ids),
        chunks_new=len(id_set - live_chunk_ids),
        chunks_removed=len(live_chunk_ids - id_set),
        unique_texts=len(first_text),
        vectors_reused=len(first_text) - len(missing),
        duplicates_in_run=len(hashes) - len(first_text),
        texts_to_embed=len(missing),
        tokens_to_embed=tokens,
        tokens_to_embed_cl100k=cl100k,
        truncated_chunks=sum(1 for n in full if n > limit),
        truncated_to_embed=sum(1 for n in full_missing if n > limit),
        max_input_tokens=limit,
        throughput_tokens_per_s=round(rate, 1),
        throughput_source=source,
        est_seconds=round(seconds, 3),
        cost_usd=prices.seconds_usd(seconds, embedder.device),
        hosted_usd=prices.hosted_usd(cl100k),
        to_embed={missing[i]: missing_texts[i] for i in order},
        to_embed_tokens={missing[i]: (counts_missing[i], cl100k_each[i]) for i in order},
    )


class Throughput:
    """Measured embedding throughput (model tokens/s) per embedder and device, kept on this machine.

    Updated after every real run; if nothing was measured yet, a short
    calibration embeds synthetic text (never tenant data, never cached).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _key(self, embedder) -> str:
        return f"{embedder.fingerprint}:{embedder.device}"

    def record(self, embedder, tokens: int, seconds: float) -> None:
        if tokens < 2000 or seconds <= 0:  # too small to say anything about speed
            return
        data = self._load()
        data[self._key(embedder)] = {"tokens_per_s": tokens / seconds, "measured_at": time.time(), "tokens": tokens}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.path)

    def get(self, embedder) -> tuple[float, str]:
        entry = self._load().get(self._key(embedder))
        if entry:
            return float(entry["tokens_per_s"]), "measured on this machine by the last run"
        rate = self.calibrate(embedder)
        return rate, "calibrated on this machine just now (synthetic text)"

    def calibrate(self, embedder, n: int = 64) -> float:
        words = "index chunk embedding tenant retrieval vector budget schema generation promote".split()
        texts = [" ".join(words[(i + j) % len(words)] for j in range(120)) + f" {i}" for i in range(n)]
        embedder.embed(texts[:4])  # warm-up: first call pays for lazy initialisation
        t0 = time.perf_counter()
        embedder.embed(texts)
        seconds = time.perf_counter() - t0
        tokens = sum(embedder.token_counts(texts))
        self.record(embedder, tokens, seconds)
        return tokens / seconds
