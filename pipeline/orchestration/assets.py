"""The four tenant-partitioned assets: documents -> chunks -> embeddings -> tenant_index.

Each asset calls one stage of :class:`ragindex.indexing.run.TenantRun`, the same
stages `ragindex reindex` runs, and hands its result to the next through the
run's IO manager (Dagster's storage, not the tenant's directory). A run holds the
tenant's writer lock from before its first step to after its last, like every
other run: the ``writer`` resource (:class:`TenantWriterResource`) takes it when
the run starts, every step passes it to ``TenantRun(writer=...)``, and all steps
run in the run's one process (the in-process executor, location.py). So no other
writer can come in between two steps. documents and chunks write nothing;
embeddings checks the budget before its first write; tenant_index writes the
segment and generation, and promotes only when its blocking checks pass. Data
versions come from content (the documents digest, the schema and the model), so a
run that changed nothing reports the versions of the last one and nothing
downstream goes stale.
"""


import warnings
from typing import Optional

import dagster as dg

from ragindex._faults import fault_point
from ragindex.indexing.checks import ChecksFailed, Gate, deletion_gate
from ragindex.indexing.chunk import StagedChunks
from ragindex.indexing.commit import content_versions
from ragindex.indexing.plan import Budget
from ragindex.indexing.run import Embedded, TenantRun
from ragindex.ingest.changeset import ChangeSet
from ragindex.orchestration.meta import check_result, markdown, summary_first, typed
from ragindex.orchestration.resources import EmbedderResource, PricesResource, TenantStoreResource, TenantWriterResource
from ragindex.store.manifests import GenerationError, live_manifest

# Output(data_version=...) is marked beta; it is how a returned value carries its content version.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*data_version.*")

tenants = dg.DynamicPartitionsDefinition(name="tenants")
GROUP = "ragindex"
EMBEDDING_POOL = "embedding_api"


class DocumentsConfig(dg.Config):
    source: Optional[str] = None  # default: the tenant's registered source
    chunker: Optional[str] = None  # default: the tenant's pinned schema NAME@VERSION
    rescan: bool = False  # read every file, whatever its stat
    rebuild: bool = False  # chunk everything again into one new segment
    allow_deletions: Optional[bool] = None  # default: the tenant's setting (refuse deleting all, or over half)


class EmbeddingsConfig(dg.Config):
    budget_tokens: Optional[int] = None
    max_cost_usd: Optional[float] = None
    accept_model_drift: bool = False  # a hosted model changed behind its name: move to it (everything re-embedded)


class TenantIndexConfig(dg.Config):
    quality_tolerance: float = 0.0  # allowed drop of any eval metric against the live generation
    budget_tokens: Optional[int] = None  # applies if the live generation moved and the run must embed again
    max_cost_usd: Optional[float] = None


def _run(context, store: TenantStoreResource, embedder: EmbedderResource, prices: PricesResource, writer: TenantWriterResource,
         changes: ChangeSet | None, **kw) -> TenantRun:
    """This step's stage of the tenant's run, under the writer the run holds, configured like the change set
    that started it (or from the asset's config)."""
    if changes is not None:
        kw.setdefault("source", changes.config.source)
        kw.setdefault("chunker", changes.config.chunker)
    st, tenant = store.get(), context.partition_key
    return TenantRun(st, tenant, embedder=embedder.for_tenant(st, tenant), prices=prices.get(), writer=writer.get(tenant), **kw)


