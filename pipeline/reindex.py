"""The reindex of one tenant, stage by stage: documents -> chunks -> embeddings -> tenant_index.

Each stage is a plain function the CLI and the Dagster assets both call. The
CLI's :func:`reindex` plans first and writes nothing until the plan is within
budget.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from pipeline.cache import EmbeddingCache
from pipeline.chunking import chunk_documents, write_chunks
from pipeline.cost import Plan, Prices, Throughput, make_plan
from pipeline.documents import load_documents, write_documents
from pipeline.faults import fault_point
from pipeline.index import GenerationError, current_id, live_state, load_generation, promote, read_manifest, write_generation
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


class ChecksFailed(RuntimeError):
    """A gate failed on a candidate generation; it was written but not promoted (the live one is unchanged)."""

    def __init__(self, generation: str, gates: list["Gate"]) -> None:
        self.generation = generation
        self.gates = gates
        failed = "; ".join(f"{g.name}: {g.summary}" for g in gates if not g.passed)
        super().__init__(f"candidate generation {generation} not promoted: {failed}")


@dataclass(frozen=True)
class Gate:
    """One property a run must have before its generation goes live (a blocking asset check in Dagster)."""

    name: str
    passed: bool
    summary: str
    metadata: dict = field(default_factory=dict)  # numbers stay numbers, so Dagster can plot them


def resolve_schema(store: TenantStore, tenant: str, chunker: str | None) -> SchemaFile:
    """The schema a run uses: the explicit ref, else the tenant's pinned one, else default@1."""
    settings = store.settings(tenant) if store.exists(tenant) else None
    return SchemaRegistry().get(chunker or (settings.chunker if settings else None) or "default@1")


def resolve(store: TenantStore, tenant: str, source: str | Path | None, chunker: str | None) -> tuple[Path, SchemaFile]:
    """The source folder/file and schema a run uses: explicit arguments, else the tenant's settings."""
    settings = store.settings(tenant) if store.exists(tenant) else None
    src = source or (settings.source if settings else None)
    if not src:
        raise TenantError(f"no source for tenant {tenant!r}: pass --source PATH or run `ragindex tenants add {tenant} --source PATH`")
    return Path(src), resolve_schema(store, tenant, chunker)


def plan_embeddings(store: TenantStore, tenant: str, schema: SchemaFile, documents: pa.Table, chunks: pa.Table,
                    embedder, prices: Prices, skipped: int = 0) -> Plan:
    """The exact plan for ``chunks`` against the tenant's live generation and cache. Reads, never writes."""
    paths = store.paths(tenant)
    live_docs, live_chunks = live_state(paths) if paths.root.exists() else ({}, set())
    cached = cached_hashes(store, tenant, embedder.fingerprint, chunks.column("text_hash").to_pylist())
    return make_plan(
        tenant=tenant, schema=schema, chunks=chunks, documents=documents, skipped=skipped,
        live_docs=live_docs, live_chunk_ids=live_chunks, cached=cached, embedder=embedder, prices=prices,
        throughput=Throughput(store.root / "throughput.json"),
    )


def cached_hashes(store: TenantStore, tenant: str, embedder_fp: str, text_hashes) -> set[str]:
    """Which of ``text_hashes`` have a vector in the tenant's cache under ``embedder_fp`` (empty if no cache)."""
    path = store.paths(tenant).cache
    if not path.exists():
        return set()
    with EmbeddingCache(path, read_only=True) as cache:
        return cache.cached_hashes(embedder_fp, list(dict.fromkeys(text_hashes)))


def prepare(store: TenantStore, tenant: str, source: Path, schema: SchemaFile, embedder,
            prices: Prices, progress: bool = False) -> Prepared:
    """Read, chunk and plan in memory. Writes nothing (the dry run of `ragindex plan`)."""
    documents, report = load_documents(source)
    chunks = chunk_documents(tenant, documents, schema, progress=progress)
    plan = plan_embeddings(store, tenant, schema, documents, chunks, embedder, prices, skipped=len(report.skipped))
    return Prepared(tenant, schema, documents, report, chunks, plan)


def budget_gate(plan: Plan, budget: Budget) -> Gate:
    """The plan is within --budget-tokens / --max-cost (checked before anything is embedded)."""
    reasons = budget.violations(plan)
    meta = {"planned_tokens": plan.tokens_to_embed, "planned_cost_usd": float(plan.cost_usd)}
    if budget.tokens is not None:
        meta["budget_tokens"] = budget.tokens
    if budget.cost_usd is not None:
        meta["max_cost_usd"] = float(budget.cost_usd)
    summary = "; ".join(reasons) if reasons else ("no budget set" if budget == Budget() else "plan within budget")
    return Gate("budget_respected", not reasons, summary, meta)


def new_run_id() -> str:
    return f"run-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}-{os.getpid()}"


