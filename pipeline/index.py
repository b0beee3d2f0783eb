"""Stage 4, tenant_index: generation manifests over shared segments, and the CURRENT pointer.

A generation is one small JSON manifest, ``generations/<gen_id>.json``, naming
the segments it is made of and, per segment, the deletion set that hides the
documents no longer live. Segments are immutable and shared by reference, so a
run that changed one document writes one small segment, one deletion file and
a manifest; everything else is the previous generation's.

The manifest is written (temp file, fsync, rename) only after its segments and
deletion files are durable, and ``CURRENT`` is replaced atomically only after
that: a crash at any moment leaves the previous generation live and loadable.
Manifests are validated against :class:`Manifest` and carry their own sha256,
and CURRENT must name a generation of this tenant: state files are data, never
trusted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragindex.fsutil import atomic_write_text
from ragindex.lexical import collection_stats, query_terms
from ragindex.lexical import score as bm25_score
from ragindex.segments import (
    SEGMENT_RE,
    Segment,
    SegmentError,
    first_error,
    live_row_mask,
    load_segment,
    read_deletions,
    read_docs,
    read_info,
)
from ragindex.tenants import TenantPaths

GEN_ID_RE = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{8}")
FORMAT = 2


class GenerationError(RuntimeError):
    """A generation is missing, incomplete or does not match its manifest."""


class SegmentRef(BaseModel):
    """One segment of a generation and the documents the generation deletes from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=SEGMENT_RE.pattern)
    rows: int = Field(ge=0)
    docs: int = Field(ge=0)
    deleted_docs: int = Field(0, ge=0)
    deleted_rows: int = Field(0, ge=0)
    deletions: str | None = None  # file in deletions/, None when nothing is deleted
    deletions_sha256: str | None = None

    @property
    def live_rows(self) -> int:
        return self.rows - self.deleted_rows

    @property
    def live_docs(self) -> int:
        return self.docs - self.deleted_docs


class SourceState(BaseModel):
    """Where the documents came from, and the source file's stat for single-file sources."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    kind: Literal["folder", "jsonl", "parquet", "file"]
    size: int = -1
    mtime_ns: int = -1
    # sha256 of a single-file source's bytes when it was read (None: unknown, or it changed while read).
    # A rewritten but byte-identical file (a new mtime, the same content) is then not parsed again.
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """``generations/<gen_id>.json``: everything a generation is, by reference."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[2] = FORMAT
    generation: str = Field(pattern=GEN_ID_RE.pattern)
    tenant: str
    created_at: str
    parent: str | None = None  # the generation this one was derived from
    kind: Literal["index", "merge", "repair"] = "index"
    chunker: str
    chunker_fp: str
    embedder: str
    embedder_fp: str
    embedder_epoch: int = 0  # a hosted model's key space (bumped when a provider-side change is accepted)
    search_mode: str = "dense"  # the tenant's search mode when this generation was made (rollback restores it)
    dim: int = Field(ge=1)
    segments: list[SegmentRef]
    documents: int = Field(ge=0)  # live documents
    chunks: int = Field(ge=0)  # live rows (= vectors searched)
    source: SourceState | None = None
    docs_digest: str  # order-free digest of (doc_id, doc_hash, metadata) of the live documents
    versions: dict[str, str] = Field(default_factory=dict)  # content versions per stage (Dagster DataVersion)
    run: dict = Field(default_factory=dict)  # run id, plan and ledger summary, change counts
    gates: dict[str, dict] = Field(default_factory=dict)  # the checks this generation passed or failed
    eval: dict[str, float] | None = None  # retrieval quality on the tenant's eval set, if it has one
    sha256: str = ""  # of the canonical JSON of everything above

    def digest(self) -> str:
        body = self.model_dump(mode="json", exclude={"sha256"})
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def sealed(self) -> "Manifest":
        return self.model_copy(update={"sha256": self.digest()})


