"""The Dagster instance in $DAGSTER_HOME, seen from the library: tenants are its partitions, CLI runs are reported to it.

ragindex has one engine: :class:`ragindex.indexing.run.TenantRun`, the lock held for
the whole run. `ragindex reindex` runs it directly, whether or not $DAGSTER_HOME is
set; with $DAGSTER_HOME set it then *reports* what the run did to that instance, as
runless asset events (``DagsterInstance.report_runless_asset_event``), so the UI
shows CLI runs beside its own without a second engine executing them:

- a finished run (promoted or unchanged): one materialization of each asset
  (documents, chunks, embeddings, tenant_index) for the tenant's partition, with
  the run's numbers as metadata (status, generation, ledger run id, texts and
  tokens embedded, cost, ``trigger: cli``) and the content data versions the run
  computed (``IndexingResult.versions``, in the ``dagster/data_version`` tag that
  Dagster reads), then the evaluations of the blocking checks;
- a refused run (over budget, mass deletion, a failed check): the failed check's
  evaluation only. Nothing changed (or, for a failed check, the candidate was not
  promoted), so no materialization is reported.

Dagster is imported only when $DAGSTER_HOME is set. Nothing here imports the code
location (``ragindex.orchestration``), which stays a leaf; the asset and check
names below are the code location's (tests/orchestration checks they match).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from ragindex.errors import BudgetExceeded, ChecksFailed, MassDeletion

PARTITIONS = "tenants"  # the code location's DynamicPartitionsDefinition
ASSETS = ("documents", "chunks", "embeddings", "tenant_index")
CHECK_ASSET = {"deletions_within_limit": "documents", "budget_respected": "embeddings",
               "index_consistency": "tenant_index", "quality_not_worse": "tenant_index"}
DATA_VERSION_TAG = "dagster/data_version"  # dagster._core.definitions.data_version.DATA_VERSION_TAG
USER_VERSION_TAG = "dagster/data_version_is_user_provided"  # what Output(data_version=...) adds beside it


def configured() -> bool:
    """Whether a Dagster instance is configured ($DAGSTER_HOME set)."""
    return bool(os.environ.get("DAGSTER_HOME"))


@contextlib.contextmanager
def _instance():
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        yield instance


def _ensure_partition(instance, tenant: str) -> None:
    if not instance.has_dynamic_partition(PARTITIONS, tenant):
        instance.add_dynamic_partitions(PARTITIONS, [tenant])


def register_partition(tenant: str) -> bool:
    """Add ``tenant`` to the ``tenants`` dynamic partitions if $DAGSTER_HOME is set; return whether it was."""
    if not configured():
        return False
    with _instance() as instance:
        _ensure_partition(instance, tenant)
    return True


def unregister_partition(tenant: str) -> bool:
    """Remove ``tenant``'s partition and its stored step outputs from the instance in $DAGSTER_HOME, if set.

    The step outputs (the IO manager's files under the instance's storage) hold the
    tenant's document texts, so they go with it.
    """
    if not configured():
        return False
    with _instance() as instance:
        if instance.has_dynamic_partition(PARTITIONS, tenant):
            instance.delete_dynamic_partition(PARTITIONS, tenant)
        storage = Path(instance.storage_directory())
    for asset in ASSETS:
        out = storage / asset / tenant
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
    return True


# -- reporting a CLI run ------------------------------------------------------------------


def report_run(result, trigger: str = "cli") -> bool:
    """Report a finished run (an ``IndexingResult``) to the instance in $DAGSTER_HOME, if set; return whether it was.

    Registers the tenant's partition if missing, then one materialization per asset
    (in graph order, each with its content data version) and the blocking checks'
    evaluations, each pointing at the materialization it checked.
    """
    if not configured():
        return False
    import dagster as dg

    out = result.to_dict()
    tenant = result.tenant
    gates = {g.name: g for g in result.gates}
    checks = [_check(g.name, g.passed, g.summary, g.metadata) for g in result.gates if g.name in CHECK_ASSET]
    c = out["changes"]
    if "deletions_within_limit" not in gates:  # passed, or the run would have raised MassDeletion
        checks.append(_check("deletions_within_limit", True, f"{c['docs_deleted']} live documents deleted: within the "
                             "limit, or allowed", {"documents_to_delete": c["docs_deleted"]}))
    if result.status == "unchanged":
        checks += [_check(name, True, "unchanged: the live generation stays", {"status": "unchanged"})
                   for name in ("index_consistency", "quality_not_worse") if name not in gates]
    common = {"trigger": trigger, "status": result.status, "generation": result.generation or "(none)",
              "run_id": result.run_id or "(nothing embedded)"}
    with _instance() as instance:
        _ensure_partition(instance, tenant)
        targets = {}
        quality = gates["quality_not_worse"].metadata if "quality_not_worse" in gates else {}
        evals = {"eval_status": quality.get("status"),
                 **{k: v for k, v in quality.items() if k.startswith(("eval_", "live_", "delta_"))}}
        for asset, meta in _materializations(out, evals).items():
            tags = {"ragindex/trigger": trigger}
            if out["versions"].get(asset):
                tags.update({DATA_VERSION_TAG: out["versions"][asset], USER_VERSION_TAG: "true"})
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key=asset, partition=tenant, tags=tags, description=f"ragindex {trigger} run: {result.status}",
                metadata=_metadata({"summary": meta.pop("summary"), **common, **meta})))
            targets[asset] = _latest(instance, asset, tenant)
        for name, passed, summary, metadata in checks:
            _report_check(instance, tenant, name, passed, summary, {**metadata, "trigger": trigger}, targets)
    return True


def report_refused(tenant: str, exc: Exception, trigger: str = "cli") -> bool:
    """Report a run that a blocking check stopped (BudgetExceeded, MassDeletion, ChecksFailed): its check
    evaluations only, since the live generation did not change. Returns whether anything was reported."""
    if not configured():
        return False
    if isinstance(exc, BudgetExceeded):
        report = exc.plan.report()
        checks = [_check("budget_respected", False, "; ".join(exc.reasons),
                         {"planned_tokens": report.get("tokens_to_embed"), "planned_cost_usd": report.get("cost_usd"),
                          "texts_to_embed": report.get("texts_to_embed"), "plan": report})]
    elif isinstance(exc, MassDeletion):
        checks = [_check("deletions_within_limit", False, str(exc), {})]
    elif isinstance(exc, ChecksFailed):
        checks = [_check(g.name, g.passed, g.summary, {**g.metadata, "candidate": exc.generation})
                  for g in exc.gates if g.name in CHECK_ASSET]
    else:
        return False
    with _instance() as instance:
        _ensure_partition(instance, tenant)
        targets = {asset: _latest(instance, asset, tenant) for asset in {CHECK_ASSET[c[0]] for c in checks}}
        for name, passed, summary, metadata in checks:
            _report_check(instance, tenant, name, passed, summary, {**metadata, "trigger": trigger, "promoted": False},
                          targets)
    return True


def _check(name: str, passed: bool, summary: str, metadata: dict) -> tuple[str, bool, str, dict]:
    return name, passed, summary, {k: v for k, v in metadata.items() if k != "summary"}


def _report_check(instance, tenant: str, name: str, passed: bool, summary: str, metadata: dict, targets: dict) -> None:
    import dagster as dg

    target = targets.get(CHECK_ASSET[name])
    # Not partitioned, like the code location's check specs (a Dagster run records its evaluations with no
    # partition either): the tenant is in the metadata, and the target is the tenant's materialization. (Dagster
    # also keeps at most one runless evaluation per check and partition key, so a partitioned one could be
    # reported only once per tenant.)
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(CHECK_ASSET[name]), check_name=name, passed=passed, blocking=True,
        description=summary, metadata=_metadata({"summary": summary, "tenant": tenant, **metadata}),
        target_materialization_data=_target(target) if target is not None else None))


def _latest(instance, asset: str, tenant: str):
    """The latest materialization record of ``asset`` for ``tenant`` (None if it was never materialized)."""
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[tenant]), limit=1).records
    return records[0] if records else None


def _target(record):
    """Which materialization a check evaluation checked (the UI shows a check against that materialization)."""
    try:  # not re-exported at dagster's top level
        from dagster._core.definitions.asset_checks.asset_check_evaluation import (
            AssetCheckEvaluationTargetMaterializationData,
        )
    except ImportError:  # pragma: no cover - a Dagster that moved it: the evaluation is still recorded
        return None
    return AssetCheckEvaluationTargetMaterializationData(storage_id=record.storage_id, run_id=record.run_id,
                                                         timestamp=record.timestamp)


def _metadata(values: dict) -> dict:
    """Typed metadata values: numbers stay numbers (Dagster plots them; floats to 6 significant digits), dicts
    and lists become JSON, anything else text; None is left out. Never raises on an odd value."""
    import dagster as dg

    out = {}
    for k, v in values.items():
        if v is None:
            continue
        if k == "summary" and isinstance(v, str):
            out[k] = dg.MetadataValue.md(v)
        elif isinstance(v, bool):
            out[k] = dg.MetadataValue.bool(v)
        elif isinstance(v, int):
            out[k] = dg.MetadataValue.int(int(v))
        elif isinstance(v, float):
            out[k] = dg.MetadataValue.float(float(f"{v:.6g}"))
        elif isinstance(v, (dict, list, tuple)):
            out[k] = dg.MetadataValue.json(json.loads(json.dumps(v, default=str)))
        else:
            out[k] = dg.MetadataValue.text(str(v))
    return out


def _markdown(title: str, rows: list[tuple[str, object]]) -> str:
    return "\n".join([f"**{title}**", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def _materializations(out: dict, evals: dict) -> dict[str, dict]:
    """Per asset, the metadata a Dagster run of that asset records (same keys, so the UI's plots go on across both)."""
    tenant, ch, plan, led = out["tenant"], out["changes"], out["plan"], out["ledger"]
    documents = ch["docs_new"] + ch["docs_changed"] + ch["docs_unchanged"]
    texts, tokens = int(led.get("texts") or 0), int(led.get("tokens") or 0)
    seconds = float(led.get("seconds") or 0.0)
    chunks_unchanged = plan["chunks_total"] - plan["chunks_new"]
    return {
        "documents": {
            **ch, "documents": documents, "base_generation": out["previous"] or "(none)",
            "unchanged_run": out["status"] == "unchanged", "skipped_inputs": out["skipped"],
            "summary": _markdown(f"documents of {tenant} (ragindex CLI run)", [
                ("documents", documents),
                ("new / changed / deleted", f"{ch['docs_new']} / {ch['docs_changed']} / {ch['docs_deleted']}"),
                ("files read / seen", f"{ch['files_read']} / {ch['files_seen']}"), ("skipped inputs", len(out["skipped"]))]),
        },
        "chunks": {
            "chunker": plan["chunker"], "chunker_fp": plan["chunker_fp"], "chunks": plan["chunks_total"],
            "chunks_new": plan["chunks_new"], "chunks_unchanged": chunks_unchanged, "chunks_removed": plan["chunks_removed"],
            "unique_texts": plan["unique_texts"], "duplicate_chunks": plan["duplicates_in_run"],
            "docs_chunked": plan["docs_chunked"], "docs_reused": plan["docs_reused"],
            "summary": _markdown(f"chunks of {tenant} with {plan['chunker']} (ragindex CLI run)", [
                ("chunks after this run", plan["chunks_total"]),
                ("new / unchanged / removed", f"{plan['chunks_new']} / {chunks_unchanged} / {plan['chunks_removed']}"),
                ("documents chunked / reused", f"{plan['docs_chunked']} / {plan['docs_reused']}")]),
        },
        "embeddings": {
            "chunker": plan["chunker"], "embedder": plan["embedder"], "device": plan["device"],
            "texts_planned": plan["texts_to_embed"], "tokens_planned": plan["tokens_to_embed"],
            "texts_embedded": texts, "tokens_embedded": tokens, "tokens_embedded_cl100k": int(led.get("tokens_cl100k") or 0),
            "unique_texts": plan["unique_texts"], "vectors_reused": plan["vectors_reused"], "reused_pct": plan["reused_pct"],
            "duplicate_chunks": plan["duplicates_in_run"], "truncated_chunks": plan["truncated_chunks"],
            "planned_cost_usd": plan["cost_usd"], "actual_cost_usd": led.get("cost_usd"),
            "est_seconds": plan["est_seconds"], "embed_seconds": seconds,
            "throughput_tokens_per_s": tokens / seconds if seconds else 0.0, "vectors_missing": 0,
            "hosted_usd": plan["hosted_usd"], "plan": plan, "ledger": led,
            "summary": _markdown(f"embeddings of {tenant} with {plan['embedder']} on {plan['device']} (ragindex CLI run)", [
                ("texts embedded / planned", f"{texts} / {plan['texts_to_embed']}"),
                ("tokens embedded / planned", f"{tokens:,} / {plan['tokens_to_embed']:,}"),
                ("reused from cache", f"{plan['vectors_reused']} ({plan['reused_pct']}%)"),
                ("cost", "unknown (no price for this model)" if led.get("cost_usd") is None else f"${led['cost_usd']:.3g}"), ("budget", out["checks"].get("budget_respected", ""))]),
        },
        "tenant_index": {
            "candidate": out["generation"] or "(none)", "previous_generation": out["previous"] or "(none)",
            "promoted": out["status"] == "promoted", "segment": out["segment"] or "(none)",
            "bytes_written": int(out["bytes_written"]), "vectors": plan["chunks_total"], "chunker": plan["chunker"],
            "embedder": plan["embedder"], **evals, "result": out,
            "summary": _markdown(f"tenant_index of {tenant} (ragindex CLI run)", [
                ("status", out["status"]), ("live generation", f"`{out['generation']}`"),
                ("segment written", out["segment"] or "none"), ("bytes written", out["bytes_written"]),
                *[(k, v) for k, v in out["checks"].items()]]),
        },
    }
