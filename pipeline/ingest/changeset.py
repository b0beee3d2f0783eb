"""What a change set is: the difference between a tenant's source and its live generation.

:mod:`ragindex.ingest.changes` finds it; the later stages (chunk, plan, embed,
commit) consume it. A :class:`ChangeSet` names the live generation it was computed
against, the documents that go into the run's new segment (:class:`DocChange`:
new, changed, or carried into a rebuild, each with its text or a reference to
identical chunks the tenant already holds) and the documents to delete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import NamedTuple

from ragindex.ingest.convert import Layout
from ragindex.ingest.documents import Skipped
from ragindex.store.manifests import EMPTY_DIGEST, SourceState


@dataclass(frozen=True)
class RunConfig:
    """What a run indexes with: the tenant, its source, its schema and its embedder (by fingerprint)."""

    tenant: str
    source: str  # absolute path
    chunker: str  # NAME@VERSION
    chunker_fp: str
    embedder: str
    embedder_fp: str
    tokenizer: str
    embedder_epoch: int = 0  # a hosted model's key space  # the schema's tokenizer (its counts are reused where they are the ones needed)


class DocRef(NamedTuple):
    """Where a live document's rows are: its segment, its position there, and its row range."""

    segment: str
    ordinal: int
    first_row: int
    n_rows: int


@dataclass
class DocChange:
    """One document that goes into the run's new segment."""

    doc_id: str
    kind: str  # new | changed | kept (unchanged, carried into a rebuild)
    doc_hash: str
    metadata: str  # canonical JSON
    size: int = -1
    mtime_ns: int = -1
    text: str | None = None  # None when its chunks are copied from ``reuse``
    reuse: DocRef | None = None  # identical chunks the tenant already holds (copied, not chunked)
    old: DocRef | None = None  # the version this one replaces
    title: str | None = None  # the source's title (already the first line of ``text``), for context headers
    layout: Layout | None = None  # a converted file's pages and headings (offsets into ``text``)
    source_sha256: str | None = None  # a converted file: its bytes, and the converter that made ``text``
    convert_fp: str | None = None


@dataclass
class Conversions:
    """What converting PDF, DOCX, PPTX and HTML files cost this run, and why files were converted."""

    converted: int = 0  # files converted (in the worker pool)
    pages: int = 0  # pages (PDF) and slides (PPTX) of those files
    seconds: float = 0.0  # wall time of the pool
    cached: int = 0  # files whose conversion came from the tenant's conversion cache
    failed: int = 0  # files the converters rejected or that crashed or timed out (see skipped)
    reconverted: int = 0  # files read again only because their converter changed
    reconverted_changed: int = 0  # of those, files whose text or layout moved (re-chunked)
    by_converter: dict[str, int] = field(default_factory=dict)  # converter label -> files converted

    def to_dict(self) -> dict:
        return {"files_converted": self.converted, "pages_converted": self.pages, "convert_seconds": round(self.seconds, 3),
                "files_from_conversion_cache": self.cached, "files_failed": self.failed,
                "files_reconverted": self.reconverted, "files_reconverted_changed": self.reconverted_changed,
                "converters": dict(self.by_converter)}


@dataclass(frozen=True)
class Deleted:
    doc_id: str
    ref: DocRef
    doc_hash: str
    metadata: str


@dataclass
class ChangeSet:
    """The difference between a source and the live generation, and how it was found."""

    config: RunConfig
    base: str | None  # the live generation this was computed against
    base_documents: int
    base_chunks: int
    base_chunker_fp: str | None
    rebuild: str | None  # why every document goes into a new segment, if so
    source: SourceState
    upserts: list[DocChange] = field(default_factory=list)
    deletes: list[Deleted] = field(default_factory=list)
    docs_unchanged: int = 0
    docs_restated: int = 0  # unchanged documents re-homed with a new stat (read once, never again)
    docs_kept_unreadable: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    files_seen: int = 0
    files_read: int = 0
    docs_digest: str = EMPTY_DIGEST  # of the live documents after this change
    allow_deletions: bool = False  # the run said deleting most documents is intended (see pipeline.indexing.checks)
    seconds: float = 0.0
    conversions: Conversions = field(default_factory=Conversions)

    def count(self, kind: str) -> int:
        n = sum(1 for u in self.upserts if u.kind == kind)
        return n - self.docs_restated if kind == "kept" else n

    @property
    def documents_after(self) -> int:
        """Live documents once this change set is applied."""
        if self.rebuild:
            return len(self.upserts)
        return self.base_documents - sum(1 for u in self.upserts if u.old is not None) - len(self.deletes) + len(self.upserts)

    @property
    def rows_replaced(self) -> int:
        """Live rows of the base that this change set removes or replaces."""
        return sum(u.old.n_rows for u in self.upserts if u.old is not None) + sum(d.ref.n_rows for d in self.deletes)

    @property
    def is_noop(self) -> bool:
        """Nothing to write: the live generation already holds exactly this source under this config."""
        return self.base is not None and not self.upserts and not self.deletes

    def counts(self) -> dict:
        return {"docs_new": self.count("new"), "docs_changed": self.count("changed"), "docs_deleted": len(self.deletes),
                "docs_unchanged": self.docs_unchanged + self.count("kept"), "docs_skipped": len(self.skipped),
                "docs_restated": self.docs_restated, "docs_kept_unreadable": self.docs_kept_unreadable,
                "files_seen": self.files_seen, "files_read": self.files_read}


def canonical_metadata(meta: dict) -> str:
    return json.dumps(meta or {}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
