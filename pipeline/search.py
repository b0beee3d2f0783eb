"""search(tenant, query): open that tenant's CURRENT generation only, and rank its chunks."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

import numpy as np

from pipeline.index import Generation, GenerationError, current_id, load_generation
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
    or a rollback has moved it, the new generation is loaded and swapped in, so a
    long-running process picks up promotions without a restart, and keeps
    serving the generation it has while the next one is being built.
    """

    def __init__(self, store: TenantStore, embedder) -> None:
        self.store = store
        self.embedder = embedder
        self._loaded: dict[str, Generation] = {}
        self._lock = threading.Lock()

    def generation(self, tenant: str) -> Generation:
        paths = self.store.require(tenant)
        gen = current_id(paths)
        if gen is None:
            raise GenerationError(f"tenant {tenant!r} has no index yet; run `ragindex reindex --tenant {tenant}`")
        with self._lock:
            loaded = self._loaded.get(tenant)
            if loaded is None or loaded.gen_id != gen:
                loaded = load_generation(paths, gen)
                self._loaded[tenant] = loaded
        return loaded

    def search(self, tenant: str, query: str, k: int = 5) -> list[Hit]:
        gen = self.generation(tenant)
        if gen.manifest.get("embedder_fp") not in (None, self.embedder.fingerprint):
            raise GenerationError(
                f"tenant {tenant!r} was indexed with another embedder ({gen.manifest['embedder_fp'][:12]}); "
                "search with the same model or reindex the tenant"
            )
        if gen.index.ntotal == 0:
            return []
        q = self.embedder.embed([query]).astype(np.float32)
        scores, rows = gen.index.search(q, min(k, gen.index.ntotal))
        hits = []
        cols = gen.rows
        for rank, (score, row) in enumerate(zip(scores[0], rows[0]), start=1):
            if row < 0:
                continue
            r = int(row)
            hits.append(
                Hit(
                    rank=rank,
                    score=float(score),
                    doc_id=cols.column("doc_id")[r].as_py(),
                    chunk_id=cols.column("chunk_id")[r].as_py(),
                    start=cols.column("start")[r].as_py(),
                    end=cols.column("end")[r].as_py(),
                    text=cols.column("text")[r].as_py(),
                    heading_path=tuple(cols.column("heading_path")[r].as_py() or ()),
                    generation=gen.gen_id,
                )
            )
        return hits