def new_generation_id(seed: str) -> str:
    """Sortable and content-derived: UTC time to the microsecond plus a hash of the content."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{hashlib.sha256((seed + stamp).encode()).hexdigest()[:8]}"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


# -- documents digest: a multiset hash, so it can be updated by the change alone ----------

_MOD = 1 << 256


def doc_term(doc_id: str, doc_hash: str, metadata: str) -> int:
    h = hashlib.sha256(f"{doc_id}\x00{doc_hash}\x00{metadata}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(h, "big")


def digest_update(digest: str, added: list[tuple[str, str, str]], removed: list[tuple[str, str, str]]) -> str:
    """The digest of a document set after adding and removing documents (order-free, like a sum)."""
    value = int(digest, 16)
    for d in added:
        value = (value + doc_term(*d)) % _MOD
    for d in removed:
        value = (value - doc_term(*d)) % _MOD
    return f"{value:064x}"


EMPTY_DIGEST = f"{0:064x}"


# -- manifests and CURRENT ------------------------------------------------------


def write_manifest(paths: TenantPaths, manifest: Manifest) -> Manifest:
    """Write a sealed manifest atomically; every segment and deletion file it names must already be durable."""
    sealed = manifest.sealed()
    paths.generations.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write_text(paths.manifest(sealed.generation), sealed.model_dump_json(indent=1) + "\n")
    return sealed


def read_manifest(paths: TenantPaths, gen_id: str) -> Manifest:
    """The validated manifest of ``gen_id``; GenerationError naming what is wrong."""
    if not isinstance(gen_id, str) or not GEN_ID_RE.fullmatch(gen_id):
        raise GenerationError(f"{gen_id!r} is not a generation id of tenant {paths.name}")
    f = paths.manifest(gen_id)
    try:
        raw = f.read_bytes()
    except FileNotFoundError:
        raise GenerationError(f"generation {gen_id} of tenant {paths.name} is missing ({f})") from None
    try:
        m = Manifest.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        raise GenerationError(f"{f}: corrupt manifest ({first_error(exc)}); run `ragindex verify --tenant {paths.name} --repair`") from None
    if m.sha256 != m.digest() or m.generation != gen_id or m.tenant != paths.name:
        raise GenerationError(f"{f}: corrupt manifest (checksum, id or tenant does not match); "
                              f"run `ragindex verify --tenant {paths.name} --repair`")
    return m


def promote(paths: TenantPaths, gen_id: str) -> None:
    """Point CURRENT at ``gen_id`` atomically (its manifest must be complete and valid)."""
    read_manifest(paths, gen_id)
    atomic_write_text(paths.current, gen_id + "\n")


def current_id(paths: TenantPaths) -> str | None:
    """The live generation id, None when the tenant has none; GenerationError if CURRENT is not a valid id."""
    try:
        raw = paths.current.read_bytes()
    except FileNotFoundError:
        return None
    text = raw.decode("ascii", errors="replace").strip()
    if not text:
        return None
    if not GEN_ID_RE.fullmatch(text):
        raise GenerationError(f"{paths.current} does not hold a generation id ({text[:40]!r}); "
                              f"run `ragindex verify --tenant {paths.name} --repair`")
    return text


def list_generations(paths: TenantPaths) -> list[str]:
    """Generations with a manifest file, oldest first (ids sort by creation time)."""
    if not paths.generations.is_dir():
        return []
    return sorted(f.stem for f in paths.generations.glob("*.json") if GEN_ID_RE.fullmatch(f.stem))


def live_manifest(paths: TenantPaths) -> Manifest | None:
    gen = current_id(paths)
    return read_manifest(paths, gen) if gen else None


# -- the live documents of a generation ------------------------------------------------


class LiveDoc(NamedTuple):
    seg: int  # position of the segment in the manifest
    ordinal: int  # position of the document in that segment's docs.parquet
    doc_hash: str
    metadata: str
    first_row: int
    n_rows: int
    size: int
    mtime_ns: int


@dataclass
class LiveState:
    """The documents a generation holds, by id, and each segment's deleted documents."""

    manifest: Manifest | None
    docs: dict[str, LiveDoc] = field(default_factory=dict)
    deleted: list[np.ndarray] = field(default_factory=list)  # per segment: deleted document positions

    @property
    def generation(self) -> str | None:
        return self.manifest.generation if self.manifest else None

    def segment_id(self, seg: int) -> str:
        return self.manifest.segments[seg].id

    def rows_by_hash(self) -> dict[str, LiveDoc]:
        """doc_hash -> a live document with that content (for reusing its chunks)."""
        out: dict[str, LiveDoc] = {}
        for d in self.docs.values():
            out.setdefault(d.doc_hash, d)
        return out


