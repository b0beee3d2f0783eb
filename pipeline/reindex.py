"""The reindex of one tenant, stage by stage: documents -> chunks -> embeddings -> tenant_index.

Each stage is a plain function the CLI and the Dagster assets both call. The
CLI's :func:`reindex` plans first and writes nothing until the plan is within
budget.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from chunkers.tokenizers import get_tokenizer
from pipeline.cache import EmbeddingCache
from pipeline.chunking import chunk_documents, write_chunks
from pipeline.cost import Plan, Prices, Throughput, make_plan
from pipeline.documents import load_documents, write_documents
from pipeline.index import live_state, promote, write_generation
from pipeline.locking import tenant_lock
from pipeline.sources import SourceReport
from pipeline.tenants import TenantError, TenantStore
from schemas import SchemaRegistry
from schemas.chunker import SchemaFile
from schemas.tables import GENERATION_IDS

COMMIT_EVERY = 256  # texts per cache transaction: a crash loses at most this many


class BudgetExceeded(RuntimeError):
    """The plan is over --budget-tokens or --max-cost; nothing was changed."""

    def __init__(self, plan: Plan, reasons: list[str]) -> None:
        self.plan = plan
        self.reasons = reasons
        super().__init__("; ".join(reasons))


@dataclass(frozen=True)
class Budget:
    tokens: int | None = None
    cost_usd: float | None = None

    def violations(self, plan: Plan) -> list[str]:
        out = []
        if self.tokens is not None and plan.tokens_to_embed > self.tokens:
            out.append(f"{plan.tokens_to_embed:,} tokens to embed > --budget-tokens {self.tokens:,}")
        if self.cost_usd is not None and plan.cost_usd > self.cost_usd:
            out.append(f"estimated ${plan.cost_usd:.6f} > --max-cost ${self.cost_usd:.6f}")
        return out


@dataclass
class Prepared:
    """Everything a reindex needs to know before it writes anything."""

    tenant: str
    schema: SchemaFile
    documents: pa.Table
    report: SourceReport
    chunks: pa.Table
    plan: Plan


@dataclass
class ReindexResult:
    run_id: str
    plan: Plan
    ledger: dict
    generation: str
    skipped: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "tenant": self.plan.tenant,
            "run_id": self.run_id,
            "generation": self.generation,
            "plan": self.plan.report(),
            "ledger": self.ledger,
            "skipped": [{"where": s.where, "reason": s.reason} for s in self.skipped],
        }


def resolve(store: TenantStore, tenant: str, source: str | Path | None, chunker: str | None) -> tuple[Path, SchemaFile]:
    """The source folder/file and schema a run uses: explicit arguments, else the tenant's settings."""
    settings = store.settings(tenant) if store.exists(tenant) else None
    src = source or (settings.source if settings else None)
    if not src:
        raise TenantError(f"no source for tenant {tenant!r}: pass --source PATH or run `ragindex tenants add {tenant} --source PATH`")
    ref = chunker or (settings.chunker if settings else None) or "default@1"
    return Path(src), SchemaRegistry().get(ref)


def prepare(store: TenantStore, tenant: str, source: Path, schema: SchemaFile, embedder,
            prices: Prices, progress: bool = False) -> Prepared:
    """Read, chunk and plan in memory. Writes nothing (the dry run of `ragindex plan`)."""
    paths = store.paths(tenant)
    documents, report = load_documents(source)
    chunks = chunk_documents(tenant, documents, schema, progress=progress)
    live_docs, live_chunks = live_state(paths) if paths.root.exists() else ({}, set())
    hashes = list(dict.fromkeys(chunks.column("text_hash").to_pylist()))
    if paths.cache.exists():
        with EmbeddingCache(paths.cache, read_only=True) as cache:
            cached = cache.cached_hashes(embedder.fingerprint, hashes)
    else:
        cached = set()
    plan = make_plan(
        tenant=tenant, schema=schema, chunks=chunks, documents=documents, skipped=len(report.skipped),
        live_docs=live_docs, live_chunk_ids=live_chunks, cached=cached, embedder=embedder, prices=prices,
        throughput=Throughput(store.root / "throughput.json"),
    )
    return Prepared(tenant, schema, documents, report, chunks, plan)


