"""Searching one generation: every segment loaded (and cached across generations), deleted rows skipped,
per-segment top-k merged; dense and BM25 scoring over the live generation's statistics."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import NamedTuple

import faiss
import numpy as np

from ragindex.search.filters import document_mask, row_mask, uses_row_fields
from ragindex.search.hybrid import fuse
from ragindex.store.lexical import collection_stats, query_terms, windowed
from ragindex.store.lexical import score as bm25_score
from ragindex.store.manifests import GenerationError, Manifest, check_ref, read_manifest
from ragindex.store.paths import TenantPaths
from ragindex.store.segments import (
    Segment,
    SegmentError,
    live_row_mask,
    load_segment,
    read_deletions,
)

# -- searching a generation: every segment, deleted rows skipped, per-segment top-k merged --


class Candidate(NamedTuple):
    score: float
    seg: int
    row: int


_GPU_RESOURCES = None


def to_gpu_if_available(index: faiss.Index) -> faiss.Index:
    """Serve a flat index from the GPU when the faiss GPU build and a GPU are present.

    Files on disk are always CPU indexes, so a segment written on a GPU machine
    loads anywhere. HNSW has no GPU implementation and stays on the CPU, and so
    do segments with deleted rows (the GPU index takes no row filter). Set
    RAGINDEX_FAISS_GPU=0 to force the CPU.
    """
    global _GPU_RESOURCES
    if os.environ.get("RAGINDEX_FAISS_GPU", "1") == "0" or not hasattr(faiss, "StandardGpuResources"):
        return index
    if faiss.get_num_gpus() < 1 or not isinstance(index, faiss.IndexFlat) or index.ntotal == 0:
        return index
    if _GPU_RESOURCES is None:
        _GPU_RESOURCES = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(_GPU_RESOURCES, 0, index)


def _serving_index(seg: Segment) -> faiss.Index:
    """The index searches use for an unfiltered segment: its GPU copy where there is a GPU, made once."""
    serving = getattr(seg, "_serving", None)
    if serving is None:
        serving = seg._serving = to_gpu_if_available(seg.index)
    return serving


class _View:
    """One segment as a generation sees it: the shared index plus this generation's row filter."""

    def __init__(self, seg: Segment, mask: np.ndarray | None, stats_mask: np.ndarray | None | bool = False) -> None:
        self.seg = seg
        self.mask = mask  # None: every row is searchable
        # The rows BM25 statistics count: the live rows, whatever a metadata filter narrows the search to.
        self.stats_mask = mask if stats_mask is False else stats_mask
        self.live = int(mask.sum()) if mask is not None else seg.index.ntotal
        self.exact = not isinstance(seg.index, faiss.IndexHNSW)
        self._bitmap = None
        self.params = None
        self.index = seg.index
        if mask is not None and (self.live < seg.index.ntotal or self.live == 0):
            # Keep the bitmap referenced: the selector only points at it.
            self._bitmap = np.packbits(mask, bitorder="little")
            self._sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(self._bitmap))
        else:
            self._sel = None
            self.index = _serving_index(seg)
        self._chunk_ids = None

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.live)
        if self._sel is None:
            return self.index.search(q, k)
        if self.exact:
            params = faiss.SearchParameters(sel=self._sel)
        else:
            params = faiss.SearchParametersHNSW(sel=self._sel, efSearch=max(self.seg.index.hnsw.efSearch, k))
        return self.index.search(q, k, params=params)

    def chunk_id(self, row: int) -> str:
        if self._chunk_ids is None:
            self._chunk_ids = self.seg.rows.column("chunk_id").to_numpy(zero_copy_only=False)
        return self._chunk_ids[row]

    def narrowed(self, keep_docs: np.ndarray | None = None, keep_rows: np.ndarray | None = None) -> "_View":
        """This view with only the rows of the documents in ``keep_docs`` (or the rows in ``keep_rows``)
        searchable: a metadata filter."""
        if keep_rows is not None:
            rows = keep_rows
        else:
            docs = self.seg.docs
            rows = np.zeros(self.seg.index.ntotal, dtype=bool)
            for first, n in zip(docs.column("first_row").to_numpy()[keep_docs], docs.column("n_rows").to_numpy()[keep_docs]):
                rows[first : first + n] = True
        mask = rows if self.mask is None else (rows & self.mask)
        return _View(self.seg, mask, stats_mask=self.stats_mask)


