"""Dagster resources: typed, frozen config; heavy objects built once per run in setup_for_execution."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import PrivateAttr

from pipeline.cost import Prices
from pipeline.embedder import EmbedderConfig
from pipeline.tenants import TenantStore


class EmbedderResource(dg.ConfigurableResource):
    """The embedding model: 'default' (bundled all-MiniLM-L6-v2), 'hash' (tests) or a model directory."""

    model: str = "default"
    device: Optional[str] = None

    _embedder = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Loading the model costs seconds; once per run process, shared by the steps it runs.
        self._embedder = EmbedderConfig(self.model, self.device).build()

    def get(self):
        if self._embedder is None:  # direct use outside a run (sensors, tests)
            self._embedder = EmbedderConfig(self.model, self.device).build()
        return self._embedder


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
