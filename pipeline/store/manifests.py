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
trusted. Each :class:`SegmentRef` binds its segment to the tenant (its identity's
sha256 and its row and document counts, checked by :func:`check_ref` before a
segment is used), so a segment replaced by another tenant's copy is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import stat
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragindex._faults import fault_point
from ragindex.errors import GenerationError  # noqa: F401  (raised here; defined with the rest)
from ragindex.fsutil import atomic_write_text
from ragindex.store.locking import require_held
from ragindex.store.paths import TenantPaths
from ragindex.store.segments import (
    SEGMENT_RE,
    ForeignSegment,
    SegmentError,
    SegmentInfo,
    binding,
    first_error,
    read_deletions,
    read_docs,
    read_info,
)

GEN_ID_RE = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{8}")
FORMAT = 2


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
    # segments.binding() of the segment this generation was made with; None in manifests written before it
    # (then the tenant in segment.json and the counts bind it). Left out of the digest when None.
    binding: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @classmethod
    def of(cls, info: SegmentInfo) -> "SegmentRef":
        """The reference to a freshly written segment (nothing deleted), bound to it."""
        return cls(id=info.segment, rows=info.rows, docs=info.docs, binding=binding(info))

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
        for ref in body["segments"]:  # a manifest sealed before SegmentRef.binding existed keeps its digest
            if ref["binding"] is None:
                del ref["binding"]
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
    except (IsADirectoryError, NotADirectoryError) as exc:
        raise GenerationError(f"{f}: unreadable ({exc.strerror}); run `ragindex verify --tenant {paths.name} --repair`") from None
    try:
        m = Manifest.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        raise GenerationError(f"{f}: corrupt manifest ({first_error(exc)}); run `ragindex verify --tenant {paths.name} --repair`") from None
    if m.sha256 != m.digest() or m.generation != gen_id or m.tenant != paths.name:
        raise GenerationError(f"{f}: corrupt manifest (checksum, id or tenant does not match); "
                              f"run `ragindex verify --tenant {paths.name} --repair`")
    return m


def promote(paths: TenantPaths, gen_id: str) -> None:
    """Point CURRENT at ``gen_id`` atomically (its manifest must be complete and valid).

    This rename is the one atomic step that changes what the tenant *is*: its live
    content and its pin (the schema and search mode recorded in the manifest).
    """
    require_held(paths.lock, f"promoting generation {gen_id} of tenant {paths.name}")
    read_manifest(paths, gen_id)
    atomic_write_text(paths.current, gen_id + "\n")
    fault_point("promoted")


def current_id(paths: TenantPaths) -> str | None:
    """The live generation id, None when the tenant has none; GenerationError if CURRENT is not a valid id
    or not a file (a directory, a pipe: damage, for ``verify --repair``, not a permissions problem)."""
    try:
        if not stat.S_ISREG(paths.current.stat().st_mode):
            raise GenerationError(f"{paths.current} is not a file; run `ragindex verify --tenant {paths.name} --repair`")
        raw = paths.current.read_bytes()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise GenerationError(f"{paths.root} is not a tenant directory") from None
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


def check_ref(paths: TenantPaths, ref: SegmentRef, generation: str, info: SegmentInfo | None = None) -> SegmentInfo:
    """The info of the segment ``ref`` names, after checking that it is the one ``generation`` was made with:
    this tenant's (read_info), with the recorded binding and counts. ForeignSegment if not (never used, never
    repaired from). A reference written before bindings is checked by the tenant in segment.json and the counts."""
    info = info or read_info(paths, ref.id)
    what = f"segment {ref.id} is not the one generation {generation} recorded"
    if (info.rows, info.docs) != (ref.rows, ref.docs):
        raise ForeignSegment(f"{what}: it holds {info.rows} rows / {info.docs} documents, the generation recorded "
                             f"{ref.rows} / {ref.docs} (replaced, perhaps by a copy from another tenant); it is refused")
    if ref.binding is not None and binding(info) != ref.binding:
        raise ForeignSegment(f"{what}: its identity differs (replaced, perhaps by a copy from another tenant); it is refused")
    return info


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
    source_sha256: str | None = None  # a converted file's bytes (None for text files and records)
    convert_fp: str | None = None  # the converter that made its text


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
            docs = read_docs(paths, ref.id, check_ref(paths, ref, manifest.generation))
            deleted = read_deletions(paths, ref.deletions, ref.deletions_sha256 or "") if ref.deletions else np.zeros(0, np.int64)
        except SegmentError as exc:
            raise GenerationError(f"generation {manifest.generation}: {exc}; run `ragindex verify --tenant {paths.name} --repair`") from None
        state.deleted.append(deleted)
        alive = np.ones(docs.num_rows, dtype=bool)
        alive[deleted] = False
        cols = [docs.column(c).to_pylist() for c in ("doc_id", "doc_hash", "metadata", "first_row", "n_rows", "size", "mtime_ns",
                                                     "source_sha256", "convert_fp")]
        for ordinal, (doc_id, h, meta, first, n, size, mtime, sha, cfp) in enumerate(zip(*cols)):
            if alive[ordinal]:
                state.docs[doc_id] = LiveDoc(i, ordinal, h, meta, first, n, size, mtime, sha, cfp)
    return state
