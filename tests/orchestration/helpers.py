"""Helpers for the Dagster tests: materialize one tenant partition, read metadata and check results."""

from __future__ import annotations

import dagster as dg

from ragindex.orchestration.assets import build_assets
from ragindex.orchestration.resources import EmbedderResource, PricesResource, TenantStoreResource
from ragindex.orchestration.versions import chunker_code_version


def resources(store, model: str = "hash") -> dict:
    return {"store": TenantStoreResource(root=str(store.root)), "embedder": EmbedderResource(model=model),
            "prices": PricesResource()}


def materialize(store, instance, tenant: str, *, model: str = "hash", run_config: dict | None = None,
                raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """STYLE 11: dg.materialize for one tenant partition against the given instance."""
    assets = build_assets(chunker_code_version(store))
    return dg.materialize(assets, partition_key=tenant, instance=instance, resources=resources(store, model),
                          run_config=run_config, raise_on_error=raise_on_error)


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """The raw MetadataValue objects of ``asset``'s materialization in ``result``."""
    (mat,) = result.asset_materializations_for_node(asset)
    return dict(mat.metadata)


def values(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return {k: getattr(v, "value", v) for k, v in metadata(result, asset).items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
