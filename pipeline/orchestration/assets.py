"""The four tenant-partitioned assets: documents -> chunks -> embeddings -> tenant_index.

Each asset is a thin call into the library stages of pipeline/reindex.py (the
same functions `reindex()` runs), takes the tenant's writer lock while it
writes, and returns a content-derived DataVersion so an unchanged upstream
leaves downstream fresh. Promotion happens inside ``tenant_index``, and only
when its blocking checks pass (see docs/dagster.md).
"""


from typing import Optional

import dagster as dg
import pyarrow.parquet as pq

from pipeline.chunking import chunk_documents, write_chunks
from pipeline.cost import diff_documents
from pipeline.documents import load_documents, read_documents, write_documents
from pipeline.faults import fault_point
from pipeline.index import current_id, live_state, read_manifest
from pipeline.locking import tenant_lock
from pipeline.orchestration.meta import check_result, markdown, plain, summary_first, typed
from pipeline.orchestration.resources import EmbedderResource, PricesResource, TenantStoreResource
from pipeline.reindex import (
    Budget, ChecksFailed, budget_gate, build_candidate, cached_hashes, chunks_version, consistency_gate, documents_version,
    embed_run, embeddings_version, generation_version, last_run, plan_embeddings, promote_if_passed,
    quality_gate, resolve, resolve_schema,
)
from pipeline.tenants import TenantError

tenants = dg.DynamicPartitionsDefinition(name="tenants")
GROUP = "ragindex"


# How long an asset waits for the tenant's writer lock. The first asset fails at once
# when another writer holds it (as `ragindex reindex` without --wait does). Once a run
# has started, its later assets queue behind a writer that came in between them (a CLI
# reindex, say) instead of failing halfway through the run.
FIRST_ASSET_LOCK_WAIT_S = 0.0
IN_RUN_LOCK_WAIT_S = 3600.0


class DocumentsConfig(dg.Config):
    source: Optional[str] = None  # default: the tenant's registered source
    lock_wait_s: float = FIRST_ASSET_LOCK_WAIT_S


class ChunksConfig(dg.Config):
    chunker: Optional[str] = None  # default: the tenant's pinned schema NAME@VERSION
    lock_wait_s: float = IN_RUN_LOCK_WAIT_S


class EmbeddingsConfig(dg.Config):
    chunker: Optional[str] = None
    budget_tokens: Optional[int] = None
    max_cost_usd: Optional[float] = None
    lock_wait_s: float = IN_RUN_LOCK_WAIT_S


class TenantIndexConfig(dg.Config):
    chunker: Optional[str] = None
    quality_tolerance: float = 0.0  # allowed drop of any eval metric against the live generation
    lock_wait_s: float = IN_RUN_LOCK_WAIT_S


def _latest_metadata(context: dg.AssetExecutionContext, asset: str) -> dict:
    """Plain metadata of this partition's latest materialization of ``asset`` (empty if none)."""
    res = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[context.partition_key]), limit=1)
    return plain(res.records[0].asset_materialization.metadata) if res.records else {}


def _require(path, tenant: str, asset: str):
    if not path.exists():
        raise TenantError(f"tenant {tenant!r} has no {path.name} yet; materialize `{asset}` for this partition first")
    return path


