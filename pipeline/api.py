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

A :class:`Ragindex` keeps its models and each tenant's live generation loaded, so
repeated searches are warm; it follows promotions without a restart.

Layers: the ``ragindex`` CLI is a thin layer over this module (each command parses
its flags, calls one method here and prints the result), and this module is a thin
layer over the library: :class:`~ragindex.indexing.run.TenantRun` for runs,
:class:`~ragindex.store.writer.TenantWriter` for every other write.

Arguments are checked here and below, never only by the CLI (``ragindex.arguments``:
one check per kind, which the CLI's option types and the HTTP service call too): a bad ``k``, query, mode,
``wait`` or budget raises :class:`~ragindex.errors.ArgumentError` (a ValueError), a
bad source the source check's own error, before anything is read or written.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

from ragindex import arguments
from ragindex.embedders.registry import Embedders
from ragindex.errors import CacheBusy, GenerationError, TenantError
from ragindex.evaluate.tenant import tenant_quality
from ragindex.indexing.chunk import cut_document  # noqa: F401  (`ragindex chunk` previews a file the way runs cut it)
from ragindex.indexing.migrate import migrate, plan_migration
from ragindex.indexing.options import RunOptions
from ragindex.indexing.plan import Budget, Plan
from ragindex.indexing.prices import Prices
from ragindex.indexing.repair import verify
from ragindex.indexing.run import IndexingResult, TenantRun
from ragindex.ingest.sources import source_kind
from ragindex.instance import unregister_partition
from ragindex.schemas import SchemaRegistry
from ragindex.schemas.registry import DEFAULT_SCHEMA
from ragindex.search.hybrid import MODES
from ragindex.search.searcher import Hit, Searcher, tenant_mode
from ragindex.store import keys
from ragindex.store.cache import EmbeddingCache
from ragindex.store.generations import describe
from ragindex.store.maintenance import Maintenance
from ragindex.store.manifests import current_id
from ragindex.store.offboard import remove_tenant
from ragindex.store.tenants import TenantSettings, TenantStore
from ragindex.store.writer import TenantWriter

__all__ = ["Budget", "Hit", "IndexingResult", "Plan", "Prices", "Ragindex", "RunOptions", "Tenant"]


def checked_source(source: str | Path) -> str:
    """The absolute path of a source ragindex can read (a folder, a .jsonl or .parquet file, or a document), so a
    tenant is never registered with a source its first reindex could not read. The check is the runs' own
    (``ingest.sources.source_kind``): SourceMissing (a FileNotFoundError) or SourceError (a .csv)."""
    path = Path(source).resolve()
    source_kind(path)
    return str(path)


class Ragindex:
    """All tenants under one state directory, with one embedding model per tenant configuration."""

    def __init__(self, home: str | Path | None = None, model: str | None = None, dimensions: int | None = None) -> None:
        """``home``: the state directory ($RAGINDEX_HOME, else ./.ragindex). ``model``: overrides every tenant's
        model ('default', a sentence-transformers directory, or 'openai:MODEL'); None uses each tenant's setting."""
        self.store = TenantStore(Path(home) if home else None)
        self.model = model
        self.dimensions = dimensions
        self.embedders = Embedders(model, dimensions)
        self._searchers: dict = {}

    def tenants(self) -> list[str]:
        """Names of the registered tenants."""
        return self.store.names()

    def overview(self) -> list[dict]:
        """Each tenant's source, pinned schema and live generation; a tenant whose state is broken says why
        (one tenant's broken state never hides the others)."""
        rows = []
        for name in self.store.names():
            row = {"tenant": name, "source": None, "chunker": None, "generation": None, "error": None}
            try:
                s = self.store.settings(name)
                row.update(source=s.source, chunker=s.chunker, generation=current_id(self.store.paths(name)))
            except (TenantError, GenerationError) as exc:
                row["error"] = str(exc)
            rows.append(row)
        return rows

    def tenant(self, name: str) -> "Tenant":
        """A handle on one tenant (validates the name; the tenant need not exist yet)."""
        self.store.paths(name)
        return Tenant(self, name)

    def embedder_for(self, tenant: str | None = None):
        """The model a tenant embeds with: this object's model, else the tenant's setting, else the default."""
        return self.embedders.for_tenant(self.store, tenant)

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
    def store(self) -> TenantStore:
        return self.rx.store

    @property
    def exists(self) -> bool:
        return self.store.exists(self.name)

    @property
    def settings(self) -> TenantSettings:
        """The tenant's settings; its schema and mode are those of its live generation (its pin)."""
        return self.store.settings(self.name)

    def writer(self, wait: float = 0.0, create: bool = False) -> TenantWriter:
        """The tenant's writer lock and the writes that need it (``with tenant.writer() as w: ...``)."""
        return TenantWriter(self.store, self.name, wait=wait, create=create)

    # -- registering ------------------------------------------------------------------

    def add(self, source: str | Path, chunker: str | None = None, eval_set: str | None = None, model: str | None = None,
            dimensions: int | None = None, mode: str | None = None, wait: float = 0.0) -> TenantSettings:
        """Register (or update) the tenant: where its documents are and how they are indexed and searched.

        The schema and mode of a tenant that already has a live generation are its
        pin: changing them is a migration (:meth:`migrate`), so passing others is
        refused. The source must exist and be of a kind ragindex reads, and the mode be one of
        dense, bm25, hybrid, hybrid-ctx: nothing is saved otherwise. A model not given keeps the one the tenant has
        (changing it is ``model=``; ``"default"`` is the torch model). Example:
        ``rx.tenant("acme").add(source="./docs", chunker="markdown@1", mode="hybrid")``
        """
        arguments.choice(mode, MODES, "mode")
        source = checked_source(source)
        if chunker is not None:
            SchemaRegistry().runnable(chunker)
        with self.writer(wait=wait, create=True) as w:
            old = self.store.stored_settings(self.name)
            pinned = self.settings if current_id(w.paths) else None
            if pinned is not None and (chunker not in (None, pinned.chunker) or mode not in (None, pinned.mode)):
                raise TenantError(
                    f"tenant {self.name!r} is live on {pinned.chunker} ({pinned.mode}); moving it to "
                    f"{chunker or pinned.chunker} ({mode or pinned.mode}) is a migration: "
                    f"`ragindex migrate --tenant {self.name} --to {chunker or pinned.chunker}"
                    + (f" --mode {mode}" if mode else "") + "`")
            s = replace(old, source=source, chunker=chunker or old.chunker or DEFAULT_SCHEMA,
                        eval_set=eval_set, model=model if model is not None else old.model,
                        dimensions=dimensions if model is not None or dimensions is not None else old.dimensions,
                        mode=mode if mode is not None else old.mode)
            w.save_settings(s)
        return self.settings

    def remove(self, wait: float = 0.0) -> dict:
        """Delete every file of the tenant and its Dagster partition (see ``ragindex tenants remove``)."""
        out = remove_tenant(self.store, self.name, wait=wait)
        out["dagster_partition_removed"] = unregister_partition(self.name)
        return out

    # -- indexing -----------------------------------------------------------------------

    def _run(self, options: RunOptions | None, overrides: dict) -> TenantRun:
        return TenantRun(self.store, self.name, embedder=self.rx.embedder_for(self.name), options=options, **overrides)

    def plan(self, options: RunOptions | None = None, **overrides) -> Plan:
        """What a reindex would read, chunk, embed and cost; writes nothing. ``plan.skipped`` lists skipped inputs.

        Example: ``print(rx.tenant("acme").plan().cost_usd)``
        """
        with self._run(options, overrides) as run:
            staged, plan = run.stage()
        return replace(plan, skipped=list(staged.changes.skipped))

    def reindex(self, options: RunOptions | None = None, *, budget_tokens: int | None = None, max_cost: float | None = None,
                **overrides) -> IndexingResult:
        """Index what changed; raises BudgetExceeded, MassDeletion, ChecksFailed or TenantBusy (nothing changed).

        Options are :class:`RunOptions` fields (``source``, ``chunker``, ``wait``, ``rescan``, ...), as an
        object or keywords. Example: ``rx.tenant("acme").reindex(max_cost=0.50).status  # "promoted" or "unchanged"``
        """
        if budget_tokens is not None or max_cost is not None:
            overrides["budget"] = Budget(budget_tokens, max_cost)
        return self._run(options, overrides).run()

    def migrate(self, to: str, mode: str | None = None, accept_regression: str | None = None, budget_tokens: int | None = None,
                max_cost: float | None = None, wait: float = 0.0, progress: bool = False) -> IndexingResult:
        """Move to another schema (and mode), gated on the tenant's eval set; see ``ragindex migrate``."""
        return migrate(self.store, self.name, to, embedder=self.rx.embedder_for(self.name), mode=mode,
                       budget=Budget(budget_tokens, max_cost), accept_regression=accept_regression, wait=wait,
                       progress=progress)

    def plan_migration(self, to: str, mode: str | None = None) -> Plan:
        """What :meth:`migrate` would chunk, embed and cost (writes nothing)."""
        return plan_migration(self.store, self.name, to, embedder=self.rx.embedder_for(self.name), mode=mode)[1]

    # -- searching ------------------------------------------------------------------------

    def search(self, query: str, k: int = 5, mode: str | None = None, filter: dict | str | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query`` (mode dense, bm25, hybrid, hybrid-ctx; default: the tenant's), optionally
        filtered.

        ``query`` is non-blank UTF-8 text and ``k`` a whole number from 1 to 1000, else ArgumentError.
        Example: ``rx.tenant("acme").search("rotate keys", k=3, filter={"path": {"prefix": "ops/"}})``
        """
        query = arguments.query(query)
        return self._searcher(k, mode).search(self.name, query, k, mode, filter)

    def search_many(self, queries: Sequence[str], k: int = 5, mode: str | None = None,
                    filter: dict | str | None = None) -> list[list[Hit]]:
        """:meth:`search` for each query, against one generation (a promotion in between does not split them)."""
        return self._searcher(k, mode).search_many(self.name, arguments.queries(queries), k, mode, filter)

    def _searcher(self, k: int, mode: str | None) -> Searcher:
        """The warm searcher for ``k`` hits in ``mode`` (both checked first: ``ragindex.arguments``)."""
        arguments.hits(k)
        arguments.choice(mode, MODES, "mode")
        return self.rx.searcher(self.name, needs_model=(mode or tenant_mode(self.settings)) != "bm25")

    def evaluate(self, generation: str | None = None, k: int = 5) -> dict:
        """Score a generation (default: the live one) on the tenant's own eval set."""

        paths = self.store.require(self.name)
        eval_set = self.settings.eval_set
        if eval_set is None:
            raise TenantError(f"tenant {self.name!r} has no eval set; register one with "
                              f"`ragindex tenants add {self.name} --source ... --eval-set PATH`")
        gen = generation or current_id(paths)
        if gen is None:
            raise TenantError(f"tenant {self.name!r} has no live generation yet; run `ragindex reindex --tenant {self.name}` first")
        metrics = tenant_quality(self.store, self.name, gen, self.rx.embedder_for(self.name), k=k)
        return {"tenant": self.name, "generation": gen, "eval_set": eval_set, "k": k, "metrics": metrics}

    # -- state and lifecycle ------------------------------------------------------------------

    def status(self) -> dict:
        """Live generation, cache size, hit rate, ledger totals, spend per month and the last runs.

        While a reindex holds the cache, the cache figures are replaced by ``"busy"``
        (the generation is still reported): status never waits for a writer.
        """
        paths = self.store.require(self.name)
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
        return describe(self.store.require(self.name))

    def rollback(self, to: str | None = None, wait: float = 0.0) -> str:
        """Make an earlier generation live (default: the one before the last change), and with it the schema and
        mode it was made with; returns its id. :meth:`rollback_report` says what it replaced, too."""
        return self.rollback_report(to, wait)["to"]

    def rollback_report(self, to: str | None = None, wait: float = 0.0) -> dict:
        """:meth:`rollback`, returning ``{"tenant", "from", "to", "chunker", "mode"}`` (``from`` read under the lock)."""
        with self.writer(wait=wait) as w:
            return w.rollback(to)

    def verify(self, repair: bool = False, wait: float = 0.0) -> dict:
        """Check (and with ``repair`` fix, never re-embedding) every piece of the tenant's index."""
        if not repair:
            return verify(self.store.require(self.name), repair=False, store=self.store)
        with self.writer(wait=wait) as w:
            report = verify(w.paths, repair=True, store=self.store)
            w.reconcile()  # a repair may have moved CURRENT, and the pin with it
            return report

    def gc(self, keep: int | None = None, wait: float = 0.0) -> list[str]:
        """Delete old generations, then every segment and deletion file no kept generation uses."""
        with self.writer(wait=wait) as w:
            return w.gc(keep)

    def compact(self, wait: float = 0.0) -> Maintenance:
        """Merge every segment of the live generation into one, dropping deleted rows (nothing re-embedded)."""
        with self.writer(wait=wait) as w:
            return w.compact()

    # -- API keys (their own lock: never behind a reindex) -------------------------------------

    def create_key(self, name: str = "") -> tuple[str, dict]:
        """A new key for ``ragindex serve``: (the key, shown once and never stored; its public record)."""
        key, rec = keys.create(self.store, self.name, name)
        return key, rec.public()

    def keys(self) -> list[dict]:
        """The tenant's keys: ids, names, dates (never the keys)."""
        self.store.require(self.name)
        return [k.public() for k in keys.load(self.store, self.name)]

    def revoke_key(self, key_id: str) -> dict:
        """Revoke a key by its id; the next request with it is refused."""
        return keys.revoke(self.store, self.name, key_id).public()
