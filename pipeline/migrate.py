"""Moving a tenant to another chunker schema (and search mode), the way a database migration is run.

The new configuration is planned (what it re-embeds and costs; every cached vector
whose text is unchanged is reused), built beside the live generation as a full
rebuild, scored with the old one on the tenant's eval set if it has one, and
promoted only if it is not worse (or ``accept_regression`` says why it may be).
Then the tenant is re-pinned to the new schema and mode. Rolling back returns to
the previous generation and re-pins the schema and mode recorded in it.
"""

from __future__ import annotations

from dataclasses import replace

from ragindex.cost import Budget, Prices
from ragindex.hybrid import MODES
from ragindex.index import current_id, read_manifest
from ragindex.reindex import IndexingResult, TenantRun
from ragindex.schemas import SchemaRegistry
from ragindex.tenants import TenantError, TenantStore


def plan_migration(store: TenantStore, tenant: str, to: str, *, embedder, mode: str | None = None,
                   prices: Prices | None = None):
    """What migrating would chunk, embed and cost (writes nothing)."""
    _check(store, tenant, to, mode)
    with TenantRun(store, tenant, embedder=embedder, chunker=to, prices=prices, mode=mode, rebuild=True) as run:
        return run.stage()


def _check(store: TenantStore, tenant: str, to: str, mode: str | None) -> None:
    store.require(tenant)
    SchemaRegistry().runnable(to)
    if mode is not None and mode not in MODES:
        raise TenantError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")


def migrate(store: TenantStore, tenant: str, to: str, *, embedder, mode: str | None = None, prices: Prices | None = None,
            budget: Budget = Budget(), accept_regression: str | None = None, wait: float = 0.0,
            progress: bool = False) -> IndexingResult:
    """Build ``to`` beside the live generation, gate it on quality, promote it and re-pin the tenant.

    Raises ChecksFailed (the new generation scored worse; live unchanged, tenant not
    re-pinned), BudgetExceeded (nothing changed).
    """
    _check(store, tenant, to, mode)
    settings = store.settings(tenant)
    target_mode = mode or settings.mode
    run = TenantRun(store, tenant, embedder=embedder, chunker=to, prices=prices, budget=budget, rebuild=True,
                    progress=progress, mode=target_mode, accept_regression=accept_regression)
    result = run.run(wait)
    store.save_settings(tenant, replace(settings, chunker=to, mode=target_mode))
    return result


def repin_to_live(store: TenantStore, tenant: str) -> tuple[str, str]:
    """After a rollback: pin the tenant to the schema and mode its live generation was made with."""
    paths = store.require(tenant)
    live = current_id(paths)
    if live is None:
        raise TenantError(f"tenant {tenant!r} has no live generation")
    m = read_manifest(paths, live)
    s = store.settings(tenant)
    if (s.chunker, s.mode or "dense") != (m.chunker, m.search_mode):
        store.save_settings(tenant, replace(s, chunker=m.chunker, mode=m.search_mode))
    return m.chunker, m.search_mode
