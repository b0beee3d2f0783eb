"""`ragindex reindex` through Dagster: the same asset job, run in-process against $DAGSTER_HOME's instance.

The run is recorded like a UI run (same job, same metadata, same checks), so CLI
reindexes show up in the UI's run history. The budget is checked once, by the
embeddings asset, before anything is written to the tenant: an over-budget run
is recorded as failed on its blocking check and changed nothing.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterAssetCheckFailedError  # not re-exported at the top level
from dagster._core.utils import make_new_run_id

from ragindex.cost import Budget, BudgetExceeded, Plan
from ragindex.gates import ChecksFailed, Gate
from ragindex.guards import MassDeletion
from ragindex.orchestration.assets import IN_RUN_LOCK_WAIT_S
from ragindex.orchestration.location import REINDEX_JOB, build_definitions
from ragindex.orchestration.meta import plain
from ragindex.reindex import resolve
from ragindex.sources import Skipped
from ragindex.tenants import TenantStore


def _run_config(source, chunker, budget: Budget, wait: float, rescan: bool, rebuild: bool, allow_deletions,
                accept_model_drift: bool = False) -> dict:
    later = max(float(wait), IN_RUN_LOCK_WAIT_S)
    documents = {"source": str(Path(source).absolute()) if source else None, "chunker": chunker, "rescan": rescan,
                 "rebuild": rebuild, "allow_deletions": allow_deletions, "lock_wait_s": float(wait)}
    money = {"budget_tokens": budget.tokens, "max_cost_usd": budget.cost_usd}
    ops = {"documents": documents, "embeddings": {**money, "accept_model_drift": accept_model_drift, "lock_wait_s": later},
           "tenant_index": {**money, "lock_wait_s": later}}
    return {
        # --wait applies to the run's first lock; later assets queue behind any writer
        # that came in between (assets.IN_RUN_LOCK_WAIT_S) rather than fail halfway.
        "ops": {op: {"config": {k: v for k, v in cfg.items() if v is not None}} for op, cfg in ops.items()},
        # The CLI prints its own summary; Dagster's step-by-step log would drown it.
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }


def _plan_from_report(report: dict) -> Plan:
    return Plan(**{f.name: report[f.name] for f in fields(Plan) if f.name in report})


def reindex_in_dagster(store: TenantStore, tenant: str, *, source=None, chunker: str | None = None, model: str = "default",
                       prices: Path | None = None, budget: Budget = Budget(), wait: float = 0.0, rescan: bool = False,
                       rebuild: bool = False, allow_deletions: bool | None = None, accept_model_drift: bool = False,
                       dimensions: int | None = None, instance=None) -> tuple[dict, list[Skipped]]:
    """Run the `reindex_tenant` job for one tenant partition; return (the CLI's result dict, skipped inputs).

    Raises BudgetExceeded (nothing changed), ChecksFailed (a blocking check
    failed: the run is recorded as failed, the live generation unchanged), or the
    stage's own error (TenantError, TenantBusy, ...).
    """
    resolve(store, tenant, source, chunker)  # a readable error before any partition or run exists
    defs = build_definitions(store_root=store.root, model=model, prices=prices, dimensions=dimensions)
    job = defs.resolve_job_def(REINDEX_JOB)
    run_id = make_new_run_id()
    own = instance is None
    instance = instance or dg.DagsterInstance.get()
    try:
        if not instance.has_dynamic_partition("tenants", tenant):
            instance.add_dynamic_partitions("tenants", [tenant])
        try:
            # raise_on_error: a stage's own exception (TenantError, TenantBusy...) reaches the CLI unchanged.
            job.execute_in_process(run_config=_run_config(source, chunker, budget, wait, rescan, rebuild, allow_deletions,
                                                          accept_model_drift),
                                   instance=instance,
                                   run_id=run_id, partition_key=tenant, tags={"ragindex/trigger": "cli"})
        except DagsterAssetCheckFailedError:
            pass  # the failed checks are read back below, like everything else the run recorded
        meta, checks = _recorded(instance, run_id)
    finally:
        if own:
            instance.dispose()
    failed = [g for g in checks if not g.passed]
    if any(g.name == "deletions_within_limit" for g in failed):
        raise MassDeletion(next(g.summary for g in failed if g.name == "deletions_within_limit"))
    if any(g.name == "budget_respected" for g in failed):
        raise BudgetExceeded(_plan_from_report(meta["embeddings"]["plan"]), [g.summary for g in failed])
    if failed:
        raise ChecksFailed(meta.get("tenant_index", {}).get("candidate", "(none)"), failed)
    out = dict(meta["tenant_index"]["result"])
    out.update({"dagster_run_id": run_id, "checks": {g.name: g.summary for g in checks},
                "skipped": meta["documents"]["skipped_inputs"]})
    return out, [Skipped(s["where"], s["reason"]) for s in out["skipped"]]


def _recorded(instance, run_id: str) -> tuple[dict[str, dict], list[Gate]]:
    """(asset name -> plain metadata, check results) as the instance recorded them for ``run_id``."""
    records = instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION}).records
    meta, checks = {}, []
    for rec in records:
        event = rec.event_log_entry.dagster_event
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            m = event.event_specific_data.materialization
            meta[m.asset_key.path[-1]] = plain(m.metadata)
        else:
            e = event.event_specific_data
            md = plain(e.metadata)
            checks.append(Gate(e.check_name, e.passed, str(md.get("summary", "")), md))
    return meta, checks