def embed_run(store: TenantStore, tenant: str, plan: Plan, embedder, prices: Prices, progress: bool = False) -> dict:
    """Embed the plan's texts into the tenant's cache under a new ledger run; return the ledger row.

    The caller holds the tenant's lock.
    """
    run_id = new_run_id()
    with EmbeddingCache(store.paths(tenant).cache) as cache:
        cache.start_run(run_id, tenant, plan.chunker, embedder.fingerprint, embedder.device, plan)
        embed_missing(cache, embedder, plan, run_id, prices, progress=progress)
        ledger = cache.finish_run(run_id)
    Throughput(store.root / "throughput.json").record(embedder, ledger["tokens"], ledger["seconds"])
    return ledger


def last_run(store: TenantStore, tenant: str) -> dict:
    """The tenant's latest complete embedding run (ledger row); GenerationError-style message if none."""
    paths = store.paths(tenant)
    runs = []
    if paths.cache.exists():
        with EmbeddingCache(paths.cache, read_only=True) as cache:
            runs = [r for r in cache.runs() if r["status"] == "complete"]
    if not runs:
        raise TenantError(f"tenant {tenant!r} has no complete embedding run; materialize `embeddings` "
                          f"(or run `ragindex reindex --tenant {tenant}`) first")
    return runs[-1]


def build_candidate(store: TenantStore, tenant: str, schema: SchemaFile, chunks: pa.Table, embedder, ledger: dict,
                    documents: int, skipped: int = 0) -> str:
    """Write a complete, unpromoted generation from cached vectors (never embeds); return its id."""
    info = {
        "chunker": schema.ref,
        "chunker_fp": schema.fingerprint(),
        "embedder": embedder.name,
        "embedder_fp": embedder.fingerprint,
        "run_id": ledger["run_id"],
        "counts": {"documents": documents, "chunks": chunks.num_rows,
                   "unique_texts": len(set(chunks.column("text_hash").to_pylist())), "skipped": skipped},
        "plan": {"texts_to_embed": ledger["planned_texts"], "tokens_to_embed": ledger["planned_tokens"],
                 "cost_usd": ledger["planned_cost_usd"]},
        "embed_seconds": ledger["seconds"],
    }
    with EmbeddingCache(store.paths(tenant).cache, read_only=True) as cache:
        return build_generation(store, tenant, chunks, cache, embedder, info)


def consistency_gate(store: TenantStore, tenant: str, gen_id: str, chunks: pa.Table) -> Gate:
    """The generation loads (checksums match) and holds exactly one vector per unique chunk of the run."""
    expected = set(chunks.column("chunk_id").to_pylist())
    try:
        gen = load_generation(store.paths(tenant), gen_id)
    except GenerationError as exc:
        return Gate("index_consistency", False, str(exc), {"chunks": len(expected)})
    ids = gen.rows.column("chunk_id").to_pylist()
    got = set(ids)
    meta = {"vectors": int(gen.index.ntotal), "chunks": len(expected), "missing": len(expected - got),
            "extra": len(got - expected), "duplicate_rows": len(ids) - len(got)}
    passed = gen.index.ntotal == len(expected) and got == expected and len(ids) == len(got)
    summary = f"{gen.index.ntotal} vectors for {len(expected)} chunks" + ("" if passed else
              f" ({meta['missing']} missing, {meta['extra']} extra, {meta['duplicate_rows']} duplicated)")
    return Gate("index_consistency", passed, summary, meta)


def quality_gate(store: TenantStore, tenant: str, gen_id: str, embedder, tolerance: float = 0.0) -> Gate:
    """Retrieval quality of ``gen_id`` is not worse than the live generation's on the tenant's eval set.

    Every metric is higher-is-better (recall, nDCG, IoU...); a drop larger than
    ``tolerance`` on any of them fails. Passes, saying why, when the tenant has
    no eval set or no live generation to compare with.
    """
    try:
        from pipeline.evaluate import tenant_quality
    except ImportError:  # the evaluation package is not installed in this checkout yet
        return Gate("quality_not_worse", True, "no eval set (pipeline.evaluate.tenant_quality not available)", {"status": "no eval set"})
    candidate = tenant_quality(store, tenant, gen_id, embedder)
    if candidate is None:
        return Gate("quality_not_worse", True, "no eval set", {"status": "no eval set"})
    meta: dict = {f"eval_{m}": float(v) for m, v in candidate.items()}
    live = current_id(store.paths(tenant))
    if live is None or live == gen_id:
        return Gate("quality_not_worse", True, "first generation: nothing to compare with", {"status": "no live generation", **meta})
    baseline = tenant_quality(store, tenant, live, embedder) or {}
    worse = []
    for m, v in candidate.items():
        if m in baseline:
            meta[f"live_{m}"] = float(baseline[m])
            meta[f"delta_{m}"] = float(v - baseline[m])
            if v < baseline[m] - tolerance:
                worse.append(f"{m} {v:.4f} < live {baseline[m]:.4f}")
    summary = ("worse than live " + live + ": " + ", ".join(worse)) if worse else f"not worse than live {live}"
    return Gate("quality_not_worse", not worse, summary, {"status": "compared", "live_generation": live, **meta})