@dataclass
class LoadedGeneration:
    """A generation ready to search: its manifest and its loaded segments with their row filters."""

    manifest: Manifest
    views: list[_View]

    @property
    def gen_id(self) -> str:
        return self.manifest.generation

    @property
    def ntotal(self) -> int:
        return sum(v.live for v in self.views)

    def search(self, queries: np.ndarray, k: int) -> list[list[Candidate]]:
        """The ``k`` best live rows per query, best first; ties broken by chunk id.

        With exact (flat) segments the result equals that of one segment holding
        every live row: a segment whose last returned score ties the k-th best is
        asked again for more, so a tie at the cut never depends on the layout.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        out: list[list[Candidate]] = [[] for _ in range(len(q))]
        if k <= 0 or self.ntotal == 0:
            return out
        per_seg = []
        for v in self.views:
            per_seg.append(v.search(q, k) if v.live else None)
        for qi in range(len(q)):
            found = {}
            for s, res in enumerate(per_seg):
                if res is not None:
                    found[s] = [(float(d), int(r)) for d, r in zip(res[0][qi], res[1][qi]) if r >= 0]
            cut = self._kth(found, k)
            for s, hits in list(found.items()):
                v = self.views[s]
                asked = min(k, v.live)
                while v.exact and cut is not None and asked < v.live and len(hits) == asked and hits[-1][0] >= cut:
                    asked = min(asked * 2, v.live)
                    d, r = v.search(q[qi : qi + 1], asked)
                    hits = [(float(a), int(b)) for a, b in zip(d[0], r[0]) if b >= 0]
                found[s] = hits
            merged = [(score, s, row) for s, hits in found.items() for score, row in hits]
            merged.sort(key=lambda c: (-c[0], self.views[c[1]].chunk_id(c[2])))
            out[qi] = [Candidate(*c) for c in merged[:k]]
        return out

    @staticmethod
    def _kth(found: dict, k: int) -> float | None:
        scores = sorted((d for hits in found.values() for d, _ in hits), reverse=True)
        return scores[k - 1] if len(scores) >= k else None

    def row(self, c: Candidate) -> dict:
        return self.views[c.seg].seg.rows.slice(c.row, 1).to_pylist()[0]

    def _ordered(self, scored: list[tuple[float, int, int]], k: int) -> list[Candidate]:
        scored.sort(key=lambda c: (-c[0], self.views[c[1]].chunk_id(c[2])))
        return [Candidate(*c) for c in scored[:k]]

    def lexical_scores(self, query: str, window: float = 0.0) -> list[np.ndarray]:
        """BM25 score of every row of every segment (deleted or filtered-out rows -inf), with the statistics of
        the generation's live rows (a filter narrows what is returned, not how it scores). With ``window``,
        each row is scored as its window (``ragindex.store.lexical.windowed``)."""
        terms = query_terms(query)
        lexes = [self._lexical(v.seg, window) for v in self.views]
        stats = collection_stats([(lex, v.stats_mask) for lex, v in zip(lexes, self.views)], terms)
        return [bm25_score(lex, v.mask, terms, stats) for lex, v in zip(lexes, self.views)]

    def _lexical(self, seg, window: float):
        """The segment's BM25 index, or its windows' (made once per segment and neighbours' share, then kept)."""
        if not window:
            return seg.lexical
        made = seg.__dict__.setdefault("_windows", {})
        if window not in made:
            (lo, hi), rows = _doc_bounds(seg), np.arange(seg.lexical.rows)
            made[window] = windowed(seg.lexical, np.where(rows - 1 >= lo, rows - 1, -1), np.where(rows + 1 < hi, rows + 1, -1),
                                    window)
        return made[window]

    def filtered(self, spec: dict) -> "LoadedGeneration":
        """The same generation with only the rows whose document matches ``spec`` searchable (pipeline.search.filters)."""

        views = []
        per_row = uses_row_fields(spec)
        for v in self.views:
            lists = getattr(v.seg, "_doc_lists", None)
            if lists is None:
                lists = v.seg._doc_lists = (v.seg.docs.column("doc_id").to_pylist(), v.seg.docs.column("metadata").to_pylist())
            if not per_row:
                views.append(v.narrowed(document_mask(spec, *lists)))
                continue
            docs, rows = v.seg.docs, v.seg.rows
            views.append(v.narrowed(keep_rows=row_mask(spec, *lists, docs.column("first_row").to_pylist(), docs.column("n_rows").to_pylist(),
                                                       rows.column("page").to_pylist(), rows.column("page_end").to_pylist())))
        return LoadedGeneration(self.manifest, views)

    @staticmethod
    def _top(scores: np.ndarray, k: int) -> np.ndarray:
        """Rows scoring above 0 among the ``k`` best, with every row tied at the cut (layout-independent)."""
        pos = np.flatnonzero(scores > 0)
        if len(pos) <= k:
            return pos
        cut = np.partition(scores[pos], len(pos) - k)[len(pos) - k]
        return pos[scores[pos] >= cut]

    def search_lexical(self, query: str, k: int) -> list[Candidate]:
        """The ``k`` best rows by BM25 (rows matching no query term are not returned)."""
        per_view = self.lexical_scores(query)
        scored = [(float(sc[r]), s, int(r)) for s, sc in enumerate(per_view) for r in self._top(sc, k)]
        return self._ordered(scored, k)

    def search_hybrid(self, query: str, qvec: np.ndarray, k: int, params) -> list[Candidate]:
        """Dense and BM25 candidates fused (pipeline.search.hybrid); every candidate gets both scores exactly."""

        if params.neighbours:  # a fusion no mode uses (params_for); only the evaluation scores it
            raise ValueError("the neighbour-score bonus is compared offline (ragindex.evaluate), not searched")
        depth = max(params.depth, k)
        dense = [((c.seg, c.row), c.score) for c in self.search(qvec.reshape(1, -1), depth)[0]]
        per_view = self.lexical_scores(query, params.window)
        lex_c = self._ordered([(float(sc[r]), s, int(r)) for s, sc in enumerate(per_view) for r in self._top(sc, depth)], depth)
        lexical = [((c.seg, c.row), c.score) for c in lex_c]
        dense_of = dict(dense)
        q = np.asarray(qvec, dtype=np.float32).reshape(-1)
        for key, _ in lexical:
            if key not in dense_of:
                dense_of[key] = float(np.dot(self.views[key[0]].seg.index.reconstruct(key[1]), q))
        lexical_of = {key: max(float(per_view[key[0]][key[1]]), 0.0) for key in dense_of.keys() | dict(lexical).keys()}
        fused = fuse(dense, lexical, dense_of, lexical_of, params)
        return self._ordered([(score, key[0], key[1]) for key, score in fused], k)


def _doc_bounds(seg) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``seg``, the first row of its document and the row after its last (a segment keeps a
    document's rows together, in order); computed once per segment."""
    bounds = getattr(seg, "_doc_bounds", None)
    if bounds is None:
        first = seg.docs.column("first_row").to_numpy()
        n = seg.docs.column("n_rows").to_numpy()
        bounds = seg._doc_bounds = (np.repeat(first, n), np.repeat(first + n, n))
    return bounds


class SegmentCache:
    """Loaded segments by id, shared by the generations that name them.

    A promotion that added one segment loads one segment: the others are
    already here. Segments no generation in use names are dropped on ``keep``.
    """

    def __init__(self) -> None:
        self._segments: dict[tuple[str, str], Segment] = {}
        self._lock = threading.Lock()

    def get(self, paths: TenantPaths, seg_id: str) -> Segment:
        key = (str(paths.root), seg_id)
        with self._lock:
            seg = self._segments.get(key)
        if seg is None:
            seg = load_segment(paths, seg_id)
            with self._lock:
                seg = self._segments.setdefault(key, seg)
        return seg

    def keep(self, paths: TenantPaths, seg_ids: set[str]) -> None:
        with self._lock:
            for key in [k for k in self._segments if k[0] == str(paths.root) and k[1] not in seg_ids]:
                del self._segments[key]


def open_generation(paths: TenantPaths, manifest: Manifest, cache: SegmentCache | None = None) -> LoadedGeneration:
    """Load every segment of ``manifest`` (checksums verified once per segment) with its deletion filter."""
    cache = cache or SegmentCache()
    views = []
    for ref in manifest.segments:
        try:
            seg = cache.get(paths, ref.id)
            check_ref(paths, ref, manifest.generation, seg.info)  # this tenant's segment, the one the manifest recorded
            deleted = read_deletions(paths, ref.deletions, ref.deletions_sha256 or "") if ref.deletions else None
        except SegmentError as exc:
            raise GenerationError(f"generation {manifest.generation} of tenant {paths.name}: {exc}; "
                                  f"run `ragindex verify --tenant {paths.name} --repair` or `ragindex rollback --tenant {paths.name}`") from None
        mask = live_row_mask(seg.docs, deleted, seg.index.ntotal) if deleted is not None and len(deleted) else None
        views.append(_View(seg, mask))
    return LoadedGeneration(manifest, views)


def load_generation(paths: TenantPaths, gen_id: str, cache: SegmentCache | None = None) -> LoadedGeneration:
    return open_generation(paths, read_manifest(paths, gen_id), cache)