def build_assets(chunks_code_version: str) -> list[dg.AssetsDefinition]:
    """The asset graph; ``chunks_code_version`` comes from the schemas in use (versions.py)."""

    @dg.asset(partitions_def=tenants, group_name=GROUP, kinds={"parquet"},
              description="The tenant's source parsed, normalised and content-hashed (documents.parquet).")
    def documents(context: dg.AssetExecutionContext, config: DocumentsConfig, store: TenantStoreResource) -> dg.MaterializeResult:
        tenant, st = context.partition_key, store.get()
        src, _ = resolve(st, tenant, config.source, None)
        table, report = load_documents(src)
        paths = st.create(tenant)
        diff = diff_documents(table, live_state(paths)[0])
        with tenant_lock(paths.lock, wait=config.lock_wait_s):
            write_documents(paths.documents, table)
        skipped = [{"where": s.where, "reason": s.reason} for s in report.skipped]
        return dg.MaterializeResult(
            data_version=dg.DataVersion(documents_version(table)),
            metadata=summary_first({
                **typed({"documents": table.num_rows, **diff, "docs_skipped": len(skipped), "source": str(src)}),
                "skipped_inputs": dg.MetadataValue.json(skipped),
                "summary": markdown(f"documents of {tenant}", [
                    ("documents", table.num_rows), ("new / changed / deleted", f"{diff['docs_new']} / {diff['docs_changed']} / {diff['docs_deleted']}"),
                    ("skipped inputs", len(skipped)), ("source", f"`{src}`")]),
            }),
        )

    @dg.asset(partitions_def=tenants, group_name=GROUP, kinds={"parquet"}, deps=[documents], code_version=chunks_code_version,
              description="Documents cut by the tenant's chunker schema NAME@VERSION (chunks/<ref>.parquet).")
    def chunks(context: dg.AssetExecutionContext, config: ChunksConfig, store: TenantStoreResource) -> dg.MaterializeResult:
        tenant, st = context.partition_key, store.get()
        paths = st.paths(tenant)
        schema = resolve_schema(st, tenant, config.chunker)
        table = chunk_documents(tenant, read_documents(_require(paths.documents, tenant, "documents")), schema)
        with tenant_lock(paths.lock, wait=config.lock_wait_s):
            write_chunks(paths.chunks(schema.ref), table)
        ids = set(table.column("chunk_id").to_pylist())
        live = live_state(paths)[1]
        tokens = table.column("token_count").to_pylist()
        unique = len(set(table.column("text_hash").to_pylist()))
        numbers = {"chunks": table.num_rows, "chunks_new": len(ids - live), "chunks_unchanged": len(ids & live),
                   "chunks_removed": len(live - ids), "unique_texts": unique, "duplicate_chunks": table.num_rows - unique,
                   "mean_tokens": float(sum(tokens) / len(tokens)) if tokens else 0.0, "max_tokens": max(tokens, default=0)}
        return dg.MaterializeResult(
            data_version=dg.DataVersion(chunks_version(table)),
            metadata=summary_first({
                **typed({"chunker": schema.ref, "chunker_fp": schema.fingerprint(), **numbers}),
                "summary": markdown(f"chunks of {tenant} with {schema.ref}", [
                    ("chunks", numbers["chunks"]), ("new / unchanged / removed",
                     f"{numbers['chunks_new']} / {numbers['chunks_unchanged']} / {numbers['chunks_removed']}"),
                    ("unique texts", unique), ("mean tokens", f"{numbers['mean_tokens']:.1f}")]),
            }),
        )

    @dg.asset(partitions_def=tenants, group_name=GROUP, kinds={"duckdb"}, deps=[chunks],
              check_specs=[dg.AssetCheckSpec("budget_respected", asset="embeddings", blocking=True,
                                             description="The plan is within the run's token and money budget.")],
              description="Missing vectors embedded into the tenant's cache, exactly as planned; ledger row per run.")
    def embeddings(context: dg.AssetExecutionContext, config: EmbeddingsConfig, store: TenantStoreResource,
                   embedder: EmbedderResource, prices: PricesResource) -> dg.MaterializeResult:
        tenant, st, emb, price_table = context.partition_key, store.get(), embedder.get(), prices.get()
        paths = st.paths(tenant)
        schema = resolve_schema(st, tenant, config.chunker)
        docs = read_documents(_require(paths.documents, tenant, "documents"))
        table = pq.read_table(_require(paths.chunks(schema.ref), tenant, "chunks"))
        skipped = int(_latest_metadata(context, "documents").get("docs_skipped", 0))
        ledger = None
        fault_point("embeddings-lock")
        # Plan under the lock, as reindex() does: another writer (a CLI reindex) may
        # commit vectors between this run's assets, and a plan made before it
        # finished would pay for them again.
        with tenant_lock(paths.lock, wait=config.lock_wait_s):
            plan = plan_embeddings(st, tenant, schema, docs, table, emb, price_table, skipped=skipped)
            gate = budget_gate(plan, Budget(config.budget_tokens, config.max_cost_usd))
            if gate.passed:  # over budget: embed nothing; the failed blocking check stops tenant_index
                ledger = embed_run(st, tenant, plan, emb, price_table)
        hashes = list(dict.fromkeys(table.column("text_hash").to_pylist()))
        have = cached_hashes(st, tenant, emb.fingerprint, hashes)
        done = ledger or {"run_id": None, "texts": 0, "tokens": 0, "tokens_cl100k": 0, "seconds": 0.0, "cost_usd": 0.0}
        numbers = {
            "texts_planned": plan.texts_to_embed, "tokens_planned": plan.tokens_to_embed,
            "texts_embedded": int(done["texts"]), "tokens_embedded": int(done["tokens"]),
            "tokens_embedded_cl100k": int(done["tokens_cl100k"]), "unique_texts": plan.unique_texts,
            "vectors_reused": plan.vectors_reused, "reused_pct": float(round(plan.reused_pct, 2)),
            "duplicate_chunks": plan.duplicates_in_run, "truncated_chunks": plan.truncated_chunks,
            "planned_cost_usd": float(plan.cost_usd), "actual_cost_usd": float(done["cost_usd"]),
            "est_seconds": float(plan.est_seconds), "embed_seconds": float(done["seconds"]),
            "throughput_tokens_per_s": float(done["tokens"] / done["seconds"]) if done["seconds"] else 0.0,
            "vectors_missing": len(hashes) - len(have),
        }
        return dg.MaterializeResult(
            data_version=dg.DataVersion(embeddings_version(emb.fingerprint, have)),
            check_results=[check_result(gate)],
            metadata=summary_first({
                **typed({"chunker": schema.ref, "embedder": emb.name, "device": emb.device, "run_id": done["run_id"], **numbers}),
                "hosted_usd": dg.MetadataValue.json(plan.hosted_usd),  # the same tokens at hosted-API prices
                "plan": dg.MetadataValue.json(plan.report()),
                "ledger": dg.MetadataValue.json(ledger or {}),
                "summary": markdown(f"embeddings of {tenant} with {emb.name} on {emb.device}", [
                    ("texts embedded / planned", f"{numbers['texts_embedded']} / {numbers['texts_planned']}"),
                    ("tokens embedded / planned", f"{numbers['tokens_embedded']:,} / {numbers['tokens_planned']:,}"),
                    ("reused from cache", f"{plan.vectors_reused} ({numbers['reused_pct']}%)"),
                    ("cost actual / planned", f"${numbers['actual_cost_usd']:.3g} / ${numbers['planned_cost_usd']:.3g}"),
                    ("throughput", f"{numbers['throughput_tokens_per_s']:,.0f} tok/s"), ("budget", gate.summary)]),
            }),
        )

    @dg.asset(partitions_def=tenants, group_name=GROUP, kinds={"faiss"}, deps=[embeddings],
              check_specs=[
                  dg.AssetCheckSpec("index_consistency", asset="tenant_index", blocking=True,
                                    description="The candidate generation holds one vector per unique chunk and matches its checksums."),
                  dg.AssetCheckSpec("quality_not_worse", asset="tenant_index", blocking=True,
                                    description="Retrieval quality on the tenant's eval set is not worse than the live generation's."),
              ],
              description="A new FAISS generation, promoted to CURRENT only if its blocking checks pass.")
    def tenant_index(context: dg.AssetExecutionContext, config: TenantIndexConfig, store: TenantStoreResource,
                     embedder: EmbedderResource) -> dg.MaterializeResult:
        tenant, st, emb = context.partition_key, store.get(), embedder.get()
        paths = st.paths(tenant)
        schema = resolve_schema(st, tenant, config.chunker)
        table = pq.read_table(_require(paths.chunks(schema.ref), tenant, "chunks"))
        docs_meta = _latest_metadata(context, "documents")
        before = current_id(paths)
        with tenant_lock(paths.lock, wait=config.lock_wait_s):
            gen = build_candidate(st, tenant, schema, table, emb, last_run(st, tenant),
                                  documents=int(docs_meta.get("documents", 0)), skipped=int(docs_meta.get("docs_skipped", 0)))
            gates = [consistency_gate(st, tenant, gen, table),
                     quality_gate(st, tenant, gen, emb, tolerance=config.quality_tolerance)]
            try:
                promote_if_passed(st, tenant, gen, gates)
                promoted = True
            except ChecksFailed:
                promoted = False  # the failed blocking check(s) fail this step; CURRENT still names `before`
        manifest = read_manifest(paths, gen)
        quality = gates[1].metadata
        evals = {k: v for k, v in quality.items() if k.startswith(("eval_", "live_", "delta_"))}
        return dg.MaterializeResult(
            data_version=dg.DataVersion(generation_version(st, tenant, gen)),
            check_results=[check_result(g) for g in gates],
            metadata=summary_first({
                **typed({"candidate": gen, "generation": current_id(paths), "previous_generation": before or "(none)",
                         "promoted": promoted, "vectors": int(manifest["vectors"]), "dim": int(manifest["dim"]),
                         "index_type": manifest["index_type"], "chunker": schema.ref, "embedder": emb.name,
                         "eval_status": quality.get("status", ""), **evals}),
                "summary": markdown(f"tenant_index of {tenant}", [
                    ("candidate", f"`{gen}`"), ("promoted", "yes" if promoted else "**no** (a blocking check failed)"),
                    ("live generation", f"`{current_id(paths)}`"), ("vectors", manifest["vectors"]),
                    ("index", manifest["index_type"]), *[(g.name, ("pass: " if g.passed else "FAIL: ") + g.summary) for g in gates]]),
            }),
        )

    return [documents, chunks, embeddings, tenant_index]

