"""search(tenant, query): that tenant's CURRENT generation only, every segment, deleted rows skipped."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace

import numpy as np

from ragindex.schemas.registry import DEFAULT_SCHEMA
from ragindex.search.filters import parse as parse_filter
from ragindex.search.generation import LoadedGeneration, SegmentCache, load_generation
from ragindex.search.hybrid import MODES, params_for
from ragindex.store.manifests import GenerationError, current_id
from ragindex.store.tenants import TenantStore


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    doc_id: str
    chunk_id: str
    start: int
    end: int
    text: str
    heading_path: tuple[str, ...]
    generation: str
    # A PDF's pages or a deck's slides (1-based): where the chunk starts and ends; None without pages.
    page: int | None = None
    page_end: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["heading_path"] = list(self.heading_path)
        return d


# The mode each default configuration was published with: a tenant on that schema with no mode of its own is
# searched this way. The map keeps a tenant pinned to an older default on its mode when the default changes,
# until it migrates (`ragindex migrate --to default@3`, which moves it to that schema's mode).
SCHEMA_MODES = {"default@2": "hybrid", "default@3": "hybrid-ctx"}
DEFAULT_MODE = SCHEMA_MODES[DEFAULT_SCHEMA]  # the default configuration's mode
LEGACY_MODE = "dense"  # what a tenant on any other schema gets without a mode of its own


def tenant_mode(settings) -> str:
    """A tenant's search mode: its own ``mode`` setting, else the mode its schema was published as a default
    with (:data:`SCHEMA_MODES`), else dense."""
    if settings is not None and settings.mode:
        return settings.mode
    return SCHEMA_MODES.get(settings.chunker, LEGACY_MODE) if settings is not None else LEGACY_MODE


def migration_mode(settings, to: str, mode: str | None = None) -> str | None:
    """The mode a migration to schema ``to`` builds: ``mode`` if given; a tenant on a default configuration
    (its schema in its published mode) moving to another default schema gets that schema's mode; any other
    tenant keeps its mode."""
    if mode:
        return mode
    if settings.mode is None:  # no mode of its own (registered, never built): what a tenant on ``to`` gets
        return tenant_mode(replace(settings, chunker=to))
    if settings.mode == SCHEMA_MODES.get(settings.chunker) and to in SCHEMA_MODES:
        return SCHEMA_MODES[to]
    return settings.mode


class Searcher:
    """Searches tenants; keeps each tenant's live generation loaded and follows CURRENT.

    Every call reads the tenant's CURRENT pointer (one tiny file); when a reindex
    or a rollback has moved it, the new generation is opened and swapped in, so a
    long-running process picks up promotions without a restart. Segments are
    shared between generations, so the swap loads only the segments that are new.
    """

    def __init__(self, store: TenantStore, embedder) -> None:
        self.store = store
        self.embedder = embedder
        self._loaded: dict[str, LoadedGeneration] = {}
        self._segments = SegmentCache()
        self._lock = threading.Lock()
        self._models_ok: set[tuple[str, str]] = set()  # (tenant, embedder_fp) whose probe still matches

    def generation(self, tenant: str) -> LoadedGeneration:
        paths = self.store.require(tenant)
        gen = current_id(paths)
        if gen is None:
            raise GenerationError(f"tenant {tenant!r} has no index yet; run `ragindex reindex --tenant {tenant}`")
        with self._lock:
            loaded = self._loaded.get(tenant)
            if loaded is None or loaded.gen_id != gen:
                loaded = load_generation(paths, gen, self._segments)
                self._loaded[tenant] = loaded
                self._segments.keep(paths, {r.id for r in loaded.manifest.segments})
        return loaded

    def embedder_for(self, gen: LoadedGeneration):
        """The embedder in the generation's key space (a hosted model's epoch; a local model is itself)."""
        with_epoch = getattr(self.embedder, "with_epoch", None)
        return with_epoch(gen.manifest.embedder_epoch) if with_epoch else self.embedder

    def mode_for(self, tenant: str, mode: str | None) -> str:
        """The explicit mode, else the tenant's (:func:`tenant_mode`)."""
        if mode is None:
            mode = tenant_mode(self.store.settings(tenant))
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        return mode

    def search(self, tenant: str, query: str, k: int = 5, mode: str | None = None, filter: dict | str | None = None) -> list[Hit]:
        """The ``k`` best chunks of the tenant's live generation for ``query`` (``mode``: dense, bm25, hybrid, hybrid-ctx),
        among the chunks whose document matches ``filter`` (pipeline.search.filters), if given."""
        return self.search_many(tenant, [query], k, mode, filter)[0]

    def search_many(self, tenant: str, queries: list[str], k: int = 5, mode: str | None = None,
                    filter: dict | str | None = None) -> list[list[Hit]]:
        """:meth:`search` for several queries against one generation (dense queries embedded in one batch)."""
        mode = self.mode_for(tenant, mode)
        gen = self.generation(tenant)
        if filter is not None:
            gen = gen.filtered(parse_filter(filter))
        embedder = self.embedder_for(gen)
        if mode != "bm25" and gen.manifest.embedder_fp != embedder.fingerprint:
            raise GenerationError(
                f"tenant {tenant!r} was indexed with another embedder ({gen.manifest.embedder}, {gen.manifest.embedder_fp[:12]}); "
                "search with the same model or reindex the tenant"
            )
        if mode != "bm25" and queries:
            self._check_model(tenant, embedder)
        if gen.ntotal == 0 or not queries:
            return [[] for _ in queries]
        if mode == "bm25":
            found = [gen.search_lexical(q, k) for q in queries]
        else:
            qv = embedder.embed(list(queries)).astype(np.float32)
            found = gen.search(qv, k) if mode == "dense" else [gen.search_hybrid(q, v, k, params_for(mode)) for q, v in zip(queries, qv)]
        return [[self._hit(gen, rank, c) for rank, c in enumerate(row, start=1)] for row in found]

    def _check_model(self, tenant: str, embedder) -> None:
        """A hosted model: before any query is embedded, is it still the model the tenant's vectors came from?

        Checked once per process, tenant and key space (epoch); ModelDriftError (the service
        is unavailable for this tenant) until the tenant is re-embedded. A local model is its weights.
        """
        check = getattr(embedder, "check_queries", None)
        key = (tenant, embedder.fingerprint)
        if check is None or key in self._models_ok:
            return
        check(self.store.paths(tenant).cache, tenant)
        self._models_ok.add(key)

    @staticmethod
    def _hit(gen: LoadedGeneration, rank: int, c) -> Hit:
        r = gen.row(c)
        return Hit(rank=rank, score=c.score, doc_id=r["doc_id"], chunk_id=r["chunk_id"], start=r["start"], end=r["end"],
                   text=r["text"], heading_path=tuple(r["heading_path"] or ()), generation=gen.gen_id,
                   page=r.get("page"), page_end=r.get("page_end"))
