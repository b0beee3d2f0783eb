"""Helpers for the Dagster tests: materialize one tenant partition, read metadata and check results."""

from __future__ import annotations

import dagster as dg

import ragindex.evaluate.tenant
import ragindex.indexing.checks
from ragindex.orchestration.assets import build_assets
from ragindex.orchestration.resources import EmbedderResource, PricesResource, TenantStoreResource, TenantWriterResource
from ragindex.orchestration.versions import chunker_code_version


def resources(store, model: str = "hash", lock_wait_s: float = 0.0) -> dict:
    st = TenantStoreResource(root=str(store.root))
    return {"store": st, "writer": TenantWriterResource(store=st, lock_wait_s=lock_wait_s),
            "embedder": EmbedderResource(model=model), "prices": PricesResource()}


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


def fake_quality(monkeypatch, live: str) -> None:
    """The evaluation itself is the evaluation package's (tested there); here only its verdict matters:
    the live generation scores 0.9, any candidate 0.5. Patched where the quality gate looks it up."""
    def quality(store, tenant, gen, embedder, **kw):
        return {"ndcg@10": 0.9 if gen == live else 0.5}

    monkeypatch.setattr(ragindex.evaluate.tenant, "tenant_quality", quality)
    monkeypatch.setattr(ragindex.indexing.checks, "tenant_quality", quality, raising=False)
