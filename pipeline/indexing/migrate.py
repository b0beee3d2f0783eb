"""Moving a tenant to another chunker schema (and search mode), the way a database migration is run.

The new configuration is planned (what it re-embeds and costs; every cached vector
whose text is unchanged is reused), built beside the live generation as a full
rebuild, scored with the old one on the tenant's eval set if it has one, and
promoted only if it is not worse (or ``accept_regression`` says why it may be).

Without a mode, a tenant keeps its search mode, except that a tenant on a default configuration moving to
another default schema gets that schema's mode (``migrate --to default@3`` from default@2 in hybrid is
default@3 in hybrid-ctx; ``ragindex.search.searcher.migration_mode``).

There is no separate re-pin step: a tenant's schema and mode are those of its
live generation (``TenantStore.settings``), so the promotion itself moves the
pin, atomically, and a rollback (another promotion) moves it back. A crash at
any instant leaves pin and live generation consistent.
"""

from __future__ import annotations

from ragindex.indexing.plan import Budget
from ragindex.indexing.prices import Prices
from ragindex.indexing.run import IndexingResult, TenantRun
from ragindex.schemas import SchemaRegistry
from ragindex.search.hybrid import MODES
from ragindex.search.searcher import migration_mode
from ragindex.store.paths import TenantError
from ragindex.store.tenants import TenantStore


def plan_migration(store: TenantStore, tenant: str, to: str, *, embedder, mode: str | None = None,
                   prices: Prices | None = None):
    """What migrating would chunk, embed and cost (writes nothing)."""
    _check(store, tenant, to, mode)
    mode = migration_mode(store.settings(tenant), to, mode)
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
    """Build ``to`` beside the live generation, gate it on quality and promote it (which re-pins the tenant).

    Raises ChecksFailed (the new generation scored worse; live unchanged, tenant not
    re-pinned), BudgetExceeded (nothing changed).
    """
    _check(store, tenant, to, mode)
    target_mode = migration_mode(store.settings(tenant), to, mode)
    run = TenantRun(store, tenant, embedder=embedder, chunker=to, prices=prices, budget=budget, rebuild=True,
                    progress=progress, mode=target_mode, accept_regression=accept_regression)
    return run.run(wait)