def load_live_state(paths: TenantPaths, manifest: Manifest | None) -> LiveState:
    """Read the documents of every segment of ``manifest`` minus its deletions (no index, no rows)."""
    state = LiveState(manifest)
    if manifest is None:
        return state
    for i, ref in enumerate(manifest.segments):
        try:
            docs = read_docs(paths, ref.id, read_info(paths, ref.id))
            deleted = read_deletions(paths, ref.deletions, ref.deletions_sha256 or "") if ref.deletions else np.zeros(0, np.int64)
        except SegmentError as exc:
            raise GenerationError(f"generation {manifest.generation}: {exc}; run `ragindex verify --tenant {paths.name} --repair`") from None
        state.deleted.append(deleted)
        alive = np.ones(docs.num_rows, dtype=bool)
        alive[deleted] = False
        cols = [docs.column(c).to_pylist() for c in ("doc_id", "doc_hash", "metadata", "first_row", "n_rows", "size", "mtime_ns")]
        for ordinal, (doc_id, h, meta, first, n, size, mtime) in enumerate(zip(*cols)):
            if alive[ordinal]:
                state.docs[doc_id] = LiveDoc(i, ordinal, h, meta, first, n, size, mtime)
    return state


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

    def narrowed(self, keep_docs: np.ndarray) -> "_View":
        """This view with only the rows of the documents in ``keep_docs`` searchable (a metadata filter)."""
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

    def lexical_scores(self, query: str) -> list[np.ndarray]:
        """BM25 score of every row of every segment (deleted or filtered-out rows -inf), with the statistics of
        the generation's live rows (a filter narrows what is returned, not how it scores)."""
        terms = query_terms(query)
        stats = collection_stats([(v.seg.lexical, v.stats_mask) for v in self.views], terms)
        return [bm25_score(v.seg.lexical, v.mask, terms, stats) for v in self.views]

    def filtered(self, spec: dict) -> "LoadedGeneration":
        """The same generation with only the rows whose document matches ``spec`` searchable (pipeline.filters)."""
        from ragindex.filters import document_mask

        views = []
        for v in self.views:
            lists = getattr(v.seg, "_doc_lists", None)
            if lists is None:
                lists = v.seg._doc_lists = (v.seg.docs.column("doc_id").to_pylist(), v.seg.docs.column("metadata").to_pylist())
            views.append(v.narrowed(document_mask(spec, *lists)))
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
        """Dense and BM25 candidates fused (pipeline.hybrid); every candidate gets both scores exactly."""
        from ragindex.hybrid import fuse

        depth = max(params.depth, k)
        dense = [((c.seg, c.row), c.score) for c in self.search(qvec.reshape(1, -1), depth)[0]]
        per_view = self.lexical_scores(query)
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
            deleted = read_deletions(paths, ref.deletions, ref.deletions_sha256 or "") if ref.deletions else None
        except SegmentError as exc:
            raise GenerationError(f"generation {manifest.generation} of tenant {paths.name}: {exc}; "
                                  f"run `ragindex verify --tenant {paths.name} --repair` or `ragindex rollback --tenant {paths.name}`") from None
        mask = live_row_mask(seg.docs, deleted, seg.index.ntotal) if deleted is not None and len(deleted) else None
        views.append(_View(seg, mask))
    return LoadedGeneration(manifest, views)


def load_generation(paths: TenantPaths, gen_id: str, cache: SegmentCache | None = None) -> LoadedGeneration:
    return open_generation(paths, read_manifest(paths, gen_id), cache)