def build_assets(chunks_code_version: str) -> list[dg.AssetsDefinition]:
    """The asset graph; ``chunks_code_version`` comes from the schemas in use (versions.py)."""

    @dg.asset(partitions_def=tenants, group_name=GROUP, kinds={"python"},
              check_specs=[dg.AssetCheckSpec("deletions_within_limit", asset="documents", blocking=True,
                                             description="The run deletes neither every live document nor more than half.")],
              description="What changed in the tenant's source since its live generation (read only where the stat moved).")
    def documents(context: dg.AssetExecutionContext, config: DocumentsConfig, store: TenantStoreResource,
                  embedder: EmbedderResource, prices: PricesResource, writer: TenantWriterResource):
        run = _run(context, store, embedder, prices, writer, None, source=config.source, chunker=config.chunker,
                   rescan=config.rescan, rebuild=config.rebuild, allow_deletions=config.allow_deletions)
        cs = run.detect()
        c = cs.counts()
        skipped = [{"where": s.where, "reason": s.reason} for s in cs.skipped]
        after = cs.documents_after
        guard = deletion_gate(cs, run.allow_deletions)
        yield dg.Output(cs, data_version=dg.DataVersion(cs.docs_digest), metadata=summary_first({
            **typed({"documents": after, **c, "source": cs.config.source, "base_generation": cs.base or "(none)",
                     "rebuild": cs.rebuild or "", "unchanged_run": cs.is_noop, "detect_seconds": float(cs.seconds)}),
            "skipped_inputs": dg.MetadataValue.json(skipped),
            "conversions": dg.MetadataValue.json(cs.conversions.to_dict()),
            "summary": markdown(f"documents of {context.partition_key}", [
                ("documents", after), ("new / changed / deleted", f"{c['docs_new']} / {c['docs_changed']} / {c['docs_deleted']}"),
                ("files read / seen", f"{cs.files_read} / {cs.files_seen}"),
                ("files converted (pages, seconds)", f"{cs.conversions.converted} ({cs.conversions.pages} pages, "
                 f"{cs.conversions.seconds:.1f} s); {cs.conversions.cached} from the conversion cache"),
                ("skipped inputs", len(skipped)),
                ("source", f"`{cs.config.source}`"), ("deletions", guard.summary)]),
        }))
        yield check_result(guard)  # a refused mass deletion stops the run here: nothing was written

    @dg.asset(partitions_def=tenants, group_name=GROUP, kinds={"python"}, code_version=chunks_code_version,
              description="The new and changed documents cut by the tenant's chunker schema NAME@VERSION.")
    def chunks(context: dg.AssetExecutionContext, documents: ChangeSet, store: TenantStoreResource,
               embedder: EmbedderResource, prices: PricesResource, writer: TenantWriterResource) -> dg.Output[StagedChunks]:
        run = _run(context, store, embedder, prices, writer, documents)
        staged = run.chunk(documents)
        tokens = staged.rows.column("token_count").to_pylist()
        unique = len(set(staged.rows.column("text_hash").to_pylist()))
        numbers = {"chunks": staged.rows_after, "chunks_written": staged.rows.num_rows, "chunks_new": staged.chunks_new,
                   "chunks_unchanged": staged.rows_after - staged.chunks_new, "chunks_removed": staged.chunks_removed,
                   "unique_texts": unique, "duplicate_chunks": staged.rows.num_rows - unique,
                   "docs_chunked": staged.docs_chunked, "docs_reused": staged.docs_reused,
                   "mean_tokens": float(sum(tokens) / len(tokens)) if tokens else 0.0, "max_tokens": max(tokens, default=0)}
        versions = content_versions(documents.docs_digest, documents.config.chunker_fp, documents.config.embedder_fp)
        return dg.Output(staged, data_version=dg.DataVersion(versions["chunks"]), metadata=summary_first({
            **typed({"chunker": documents.config.chunker, "chunker_fp": documents.config.chunker_fp, **numbers}),
            "summary": markdown(f"chunks of {context.partition_key} with {documents.config.chunker}", [
                ("chunks after this run", numbers["chunks"]),
                ("new / unchanged / removed", f"{numbers['chunks_new']} / {numbers['chunks_unchanged']} / {numbers['chunks_removed']}"),
                ("documents chunked / reused", f"{staged.docs_chunked} / {staged.docs_reused}"),
                ("mean tokens", f"{numbers['mean_tokens']:.1f}")]),
        }))

    # pool: how many embeddings steps may run at once over all runs (the instance's `concurrency: pools:`,
    # dagster_home/postgres/dagster.yaml), so parallel tenant runs do not all call a hosted API at once
    @dg.asset(partitions_def=tenants, group_name=GROUP, kinds={"duckdb"}, pool=EMBEDDING_POOL,
              check_specs=[dg.AssetCheckSpec("budget_respected", asset="embeddings", blocking=True,
                                             description="The plan is within the run's token and money budget.")],
              description="Missing vectors embedded into the tenant's cache, exactly as planned; a ledger row per paying run.")
    def embeddings(context: dg.AssetExecutionContext, config: EmbeddingsConfig, chunks: StagedChunks, store: TenantStoreResource,
                   embedder: EmbedderResource, prices: PricesResource, writer: TenantWriterResource):
        fault_point("embeddings-step")  # between two steps of the run, its writer held (tests/reliability/test_concurrency.py)
        with _run(context, store, embedder, prices, writer, chunks.changes,
                  budget=Budget(config.budget_tokens, config.max_cost_usd), accept_model_drift=config.accept_model_drift) as run:
            done = run.embed(chunks)
            missing = run.missing_vectors(done.staged)
        plan, ledger, gate = done.plan, done.ledger, done.budget
        numbers = {
            "texts_planned": plan.texts_to_embed, "tokens_planned": plan.tokens_to_embed,
            "texts_embedded": int(ledger["texts"]), "tokens_embedded": int(ledger["tokens"]),
            "tokens_embedded_cl100k": int(ledger["tokens_cl100k"]), "unique_texts": plan.unique_texts,
            "vectors_reused": plan.vectors_reused, "reused_pct": float(round(plan.reused_pct, 2)),
            "duplicate_chunks": plan.duplicates_in_run, "truncated_chunks": plan.truncated_chunks,
            # None (left out of the metadata) when the model's price is unknown: never a 0.0 that reads as free
            "planned_cost_usd": plan.usd(float(plan.cost_usd)), "actual_cost_usd": plan.usd(float(ledger["cost_usd"])),
            "est_seconds": float(plan.est_seconds), "embed_seconds": float(ledger["seconds"]),
            "throughput_tokens_per_s": float(ledger["tokens"] / ledger["seconds"]) if ledger["seconds"] else 0.0,
            "vectors_missing": missing,
        }
        cs = done.staged.changes
        versions = content_versions(cs.docs_digest, cs.config.chunker_fp, cs.config.embedder_fp)
        yield dg.Output(done, data_version=dg.DataVersion(versions["embeddings"]), metadata=summary_first({
            **typed({"chunker": cs.config.chunker, "embedder": plan.embedder, "device": plan.device,
                     **({"embedder_detail": plan.embedder_detail} if plan.embedder_detail else {}),
                     "run_id": ledger.get("run_id") or "(nothing embedded)", **numbers}),
            "hosted_usd": dg.MetadataValue.json(plan.hosted_usd),  # the same tokens at hosted-API prices
            "plan": dg.MetadataValue.json(plan.report()),
            "ledger": dg.MetadataValue.json(plan.ledger_report(ledger)),
            "summary": markdown(f"embeddings of {context.partition_key} with {plan.embedder} on {plan.device}", [
                ("texts embedded / planned", f"{numbers['texts_embedded']} / {numbers['texts_planned']}"),
                ("tokens embedded / planned", f"{numbers['tokens_embedded']:,} / {numbers['tokens_planned']:,}"),
                ("reused from cache", f"{plan.vectors_reused} ({numbers['reused_pct']}%)"),
                ("cost actual / planned", f"${numbers['actual_cost_usd']:.3g} / ${numbers['planned_cost_usd']:.3g}"
                                          if plan.cost_known else "unknown (no price for this model)"),
                ("throughput", f"{numbers['throughput_tokens_per_s']:,.0f} tok/s"), ("budget", gate.summary)]),
        }))
        yield check_result(gate)  # over budget: nothing was written, and this blocking check stops tenant_index

    @dg.asset(partitions_def=tenants, group_name=GROUP, kinds={"faiss"},
              check_specs=[
                  dg.AssetCheckSpec("index_consistency", asset="tenant_index", blocking=True,
                                    description="The new segment matches its checksums; the generation holds each live document once."),
                  dg.AssetCheckSpec("quality_not_worse", asset="tenant_index", blocking=True,
                                    description="Retrieval quality on the tenant's eval set is not worse than the live generation's."),
              ],
              description="A new segment and generation over the previous one's segments, promoted only if its checks pass.")
    def tenant_index(context: dg.AssetExecutionContext, config: TenantIndexConfig, embeddings: Embedded,
                     store: TenantStoreResource, embedder: EmbedderResource, prices: PricesResource,
                     writer: TenantWriterResource) -> dg.MaterializeResult:
        cs = embeddings.staged.changes
        budget = Budget(config.budget_tokens, config.max_cost_usd)
        with _run(context, store, embedder, prices, writer, cs, budget=budget, quality_tolerance=config.quality_tolerance) as run:
            try:
                result = run.commit(embeddings)
                promoted, failure = result.status == "promoted", None
            except ChecksFailed as exc:
                result, promoted, failure = None, False, exc  # the failed blocking check(s) fail this step
        if failure is not None:
            gates = failure.gates
            out = {"status": "checks failed", "candidate": failure.generation}
        else:
            gates = [g for g in result.gates if g.name != "budget_respected"]
            if result.status == "unchanged":
                gates = [Gate("index_consistency", True, "unchanged: the live generation stays"),
                         Gate("quality_not_worse", True, "unchanged: the live generation stays", {"status": "unchanged"})]
            out = result.to_dict()
        quality = gates[1].metadata if len(gates) > 1 else {}
        evals = {k: v for k, v in quality.items() if k.startswith(("eval_", "live_", "delta_"))}
        live = run.paths.current.read_text().strip() if run.paths.current.exists() else "(none)"
        versions = out.get("versions") or content_versions(cs.docs_digest, cs.config.chunker_fp, cs.config.embedder_fp)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(versions["tenant_index"]),
            check_results=[check_result(g) for g in gates],
            metadata=summary_first({
                **typed({"status": out["status"], "candidate": out.get("candidate") or out.get("generation") or "(none)",
                         "generation": live, "previous_generation": cs.base or "(none)", "promoted": promoted,
                         "segment": out.get("segment") or "(none)", "bytes_written": int(out.get("bytes_written", 0)),
                         "vectors": documents_rows(run), "chunker": cs.config.chunker, "embedder": cs.config.embedder,
                         "eval_status": quality.get("status", ""), **evals}),
                "result": dg.MetadataValue.json(out),
                "summary": markdown(f"tenant_index of {context.partition_key}", [
                    ("status", out["status"]), ("live generation", f"`{live}`"),
                    ("segment written", out.get("segment") or "none"), ("bytes written", out.get("bytes_written", 0)),
                    *[(g.name, ("pass: " if g.passed else "FAIL: ") + g.summary) for g in gates]]),
            }),
        )

    return [documents, chunks, embeddings, tenant_index]


def documents_rows(run: TenantRun) -> int:

    try:
        m = live_manifest(run.paths)
    except GenerationError:
        return 0
    return m.chunks if m else 0
