"""The Python API: one import for what users do with ragindex.

Example::

    from ragindex import Ragindex

    rx = Ragindex()                                  # $RAGINDEX_HOME (default ./.ragindex), the bundled model
    acme = rx.tenant("acme")
    acme.add(source="./acme-docs")                   # register once: source, schema, model, mode
    print(acme.plan().tokens_to_embed)               # what a reindex would embed, before paying
    result = acme.reindex(max_cost=0.50)             # only what changed; "unchanged" if nothing did
    for hit in acme.search("how do I rotate keys?", k=5, mode="hybrid", filter={"team": "security"}):
        print(hit.score, hit.doc_id, hit.text[:80])
    print(acme.status()["spend_by_month"])

A :class:`Ragindex` keeps its model and each tenant's live generation loaded, so
repeated searches are warm; it follows promotions without a restart. Every
``ragindex`` CLI command is a short function over these methods.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

from ragindex.cost import Budget, Plan, Prices
from ragindex.reindex import IndexingResult, TenantRun, reindex
from ragindex.search import Hit, Searcher, tenant_mode
from ragindex.tenants import TenantSettings, TenantStore


class Ragindex:
    """All tenants under one state directory, with one embedding model per tenant configuration."""

    def __init__(self, home: str | Path | None = None, model: str | None = None, dimensions: int | None = None) -> None:
        """``home``: the state directory ($RAGINDEX_HOME, else ./.ragindex). ``model``: overrides every tenant's
        model ('default', a sentence-transformers directory, or 'openai:MODEL'); None uses each tenant's setting."""
        self.store = TenantStore(Path(home) if home else None)
        self.model = model
        self.dimensions = dimensions
        self._embedders: dict = {}
        self._searchers: dict = {}

    def tenants(self) -> list[str]:
        """Names of the registered tenants."""
        return self.store.names()

    def tenant(self, name: str) -> "Tenant":
        """A handle on one tenant (validates the name; the tenant need not exist yet)."""
        self.store.paths(name)
        return Tenant(self, name)

    def embedder_for(self, tenant: str | None = None):
        """The model a tenant embeds with: this object's model, else the tenant's setting, else the default."""
        from ragindex.embedder import EmbedderConfig

        model, dims = self.model, self.dimensions
        if model is None and tenant and self.store.exists(tenant):
            s = self.store.settings(tenant)
            model, dims = s.model, dims or s.dimensions
        key = (model or "default", dims)
        if key not in self._embedders:
            self._embedders[key] = EmbedderConfig(key[0], dimensions=key[1]).build()
        return self._embedders[key]

    def searcher(self, tenant: str, needs_model: bool = True) -> Searcher:
        """A warm searcher for the tenant's model (shared by every tenant with the same model)."""
        embedder = self.embedder_for(tenant) if needs_model else None
        key = id(embedder)
        if key not in self._searchers:
            self._searchers[key] = Searcher(self.store, embedder)
        return self._searchers[key]


