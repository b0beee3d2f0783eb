"""Dagster resources: typed, frozen config; heavy objects built once per run in setup_for_execution.

:class:`TenantWriterResource` is the run's hold on the tenant: the tenant's
writer lock (``ragindex.store.writer.TenantWriter``), taken when the run starts
and released when it ends, as `ragindex reindex` holds it for its whole run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import PrivateAttr

from ragindex.embedders.registry import Embedders, model_for
from ragindex.indexing.prices import Prices
from ragindex.store.cache import EmbeddingCache
from ragindex.store.paths import TenantPaths
from ragindex.store.tenants import TenantSettings, TenantStore
from ragindex.store.writer import TenantWriter

PARTITION_TAG = "dagster/partition"  # the run's partition key (dagster._core.storage.tags.PARTITION_NAME_TAG)


class EmbedderResource(dg.ConfigurableResource):
    """The embedding model: 'default' (bundled all-MiniLM-L6-v2), 'hash' (tests), a model directory or
    openai:MODEL. Empty: each tenant's own setting (``ragindex tenants add --model``), else 'default'."""

    model: Optional[str] = None
    device: Optional[str] = None
    dimensions: Optional[int] = None

    _embedders: Embedders | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Loading a local model costs seconds: once per run process, shared by the steps it runs.
        if self.model:
            self.get()

    def _pool(self) -> Embedders:
        if self._embedders is None:
            self._embedders = Embedders(self.model, self.dimensions, self.device)
        return self._embedders

    def get(self):
        return self._pool().get(model_for(None, None, self.model or "default", self.dimensions, self.device))

    def for_tenant(self, store: TenantStore, tenant: str):
        """This resource's model, or the tenant's own when the resource names none (``embedders.registry``)."""
        return self._pool().for_tenant(store, tenant)


class TenantStoreResource(dg.ConfigurableResource):
    """Where tenants live: ``root`` or, when empty, $RAGINDEX_HOME (default ./.ragindex)."""

    root: Optional[str] = None

    def get(self) -> TenantStore:
        return TenantStore(Path(self.root) if self.root else None)


class PricesResource(dg.ConfigurableResource):
    """The price table TOML: ``path`` or, when empty, $RAGINDEX_PRICES or the built-in ragindex/indexing/prices.toml."""

    path: Optional[str] = None

    def get(self) -> Prices:
        return Prices.load(Path(self.path) if self.path else None)


class SourcesResource(dg.ConfigurableResource):
    """The folder the sensor watches: one sub-folder per tenant, named like the tenant."""

    root: str

    def path(self) -> Path:
        return Path(self.root)


class TenantWriterResource(dg.ConfigurableResource):
    """The tenant's writer lock, held for the whole run: taken before the run's first step, released after its last.

    The tenant is the run's partition. ``lock_wait_s``: seconds to queue behind another
    writer when the run starts; 0 (the default) fails the run at once with TenantBusy,
    as `ragindex reindex` without --wait does (launchpad: ``resources.writer.config.lock_wait_s``).
    The lock is an flock held by the run's process, so every step of the run must
    execute in that process: the code location's executor is Dagster's in-process
    executor (location.py).
    """

    store: TenantStoreResource
    lock_wait_s: float = 0.0

    _writer: TenantWriter | None = PrivateAttr(default=None)

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[TenantWriterResource]:
        run = context.dagster_run
        if run is not None and run.is_finished:
            # Dagster's execute_job (`dagster job execute`) builds the resources once more after the run, to
            # read its outputs back: nothing writes then, and the lock has been released for good.
            yield self
            return
        tenant = run.tags.get(PARTITION_TAG) if run is not None else None
        if not tenant:
            raise dg.DagsterInvariantViolationError(
                "the tenant writer is held for one tenant partition per run: launch the run for one partition "
                "(a tenant) of the `tenants` partitions, not a partition range or no partition")
        with hold_for_run(self.store.get(), tenant, self.lock_wait_s) as writer:
            self._writer = writer
            try:
                yield self
            finally:
                self._writer = None

    def get(self, tenant: str) -> TenantWriter:
        """The writer this run holds (for ``TenantRun(writer=...)``)."""
        if self._writer is None or self._writer.tenant != tenant:
            raise dg.DagsterInvariantViolationError(f"this run holds no writer of tenant {tenant!r}")
        return self._writer


@contextlib.contextmanager
def hold_for_run(store: TenantStore, tenant: str, wait: float = 0.0) -> Iterator[TenantWriter]:
    """``TenantWriter(store, tenant, create=True)`` for a run; a tenant the run created and left empty is removed.

    The lock file lives in the tenant's directory, so holding the lock from the
    start of a tenant's first run creates that directory before the run knows
    whether it will write anything. A run that then writes nothing (over budget,
    say) must leave nothing behind, as a first `ragindex reindex` does: if the
    tenant had no directory before the run and still has no generation, segment
    or paid vector after it, the directory is moved aside under the lock
    (``tenants/.removing-<tenant>-<ns>``, which `ragindex tenants remove` also
    finishes after a crash) and deleted once the lock is released.
    """
    new = not store.exists(tenant)
    discard: Path | None = None
    with TenantWriter(store, tenant, wait=wait, create=True) as writer:
        # Decided again under the lock: a `tenants add` may have come in between.
        new = new and _empty(store, writer.paths, source_only_settings=False)
        try:
            yield writer
        finally:
            if new and _empty(store, writer.paths, source_only_settings=True):
                discard = store.tenants_dir / f".removing-{tenant}-{time.time_ns()}"
                os.replace(writer.paths.root, discard)
    if discard is not None:
        shutil.rmtree(discard, ignore_errors=True)


def _empty(store: TenantStore, paths: TenantPaths, source_only_settings: bool) -> bool:
    """Nothing a later run would use: no settings, generation, segment, deletion set, or cached vector.

    With ``source_only_settings``, a ``tenant.json`` that records only a source (what
    a tenant's first run writes) counts as empty. A cache counts as empty if it holds
    no vector and no ledger row (nothing was paid for).
    """
    for f in paths.root.rglob("*"):
        if f.is_dir() or f == paths.lock:
            continue
        if f == paths.settings_file:
            stored = store.stored_settings(paths.name)
            if not source_only_settings or stored != TenantSettings(source=stored.source):
                return False
            continue
        if f.parent == paths.cache.parent and f.name.startswith(paths.cache.name):
            continue  # the cache file (and its write-ahead log): judged below
        return False
    if paths.cache.exists():
        with EmbeddingCache(paths.cache, read_only=True) as cache:
            return cache.stats()["vectors"] == 0 and not cache.runs()
    return True
