"""Building the code location's Definitions: assets, checks, job, sensor, resources.

The CLI and the tests call :func:`build_definitions` with explicit roots;
definitions.py calls it from the environment for ``dagster dev``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from ragindex.orchestration.assets import build_assets, tenants
from ragindex.orchestration.resources import EmbedderResource, PricesResource, SourcesResource, TenantStoreResource
from ragindex.orchestration.sensors import build_sensor
from ragindex.orchestration.versions import chunker_code_version
from ragindex.schemas.registry import DEFAULT_SCHEMA

REINDEX_JOB = "reindex_tenant"


def build_definitions(*, store_root: str | Path | None = None, sources_root: str | Path | None = None,
                      model: str | None = None, device: str | None = None, prices: str | Path | None = None,
                      default_schema: str = DEFAULT_SCHEMA, executor: dg.ExecutorDefinition | None = None,
                      dimensions: int | None = None) -> dg.Definitions:
    """Definitions over one tenant store. ``None`` arguments fall back to the environment.

    ``executor`` replaces Dagster's default multiprocess executor, e.g. with
    ``dagster_celery.celery_executor`` or ``dagster_k8s.k8s_job_executor`` (docs/dagster.md).
    """
    store = TenantStoreResource(root=str(Path(store_root).absolute()) if store_root else None)
    assets = build_assets(chunker_code_version(store.get(), default_schema))
    job = dg.define_asset_job(REINDEX_JOB, selection=dg.AssetSelection.assets(*assets), partitions_def=tenants,
                              description="Reindex one tenant: documents -> chunks -> embeddings -> tenant_index.")
    sources = sources_root or os.environ.get("RAGINDEX_SOURCES") or "sources"
    return dg.Definitions(
        assets=assets,
        jobs=[job],
        sensors=[build_sensor(job)],
        executor=executor,
        resources={
            "store": store,
            "embedder": EmbedderResource(model=model or os.environ.get("RAGINDEX_MODEL") or None, device=device,
                                         dimensions=dimensions),
            "prices": PricesResource(path=str(prices) if prices else None),
            "sources": SourcesResource(root=str(Path(sources).absolute())),
        },
    )

