"""Dagster resources: typed, frozen config; heavy objects built once per run in setup_for_execution."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import PrivateAttr

from ragindex.cost import Prices
from ragindex.embedder import EmbedderConfig
from ragindex.tenants import TenantStore


class EmbedderResource(dg.ConfigurableResource):
    """The embedding model: 'default' (bundled all-MiniLM-L6-v2), 'hash' (tests), a model directory or
    openai:MODEL. Empty: each tenant's own setting (``ragindex tenants add --model``), else 'default'."""

    model: Optional[str] = None
    device: Optional[str] = None
    dimensions: Optional[int] = None

    _embedders: dict = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Loading a local model costs seconds: once per run process, shared by the steps it runs.
        if self.model:
            self.get()

    def _build(self, model: str, dimensions: Optional[int]):
        key = (model, dimensions)
        if key not in self._embedders:
            self._embedders[key] = EmbedderConfig(model, self.device, dimensions).build()
        return self._embedders[key]

    def get(self):
        return self._build(self.model or "default", self.dimensions)

    def for_tenant(self, store: TenantStore, tenant: str):
        """This resource's model, or the tenant's own when the resource names none."""
        if self.model:
            return self.get()
        s = store.settings(tenant) if store.exists(tenant) else None
        return self._build((s and s.model) or "default", self.dimensions or (s and s.dimensions) or None)


class TenantStoreResource(dg.ConfigurableResource):
    """Where tenants live: ``root`` or, when empty, $RAGINDEX_HOME (default ./.ragindex)."""

    root: Optional[str] = None

    def get(self) -> TenantStore:
        return TenantStore(Path(self.root) if self.root else None)


class PricesResource(dg.ConfigurableResource):
    """The price table TOML: ``path`` or, when empty, $RAGINDEX_PRICES or the built-in pipeline/prices.toml."""

    path: Optional[str] = None

    def get(self) -> Prices:
        return Prices.load(Path(self.path) if self.path else None)


class SourcesResource(dg.ConfigurableResource):
    """The folder the sensor watches: one sub-folder per tenant, named like the tenant."""

    root: str

    def path(self) -> Path:
        return Path(self.root)