def promote_if_passed(store: TenantStore, tenant: str, gen_id: str, gates: list[Gate]) -> None:
    """Point CURRENT at ``gen_id`` only if every gate passed; else raise ChecksFailed (live unchanged)."""
    if not all(g.passed for g in gates):
        raise ChecksFailed(gen_id, gates)
    promote(store.paths(tenant), gen_id)


# -- content versions: equal content gives equal versions (Dagster DataVersion), whatever the run


def _digest(lines) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def documents_version(documents: pa.Table) -> str:
    pairs = zip(documents.column("doc_id").to_pylist(), documents.column("doc_hash").to_pylist())
    return _digest(sorted(f"{d}\t{h}" for d, h in pairs))


def chunks_version(chunks: pa.Table) -> str:
    return _digest(f"{c}\t{h}" for c, h in zip(chunks.column("chunk_id").to_pylist(), chunks.column("text_hash").to_pylist()))


def embeddings_version(embedder_fp: str, text_hashes) -> str:
    """Over the embed keys (embedder_fp, text_hash) that have a vector."""
    return _digest([embedder_fp, *sorted(set(text_hashes))])


def generation_version(store: TenantStore, tenant: str, gen_id: str) -> str:
    """Over what the generation holds (its files' checksums), not its id or creation time."""
    files = read_manifest(store.paths(tenant), gen_id).get("files", {})
    return _digest(f"{name}\t{digest}" for name, digest in sorted(files.items()))


def embed_missing(cache: EmbeddingCache, embedder, plan: Plan, run_id: str, prices: Prices, progress: bool = False,
                  commit_every: int = COMMIT_EVERY) -> None:
    """Embed exactly the plan's texts, committing vectors and ledger totals every ``commit_every`` texts."""
    items = list(plan.to_embed.items())  # longest first
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
            tokens = [plan.to_embed_tokens[h][0] for h in hashes]
            t0 = time.perf_counter()
            vectors = embedder.embed(texts, on_batch=on_batch, lengths=tokens)
            seconds = time.perf_counter() - t0
            cache.commit_batch(run_id, embedder.fingerprint, hashes, vectors, tokens,
                               sum(plan.to_embed_tokens[h][1] for h in hashes), seconds,
                               prices.seconds_usd(seconds, embedder.device))
            fault_point("mid-embedding")
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
    """Plan, check the budget, then write documents, chunks, embeddings and a generation, promoted if its gates pass.

    The same stages, in the same order, as the Dagster assets documents -> chunks
    -> embeddings -> tenant_index. Raises BudgetExceeded (nothing changed) or
    ChecksFailed (candidate written, live generation unchanged).
    """
    prices = prices or Prices.load()
    src, schema = resolve(store, tenant, source, chunker)
    preflight = None
    if budget != Budget() and not store.exists(tenant):
        # A new tenant over budget must leave nothing behind, not even its directory and
        # lock file, so check before creating it.
        preflight = prepare(store, tenant, src, schema, embedder, prices, progress=progress)
        reasons = budget.violations(preflight.plan)
        if reasons:
            raise BudgetExceeded(preflight.plan, reasons)
    paths = store.create(tenant)
    # Plan under the lock: a plan made before another writer finished would pay
    # again for the texts that writer has just committed. The preflight plan of a
    # new tenant still holds if no writer has written its cache or a generation since.
    with tenant_lock(paths.lock, wait=wait):
        untouched = preflight is not None and not paths.cache.exists() and current_id(paths) is None
        prepared = preflight if untouched else prepare(store, tenant, src, schema, embedder, prices, progress=progress)
        plan = prepared.plan
        reasons = budget.violations(plan)
        if reasons:
            raise BudgetExceeded(plan, reasons)
        write_documents(paths.documents, prepared.documents)
        fault_point("documents-written")
        write_chunks(paths.chunks(schema.ref), prepared.chunks)
        fault_point("chunks-written")
        ledger = embed_run(store, tenant, plan, embedder, prices, progress=progress)
        gen = build_candidate(store, tenant, schema, prepared.chunks, embedder, ledger,
                              documents=prepared.documents.num_rows, skipped=len(prepared.report.skipped))
        fault_point("generation-built")
        gates = [consistency_gate(store, tenant, gen, prepared.chunks), quality_gate(store, tenant, gen, embedder)]
        promote_if_passed(store, tenant, gen, gates)
    return ReindexResult(ledger["run_id"], plan, ledger, gen, prepared.report.skipped)

