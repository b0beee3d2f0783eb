"""Building the code location's Definitions: assets, checks, job, sensor, resources.

The CLI and the tests call :func:`build_definitions` with explicit roots;
definitions.py calls it from the environment for ``dagster dev``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from ragindex.orchestration.assets import build_assets, tenants
from ragindex.orchestration.resources import (
    EmbedderResource,
    PricesResource,
    SourcesResource,
    TenantStoreResource,
    TenantWriterResource,
)
from ragindex.orchestration.sensors import build_sensor
from ragindex.orchestration.versions import chunker_code_version
from ragindex.schemas.registry import DEFAULT_SCHEMA

REINDEX_JOB = "reindex_tenant"


def build_definitions(*, store_root: str | Path | None = None, sources_root: str | Path | None = None,
                      model: str | None = None, device: str | None = None, prices: str | Path | None = None,
                      default_schema: str = DEFAULT_SCHEMA, executor: dg.ExecutorDefinition | None = None,
                      dimensions: int | None = None) -> dg.Definitions:
    """Definitions over one tenant store. ``None`` arguments fall back to the environment.

    Every run executes all its steps in one process, which holds the tenant's writer
    lock from the first step to the last (``TenantWriterResource``): the executor, of
    the ``reindex_tenant`` job and of the UI's ad-hoc materializations alike, is
    Dagster's in-process executor. ``executor`` may replace it with another
    in-process executor (e.g. ``dg.in_process_executor.configured({"retries": ...})``);
    an executor that runs steps in separate processes (multiprocess, Celery,
    k8s_job_executor) is refused, since a lock held by one process cannot span them.
    Scale out per run instead: a run launcher (K8sRunLauncher: one pod per run, that
    is per tenant) and the run queue (docs/dagster.md).
    """
    executor = executor or dg.in_process_executor
    if executor.name != dg.in_process_executor.name:
        raise ValueError(f"executor {executor.name!r} is not Dagster's in-process executor, but a run holds the "
                         "tenant's writer lock from its first step to its last, in one process: use an in-process "
                         "executor, and scale out one run per tenant with a run launcher (docs/dagster.md)")
    store = TenantStoreResource(root=str(Path(store_root).absolute()) if store_root else None)
    assets = build_assets(chunker_code_version(store.get(), default_schema))
    job = dg.define_asset_job(REINDEX_JOB, selection=dg.AssetSelection.assets(*assets), partitions_def=tenants,
                              executor_def=executor,
                              description="Reindex one tenant: documents -> chunks -> embeddings -> tenant_index, "
                                          "the tenant's writer lock held for the whole run.")
    sources = sources_root or os.environ.get("RAGINDEX_SOURCES") or "sources"
    return dg.Definitions(
        assets=assets,
        jobs=[job],
        sensors=[build_sensor(job)],
        executor=executor,
        resources={
            "store": store,
            "writer": TenantWriterResource(store=store),
            "embedder": EmbedderResource(model=model or os.environ.get("RAGINDEX_MODEL") or None, device=device,
                                         dimensions=dimensions),
            "prices": PricesResource(path=str(prices) if prices else None),
            "sources": SourcesResource(root=str(Path(sources).absolute())),
        },
    )

