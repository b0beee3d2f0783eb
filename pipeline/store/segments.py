"""Immutable segments and their deletion sets (DESIGN: per-tenant physical partitioning).

A segment is written once, completely, and shared by every generation that
names it (Lucene's segments, LanceDB's fragments)::

    segments/<seg_id>/
      index.faiss    one vector per row, in row order
      rows.parquet   SEGMENT_ROWS: the chunks, grouped by document
      docs.parquet   SEGMENT_DOCS: the documents, with their first row and row count
      lexical.npz    the rows' term frequencies and lengths, for BM25 (pipeline.search.lexical)
      segment.json   counts, fingerprints, index type, sha256 of the four files

It is built in ``segments/.tmp-<seg_id>/``, fsynced and renamed into place, so a
crash leaves either nothing or a complete segment that no generation names yet
(gc removes both). A generation removes documents from a segment with a
*deletion set*: the positions in ``docs.parquet`` of the documents no longer
live, stored in ``deletions/<seg_id>.<sha16>.del`` (sorted little-endian uint32).
Deletion files are content-addressed, so generations with the same deletions of
a segment share one file.

Repair is the one writer that touches a published segment: it restores a damaged
file to the content the segment already had (vectors from the embedding cache,
documents from the rows), never changing which rows the segment holds.

A segment is bound to its tenant: ``segment.json`` names the tenant (a segment of
another tenant is refused as :class:`ForeignSegment` wherever it is read), and each
generation records the segment's :func:`binding`, the sha256 of its identity, which
``store.manifests.check_ref`` compares (with the row and document counts) before the
segment is used. A segment written before the binding has no tenant in
``segment.json``: it is accepted when a manifest names it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragindex._faults import fault_point
from ragindex.chunkers.context import lexical_text
from ragindex.errors import ForeignSegment, SegmentError  # noqa: F401  (raised here; defined with the rest)
from ragindex.fsutil import atomic_write_bytes, fsync_dir, write_durable
from ragindex.schemas.tables import SEGMENT_DOCS, SEGMENT_ROWS, conform
from ragindex.store.lexical import LexicalIndex
from ragindex.store.paths import TenantPaths

SEGMENT_RE = re.compile(r"seg-\d{8}T\d{12}Z-[0-9a-f]{8}")
DELETIONS_RE = re.compile(r"(?P<seg>seg-\d{8}T\d{12}Z-[0-9a-f]{8})\.(?P<digest>[0-9a-f]{16})\.del")
FILES = ("index.faiss", "rows.parquet", "docs.parquet", "lexical.npz")
ROW_GROUP = 4096  # rows per Parquet row group: reading one document's rows reads one or two groups

# Exact inner product below this many vectors per segment, an HNSW graph above
# (benchmarks/index_bench.py: a flat scan of 50k 384-d vectors costs about what
# an HNSW search of 180k does, and HNSW recall@10 stays above 0.95).
APPROX_THRESHOLD = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


class SegmentInfo(BaseModel):
    """``segment.json``: what a segment holds and the checksums of its files."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format: int = Field(1, ge=1, le=1)
    segment: str = Field(pattern=SEGMENT_RE.pattern)
    tenant: str | None = None  # None: written before segments named their tenant (accepted when a manifest names it)
    created_at: str
    chunker: str
    chunker_fp: str
    embedder: str
    embedder_fp: str
    dim: int = Field(ge=1)
    index_type: str
    rows: int = Field(ge=0)
    docs: int = Field(ge=0)
    files: dict[str, str]
    bytes: int = Field(ge=0)
    repaired_at: str | None = None


# What a segment *is*, as opposed to how its files are encoded today: repair may rewrite a file
# (new checksums in ``files``, ``repaired_at``) but never changes any of these.
IDENTITY = ("segment", "tenant", "created_at", "chunker", "chunker_fp", "embedder", "embedder_fp", "dim", "rows", "docs")