class Tenant:
    """One tenant: its settings, index and ledger. Obtain it with ``Ragindex().tenant(name)``."""

    def __init__(self, rx: Ragindex, name: str) -> None:
        self.rx = rx
        self.name = name

    def __repr__(self) -> str:
        return f"Tenant({self.name!r}, home={str(self.rx.store.root)!r})"

    @property
    def exists(self) -> bool:
        return self.rx.store.exists(self.name)

    @property
    def settings(self) -> TenantSettings:
        return self.rx.store.settings(self.name)

    def add(self, source: str | Path, chunker: str | None = None, eval_set: str | None = None, model: str | None = None,
            dimensions: int | None = None, mode: str | None = None) -> TenantSettings:
        """Register (or update) the tenant: where its documents are and how they are indexed and searched.

        Example: ``rx.tenant("acme").add(source="./docs", chunker="markdown@1", mode="hybrid")``
        """
        from ragindex.schemas import SchemaRegistry
        from ragindex.schemas.registry import DEFAULT_SCHEMA

        chunker = chunker or DEFAULT_SCHEMA
        SchemaRegistry().runnable(chunker)
        old = self.settings if self.exists else TenantSettings()
        s = replace(old, source=str(Path(source).resolve()), chunker=chunker, eval_set=eval_set, model=model,
                    dimensions=dimensions, mode=mode)
        self.rx.store.save_settings(self.name, s)
        return s

    def plan(self, source: str | Path | None = None, chunker: str | None = None, rescan: bool = False,
             prices: Prices | None = None) -> Plan:
        """What a reindex would read, chunk, embed and cost; writes nothing.

        Example: ``print(rx.tenant("acme").plan().cost_usd)``
        """
        with TenantRun(self.rx.store, self.name, embedder=self.rx.embedder_for(self.name), source=source, chunker=chunker,
                       prices=prices, rescan=rescan) as run:
            return run.stage()[1]

    def reindex(self, source: str | Path | None = None, chunker: str | None = None, budget_tokens: int | None = None,
                max_cost: float | None = None, wait: float = 0.0, rescan: bool = False, rebuild: bool = False,
                allow_deletions: bool | None = None, prices: Prices | None = None, progress: bool = False) -> IndexingResult:
        """Index what changed; raises BudgetExceeded, MassDeletion, ChecksFailed or TenantBusy (nothing changed).

        Example: ``rx.tenant("acme").reindex(max_cost=0.50).status  # "promoted" or "unchanged"``
        """
        return reindex(self.rx.store, self.name, embedder=self.rx.embedder_for(self.name), source=source, chunker=chunker,
                       prices=prices, budget=Budget(budget_tokens, max_cost), wait=wait, rescan=rescan, rebuild=rebuild,
                       allow_deletions=allow_deletions, progress=progress)

    def search(self, query: str, k: int = 5, mode: str | None = None, filter: dict | str | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query``: mode dense, bm25 or hybrid (default: the tenant's), optionally filtered.

        Example: ``rx.tenant("acme").search("rotate keys", k=3, filter={"path": {"prefix": "ops/"}})``
        """
        searcher = self.rx.searcher(self.name, needs_model=(mode or tenant_mode(self.settings)) != "bm25")
        return searcher.search(self.name, query, k, mode, filter)

    def search_many(self, queries: Sequence[str], k: int = 5, mode: str | None = None,
                    filter: dict | str | None = None) -> list[list[Hit]]:
        """:meth:`search` for each query, against one generation (a promotion in between does not split them)."""
        searcher = self.rx.searcher(self.name, needs_model=(mode or tenant_mode(self.settings)) != "bm25")
        return searcher.search_many(self.name, list(queries), k, mode, filter)

    def status(self) -> dict:
        """Live generation, cache size, hit rate, ledger totals, spend per month and the last runs.

        While a reindex holds the cache, the cache figures are replaced by ``"busy"``
        (the generation is still reported): status never waits for a writer.
        """
        from ragindex.cache import CacheBusy, EmbeddingCache
        from ragindex.index import current_id

        paths = self.rx.store.require(self.name)
        out = {"tenant": self.name, "generation": current_id(paths)}
        if paths.cache.exists():
            try:
                with EmbeddingCache(paths.cache, read_only=True) as cache:
                    totals = cache.totals()
                    out["cache"] = cache.stats()
                    out["ledger"] = asdict(totals)
                    looked_up = totals.cache_hits + totals.texts
                    out["hit_rate"] = round(totals.cache_hits / looked_up, 4) if looked_up else None
                    out["spend_by_month"] = cache.monthly()
                    out["runs"] = cache.runs()[-5:]
            except CacheBusy as exc:
                out["cache"] = {"busy": True, "message": str(exc)}
        return out

    def generations(self) -> list[dict]:
        """Every generation, oldest first, with its summary (the live one marked)."""
        from ragindex.generations import describe

        return describe(self.rx.store.require(self.name))

    def rollback(self, to: str | None = None, wait: float = 0.0) -> str:
        """Make an earlier generation live (default: the one before the last change); re-pins schema and mode."""
        from ragindex.generations import rollback
        from ragindex.locking import tenant_lock
        from ragindex.migrate import repin_to_live

        paths = self.rx.store.require(self.name)
        with tenant_lock(paths.lock, wait=wait):
            gen = rollback(paths, to)
            repin_to_live(self.rx.store, self.name)
        return gen

    def migrate(self, to: str, mode: str | None = None, accept_regression: str | None = None, budget_tokens: int | None = None,
                max_cost: float | None = None, wait: float = 0.0) -> IndexingResult:
        """Move to another schema (and mode), gated on the tenant's eval set; see ``ragindex migrate``."""
        from ragindex.migrate import migrate

        return migrate(self.rx.store, self.name, to, embedder=self.rx.embedder_for(self.name), mode=mode,
                       budget=Budget(budget_tokens, max_cost), accept_regression=accept_regression, wait=wait)

    def verify(self, repair: bool = False, wait: float = 0.0) -> dict:
        """Check (and with ``repair`` fix, never re-embedding) every piece of the tenant's index."""
        from contextlib import nullcontext

        from ragindex.locking import tenant_lock
        from ragindex.repair import verify

        paths = self.rx.store.require(self.name)
        with tenant_lock(paths.lock, wait=wait) if repair else nullcontext():
            return verify(paths, repair=repair, store=self.rx.store)

    def remove(self, wait: float = 0.0) -> dict:
        """Delete every file of the tenant and its Dagster partition (see ``ragindex tenants remove``)."""
        from ragindex.offboard import remove_tenant

        return remove_tenant(self.rx.store, self.name, wait=wait)