def embed_missing(cache: EmbeddingCache, embedder, plan: Plan, run_id: str, prices: Prices, progress: bool = False,
                  commit_every: int = COMMIT_EVERY) -> None:
    """Embed exactly the plan's texts, committing vectors and ledger totals every ``commit_every`` texts."""
    items = list(plan.to_embed.items())  # longest first
    cl100k = get_tokenizer("cl100k_base")
    bar = tqdm(total=len(items), desc=f"embed {plan.tenant}", unit="text", disable=not progress, file=sys.stderr)
    tokens_done = 0
    t_start = time.perf_counter()

    def on_batch(n_texts: int, n_tokens: int) -> None:
        nonlocal tokens_done
        tokens_done += n_tokens
        elapsed = max(time.perf_counter() - t_start, 1e-9)
        bar.update(n_texts)
        bar.set_postfix_str(f"{bar.n / elapsed:,.0f} texts/s, {tokens_done / elapsed:,.0f} tok/s")

    try:
        for i in range(0, len(items), commit_every):
            group = items[i : i + commit_every]
            hashes = [h for h, _ in group]
            texts = [t for _, t in group]
            t0 = time.perf_counter()
            vectors = embedder.embed(texts, on_batch=on_batch)
            seconds = time.perf_counter() - t0
            cache.commit_batch(run_id, embedder.fingerprint, hashes, vectors, embedder.token_counts(texts),
                               sum(cl100k.count_many(texts)), seconds, prices.seconds_usd(seconds, embedder.device))
            _fault_point("mid-embedding")
    finally:
        bar.close()


def build_rows(chunks: pa.Table) -> pa.Table:
    """GENERATION_IDS rows for a chunk table: one vector per chunk, in chunk order."""
    n = chunks.num_rows
    return pa.table(
        {
            "row": pa.array(np.arange(n, dtype=np.int64)),
            **{c: chunks.column(c) for c in ("chunk_id", "doc_id", "doc_hash", "start", "end", "text_hash", "text", "heading_path")},
        }
    ).cast(GENERATION_IDS)


def build_generation(store: TenantStore, tenant: str, chunks: pa.Table, cache: EmbeddingCache, embedder, info: dict) -> str:
    """Write a new generation from cached vectors only (never embeds)."""
    rows = build_rows(chunks)
    vectors = cache.vectors(embedder.fingerprint, rows.column("text_hash").to_pylist(), embedder.dim)
    return write_generation(store.paths(tenant), rows, vectors, {"dim": embedder.dim, **info})


def reindex(store: TenantStore, tenant: str, *, source: str | Path | None = None, chunker: str | None = None,
            embedder, prices: Prices | None = None, budget: Budget = Budget(), progress: bool = False,
            wait: float = 0.0) -> ReindexResult:
    """Plan, check the budget, then write documents, chunks, embeddings and a promoted generation."""
    prices = prices or Prices.load()
    src, schema = resolve(store, tenant, source, chunker)
    paths = store.paths(tenant)
    prepared = prepare(store, tenant, src, schema, embedder, prices, progress=progress)
    plan = prepared.plan
    reasons = budget.violations(plan)
    if reasons:
        raise BudgetExceeded(plan, reasons)
    store.create(tenant)
    with tenant_lock(paths.lock, wait=wait):
        write_documents(paths.documents, prepared.documents)
        _fault_point("documents-written")
        write_chunks(paths.chunks(schema.ref), prepared.chunks)
        _fault_point("chunks-written")
        run_id = f"run-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}-{os.getpid()}"
        with EmbeddingCache(paths.cache) as cache:
            cache.start_run(run_id, tenant, schema.ref, embedder.fingerprint, embedder.device, plan)
            t0 = time.perf_counter()
            embed_missing(cache, embedder, plan, run_id, prices, progress=progress)
            ledger = cache.finish_run(run_id)
            Throughput(store.root / "throughput.json").record(embedder, ledger["tokens"], ledger["seconds"])
            gen = build_generation(
                store, tenant, prepared.chunks, cache, embedder,
                {
                    "chunker": schema.ref,
                    "chunker_fp": schema.fingerprint(),
                    "embedder": embedder.name,
                    "embedder_fp": embedder.fingerprint,
                    "run_id": run_id,
                    "counts": {"documents": prepared.documents.num_rows, "chunks": prepared.chunks.num_rows,
                               "unique_texts": plan.unique_texts, "skipped": len(prepared.report.skipped)},
                    "plan": {k: v for k, v in plan.report().items() if k in ("texts_to_embed", "tokens_to_embed", "cost_usd")},
                    "embed_seconds": time.perf_counter() - t0,
                },
            )
        _fault_point("generation-built")
        promote(paths, gen)
    return ReindexResult(run_id, plan, ledger, gen, prepared.report.skipped)


def _fault_point(name: str) -> None:
    """Test hook: ``RAGINDEX_FAULT=<name>`` kills the process here with SIGKILL (fault-injection suite)."""
    if os.environ.get("RAGINDEX_FAULT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
