"""search(tenant, query): that tenant's CURRENT generation only, every segment, deleted rows skipped."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

import numpy as np

from pipeline.index import GenerationError, LoadedGeneration, SegmentCache, current_id, load_generation
from pipeline.tenants import TenantStore


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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["heading_path"] = list(self.heading_path)
        return d


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

    def search(self, tenant: str, query: str, k: int = 5) -> list[Hit]:
        gen = self.generation(tenant)
        if gen.manifest.embedder_fp != self.embedder.fingerprint:
            raise GenerationError(
                f"tenant {tenant!r} was indexed with another embedder ({gen.manifest.embedder}, {gen.manifest.embedder_fp[:12]}); "
                "search with the same model or reindex the tenant"
            )
        if gen.ntotal == 0:
            return []
        q = self.embedder.embed([query]).astype(np.float32)
        hits = []
        for rank, c in enumerate(gen.search(q, k)[0], start=1):
            r = gen.row(c)
            hits.append(Hit(rank=rank, score=c.score, doc_id=r["doc_id"], chunk_id=r["chunk_id"], start=r["start"], end=r["end"],
                            text=r["text"], heading_path=tuple(r["heading_path"] or ()), generation=gen.gen_id))
        return hits