def binding(info: SegmentInfo) -> str:
    """sha256 of the segment's identity (IDENTITY): what a generation records to know the segment it names."""
    body = {k: getattr(info, k) for k in IDENTITY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def new_segment_id(seed: str) -> str:
    """Sortable and content-derived: ``seg-<UTC time>-<hash of the content>``."""
    return f"seg-{_stamp()}-{hashlib.sha256(seed.encode()).hexdigest()[:8]}"


def choose_index(n: int, dim: int) -> tuple[faiss.Index, str]:
    """Exact inner product for small segments, HNSW above APPROX_THRESHOLD vectors."""
    if n < APPROX_THRESHOLD:
        return faiss.IndexFlatIP(dim), "flat-ip"
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index, f"hnsw-m{HNSW_M}"


def build_index(vectors: np.ndarray, dim: int) -> tuple[faiss.Index, str]:
    index, kind = choose_index(len(vectors), dim)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index, kind


def index_bytes(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def _parquet_bytes(table: pa.Table, schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    # Page checksums let a partial read (one document's rows) detect a damaged page
    # without hashing the whole file.
    pq.write_table(table.cast(schema), sink, compression="zstd", row_group_size=ROW_GROUP, write_page_checksum=True)
    return sink.getvalue().to_pybytes()


def segment_dir(paths: TenantPaths, seg_id: str) -> Path:
    if not SEGMENT_RE.fullmatch(seg_id):
        raise SegmentError(f"invalid segment id {seg_id!r}")
    return paths.segments / seg_id


def write_segment(paths: TenantPaths, docs: pa.Table, rows: pa.Table, vectors: np.ndarray | None, info: dict,
                  index: faiss.Index | None = None, index_type: str | None = None,
                  lexical: LexicalIndex | None = None) -> SegmentInfo:
    """Write a complete segment and return its info; no generation names it yet.

    ``docs`` follows SEGMENT_DOCS and ``rows`` SEGMENT_ROWS (one row per vector, in
    order; None when ``index`` is given already built); ``info`` carries chunker,
    chunker_fp, embedder, embedder_fp and dim.
    Each file is hashed from memory as it is written, never read back.
    """
    dim = int(info["dim"])
    if index is None:
        index, index_type = build_index(vectors, dim)
    if rows.num_rows != index.ntotal:
        raise ValueError(f"{rows.num_rows} rows but {index.ntotal} vectors")
    seed = info["embedder_fp"] + "".join(rows.column("chunk_id").to_pylist()[:1000]) + str(rows.num_rows) + str(docs.num_rows)
    seg_id = new_segment_id(seed + _stamp())
    paths.segments.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = paths.segments / f".tmp-{seg_id}"
    tmp.mkdir(mode=0o700)
    try:
        if lexical is None:
            lexical = LexicalIndex.build(lexical_texts(rows))
        blobs = {"index.faiss": index_bytes(index), "rows.parquet": _parquet_bytes(rows, SEGMENT_ROWS),
                 "docs.parquet": _parquet_bytes(docs, SEGMENT_DOCS), "lexical.npz": lexical.to_bytes()}
        files = {}
        for name, data in blobs.items():
            files[name] = write_durable(tmp / name, data)
            fault_point("segment-file")
        seg = SegmentInfo(segment=seg_id, tenant=paths.name, created_at=dt.datetime.now(dt.timezone.utc).isoformat(),
                          chunker=info["chunker"], chunker_fp=info["chunker_fp"], embedder=info["embedder"],
                          embedder_fp=info["embedder_fp"], dim=dim, index_type=index_type or "flat-ip",
                          rows=rows.num_rows, docs=docs.num_rows, files=files, bytes=sum(len(b) for b in blobs.values()))
        write_durable(tmp / "segment.json", seg.model_dump_json(indent=2).encode())
        fsync_dir(tmp)
        os.rename(tmp, paths.segments / seg_id)
        fsync_dir(paths.segments)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fault_point("segment-written")
    return seg


def read_info(paths: TenantPaths, seg_id: str) -> SegmentInfo:
    f = segment_dir(paths, seg_id) / "segment.json"
    try:
        info = SegmentInfo.model_validate_json(f.read_bytes())
    except FileNotFoundError:
        raise SegmentError(f"segment {seg_id} is missing ({f})") from None
    except (IsADirectoryError, NotADirectoryError) as exc:
        raise SegmentError(f"segment {seg_id} is unreadable: {exc.strerror} ({exc.filename})") from None
    except (ValidationError, ValueError) as exc:
        raise SegmentError(f"{f}: corrupt segment description ({first_error(exc)})") from None
    if info.segment != seg_id or set(info.files) != set(FILES):
        raise SegmentError(f"{f}: describes {info.segment} with files {sorted(info.files)}, not {seg_id}")
    if info.tenant is not None and info.tenant != paths.name:  # never name the other tenant: messages reach API callers
        raise ForeignSegment(f"segment {seg_id} of tenant {paths.name} was written for another tenant (copied in?); "
                             "it is refused: never served, merged or used for a repair")
    return info


def first_error(exc: Exception) -> str:
    """The first problem of a validation error (or the first line of another), for one-line messages."""
    if isinstance(exc, ValidationError):
        e = exc.errors()[0]
        return f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}"
    return str(exc).splitlines()[0]


def read_verified(path: Path, digest: str) -> bytes:
    """The file's bytes, after checking them against ``digest``; SegmentError if missing or different."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SegmentError(f"{path} is missing") from None
    except (IsADirectoryError, NotADirectoryError) as exc:
        raise SegmentError(f"{path} is unreadable: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise SegmentError(f"{path} does not match its checksum (corrupt or truncated)")
    return data


def checksum_problems(paths: TenantPaths, seg_id: str) -> list[str]:
    """Problems of a segment's description and of its files against their checksums (hashed as a stream,
    nothing parsed); empty when intact. What a generation that shares the segment needs to trust it."""
    try:
        info = read_info(paths, seg_id)
        for name in FILES:
            path = segment_dir(paths, seg_id) / name
            try:
                with open(path, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise SegmentError(f"{path} is missing or not a file") from None
            if digest != info.files[name]:
                raise SegmentError(f"{path} does not match its checksum (corrupt or truncated)")
    except SegmentError as exc:
        return [str(exc)]
    return []


def check_segment(paths: TenantPaths, seg_id: str) -> list[str]:
    """Problems of one segment (empty when intact): description, checksums, counts."""
    try:
        info = read_info(paths, seg_id)
        blobs = {name: read_verified(segment_dir(paths, seg_id) / name, info.files[name]) for name in FILES}
    except SegmentError as exc:
        return [str(exc)]
    problems = []
    index = faiss.deserialize_index(np.frombuffer(blobs["index.faiss"], dtype=np.uint8))
    rows = pq.read_table(pa.BufferReader(blobs["rows.parquet"]), columns=["text_hash"])
    docs = pq.read_table(pa.BufferReader(blobs["docs.parquet"]), columns=["n_rows"])
    n_doc_rows = int(pa.compute.sum(docs.column("n_rows")).as_py() or 0)
    try:
        lex_rows = LexicalIndex.from_bytes(blobs["lexical.npz"]).rows
    except (ValueError, KeyError, OSError) as exc:
        return [f"segment {seg_id}: lexical.npz unreadable ({exc})"]
    if not (index.ntotal == rows.num_rows == info.rows == n_doc_rows == lex_rows) or docs.num_rows != info.docs:
        problems.append(f"segment {seg_id}: counts differ: index {index.ntotal}, rows {rows.num_rows}, lexical "
                        f"{lex_rows}, documents' rows {n_doc_rows}, described {info.rows} rows / {info.docs} documents")
    return problems


@dataclass
class Segment:
    """A loaded segment: its FAISS index, rows, documents and BM25 term frequencies."""

    info: SegmentInfo
    index: faiss.Index
    rows: pa.Table
    docs: pa.Table
    lexical: LexicalIndex

    @property
    def id(self) -> str:
        return self.info.segment


def load_segment(paths: TenantPaths, seg_id: str) -> Segment:
    """Load a segment after checking every file against its checksum (one read per file)."""
    info = read_info(paths, seg_id)
    d = segment_dir(paths, seg_id)
    blobs = {name: read_verified(d / name, info.files[name]) for name in FILES}
    index = faiss.deserialize_index(np.frombuffer(blobs["index.faiss"], dtype=np.uint8))
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    rows = conform(pq.read_table(pa.BufferReader(blobs["rows.parquet"])), SEGMENT_ROWS)
    docs = conform(pq.read_table(pa.BufferReader(blobs["docs.parquet"])), SEGMENT_DOCS)
    lexical = LexicalIndex.from_bytes(blobs["lexical.npz"])
    if not (index.ntotal == rows.num_rows == info.rows == lexical.rows) or docs.num_rows != info.docs:
        raise SegmentError(f"segment {seg_id}: index has {index.ntotal} vectors, rows.parquet {rows.num_rows}, "
                           f"lexical.npz {lexical.rows}, segment.json {info.rows}")
    return Segment(info, index, rows, docs, lexical)


def read_docs(paths: TenantPaths, seg_id: str, info: SegmentInfo | None = None) -> pa.Table:
    """A segment's documents table (verified), without loading its index or rows."""
    info = info or read_info(paths, seg_id)
    data = read_verified(segment_dir(paths, seg_id) / "docs.parquet", info.files["docs.parquet"])
    return conform(pq.read_table(pa.BufferReader(data)), SEGMENT_DOCS)


def read_rows(paths: TenantPaths, seg_id: str, ranges: list[tuple[int, int]], columns: list[str] | None = None) -> pa.Table:
    """Rows ``[first, first + n)`` for each range, in the order given, reading only their row groups.

    Parquet page checksums are verified on read, so a damaged page fails here
    (SegmentError) rather than returning wrong chunks.
    """
    if not ranges:
        return SEGMENT_ROWS.empty_table() if columns is None else SEGMENT_ROWS.empty_table().select(columns)
    path = segment_dir(paths, seg_id) / "rows.parquet"
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
        groups = sorted({g for first, n in ranges if n > 0
                         for g in range(int(np.searchsorted(starts, first, "right") - 1),
                                        int(np.searchsorted(starts, first + n - 1, "right")))})
        have = set(pf.schema_arrow.names)
        table = pf.read_row_groups(groups, columns=None if columns is None else [c for c in columns if c in have])
    except (OSError, pa.ArrowException) as exc:
        raise SegmentError(f"{path}: unreadable ({exc}); run `ragindex verify --tenant {paths.name} --repair`") from None
    offset = {g: int(sum(pf.metadata.row_group(x).num_rows for x in groups[:i])) - int(starts[g]) for i, g in enumerate(groups)}
    take = []
    for first, n in ranges:
        for r in range(first, first + n):
            g = int(np.searchsorted(starts, r, "right") - 1)
            take.append(r + offset[g])
    wanted = SEGMENT_ROWS if columns is None else pa.schema([SEGMENT_ROWS.field(c) for c in columns])
    table = conform(table.take(pa.array(take, pa.int64())), wanted)  # a segment older than a column: nulls
    return table if columns is None else table.select(columns)


def lexical_texts(rows: pa.Table) -> list[str]:
    """What BM25 indexes for each row: the heading path (context) and the chunk's text."""
    texts = rows.column("text").to_pylist()
    heads = rows.column("heading_path").to_pylist()
    return [lexical_text(t, h) for h, t in zip(heads, texts)]


def vectors_of(index: faiss.Index) -> np.ndarray:
    """Every vector a segment's index stores, in row order (flat and HNSW keep them verbatim)."""
    if index.ntotal == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    return index.reconstruct_n(0, index.ntotal)


# -- deletion sets ---------------------------------------------------------


def write_deletions(paths: TenantPaths, seg_id: str, ordinals) -> tuple[str, str]:
    """Write (or reuse) the deletion file of ``seg_id`` holding ``ordinals``; return (name, sha256)."""
    data = np.unique(np.asarray(ordinals, dtype=np.int64)).astype("<u4").tobytes()
    digest = hashlib.sha256(data).hexdigest()
    name = f"{seg_id}.{digest[:16]}.del"
    paths.deletions.mkdir(mode=0o700, parents=True, exist_ok=True)
    f = paths.deletions / name
    if not (f.exists() and hashlib.sha256(f.read_bytes()).hexdigest() == digest):
        atomic_write_bytes(f, data)
    fault_point("deletions-written")
    return name, digest


def read_deletions(paths: TenantPaths, name: str, digest: str) -> np.ndarray:
    """The document positions a deletion file names (verified against ``digest``)."""
    if not DELETIONS_RE.fullmatch(name):
        raise SegmentError(f"invalid deletion file name {name!r}")
    return np.frombuffer(read_verified(paths.deletions / name, digest), dtype="<u4").astype(np.int64)


def live_row_mask(docs: pa.Table, deleted_docs: np.ndarray, n_rows: int) -> np.ndarray:
    """Boolean mask over a segment's rows: False for every row of a deleted document."""
    mask = np.ones(n_rows, dtype=bool)
    if len(deleted_docs):
        firsts = docs.column("first_row").to_numpy()[deleted_docs]
        counts = docs.column("n_rows").to_numpy()[deleted_docs]
        for first, n in zip(firsts, counts):
            mask[first : first + n] = False
    return mask
