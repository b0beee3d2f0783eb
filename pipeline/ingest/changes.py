"""Stage 1, documents: what changed in a tenant's source since its live generation.

Folder sources are walked with each file's stat. A file whose (relative path,
size, mtime_ns) equals what the live generation recorded is not read at all; a
file whose stat moved is read and hashed, and counts as unchanged if its content
hash did not move. A .jsonl or .parquet source whose own stat is unchanged is not
read at all; otherwise its records are hashed as they stream, and only new or
changed records are kept in memory. ``--rescan`` reads and hashes everything.

The result is a :class:`ChangeSet`: the documents to write into a new segment
(new, changed, or carried into a rebuild), with their text or a reference to
identical chunks the tenant already holds, and the documents to delete. It
refers to the live generation by id, so a later stage can tell whether another
writer promoted something in between. Nothing here writes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

from tqdm import tqdm

from ragindex.errors import ChangeError  # noqa: F401  (raised here; defined with the rest)
from ragindex.fsutil import sha256_file, sha256_text
from ragindex.ingest.sources import (
    FileEntry,
    RawDocument,
    Skipped,
    iter_jsonl,
    iter_parquet,
    read_text_file,
    source_kind,
    walk_folder,
)
from ragindex.store.manifests import EMPTY_DIGEST, LiveDoc, LiveState, SourceState, digest_update

# A file modified this close to the moment it was read may change again within the
# same timestamp tick, unnoticed; its stat is not trusted next time (git's "racily
# clean" entries). File systems with sub-second timestamps tick at the kernel's
# coarse clock (a few ms); those with whole seconds (FAT keeps 2 s) need 2 s.
RACY_NS = 2_000_000_000
RACY_NS_FINE = 20_000_000


def racy(mtime_ns: int, scan_start_ns: int) -> bool:
    window = RACY_NS if mtime_ns % 1_000_000_000 == 0 else RACY_NS_FINE
    return mtime_ns > scan_start_ns - window


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


def rebuild_reason(live: LiveState, cfg: RunConfig, rebuild: bool) -> str | None:
    m = live.manifest
    if rebuild:
        return "full rebuild requested (--rebuild)"
    if m is None:
        return None
    if m.chunker_fp != cfg.chunker_fp:
        what = f"{m.chunker} -> {cfg.chunker}" if m.chunker != cfg.chunker else f"{cfg.chunker} changed (fingerprint)"
        return f"chunker schema {what}: every document is chunked again"
    if m.embedder_fp != cfg.embedder_fp:
        return f"embedding model {m.embedder} -> {cfg.embedder}: every chunk needs a vector from the new model"
    return None


class _Detector:
    def __init__(self, cfg: RunConfig, live: LiveState, rescan: bool, rebuild: bool) -> None:
        self.cfg, self.live = cfg, live
        m = live.manifest
        self.reason = rebuild_reason(live, cfg, rebuild)
        # Chunks of another live document with the same content can be copied instead
        # of chunking again, but only under the same schema, and not when asked to rebuild.
        self.reusable = m is not None and m.chunker_fp == cfg.chunker_fp and not rebuild
        # Text is needed for every document whose chunks cannot be copied.
        moved = m is not None and m.source is not None and m.source.path != cfg.source
        self.read_all = rescan or moved or (m is not None and not self.reusable)
        self.carry = self.reason is not None and m is not None
        self._by_hash: dict[str, LiveDoc] | None = None
        self.seen: set[str] = set()
        self.cs = ChangeSet(cfg, live.generation, m.documents if m else 0, m.chunks if m else 0,
                            m.chunker_fp if m else None, self.reason,
                            SourceState(path=cfg.source, kind="folder"), docs_digest=m.docs_digest if m else EMPTY_DIGEST)
        self.added: list[tuple[str, str, str]] = []
        self.removed: list[tuple[str, str, str]] = []
        self.scan_start = time.time_ns()

    def by_hash(self) -> dict[str, LiveDoc]:
        if self._by_hash is None:
            self._by_hash = self.live.rows_by_hash()
        return self._by_hash

    def _ref(self, d: LiveDoc) -> DocRef:
        return DocRef(self.live.segment_id(d.seg), d.ordinal, d.first_row, d.n_rows)

    def unchanged(self, doc_id: str, old: LiveDoc, unreadable: bool = False) -> None:
        """A live document whose content is as recorded, or that could not be read (kept as recorded)."""
        self.seen.add(doc_id)
        if unreadable:
            self.cs.docs_kept_unreadable += 1
        if not self.carry:
            self.cs.docs_unchanged += 0 if unreadable else 1
            return
        if not self.reusable:
            raise ChangeError(f"{doc_id}: could not be read, and {self.reason.split(':')[0]} needs every document's text; "
                              "fix the permissions and run again")
        self.cs.upserts.append(DocChange(doc_id, "kept", old.doc_hash, old.metadata, old.size, old.mtime_ns,
                                         reuse=self._ref(old), old=self._ref(old)))

    def document(self, doc: RawDocument, size: int = -1, mtime_ns: int = -1) -> None:
        """A document read from the source: unchanged, changed or new."""
        self.seen.add(doc.doc_id)
        h, meta = sha256_text(doc.text), canonical_metadata(doc.metadata)
        old = self.live.docs.get(doc.doc_id)
        if mtime_ns >= 0 and racy(mtime_ns, self.scan_start):
            mtime_ns = -1
        if old is not None and old.doc_hash == h and old.metadata == meta and not self.carry:
            self.cs.docs_unchanged += 1
            if mtime_ns >= 0 and (old.size, old.mtime_ns) != (size, mtime_ns) and self.reusable:
                # Read because its stat moved (a touch, a checkout, a racy stat), but unchanged:
                # re-home its chunks with the new stat, or every later run would read it again.
                self.cs.docs_restated += 1
                self.cs.upserts.append(DocChange(doc.doc_id, "kept", h, meta, size, mtime_ns, reuse=self._ref(old),
                                                 old=self._ref(old)))
            return
        same = self.by_hash().get(h) if self.reusable else None
        kind = "new" if old is None else ("kept" if old.doc_hash == h and old.metadata == meta else "changed")
        change = DocChange(doc.doc_id, kind, h, meta, size, mtime_ns, text=None if same is not None else doc.text,
                           reuse=self._ref(same) if same is not None else None,
                           old=self._ref(old) if old is not None else None, title=doc.title)
        self.cs.upserts.append(change)
        if kind != "kept":
            self.added.append((doc.doc_id, h, meta))
            if old is not None:
                self.removed.append((doc.doc_id, old.doc_hash, old.metadata))

    def finish(self, unreadable: list[str]) -> ChangeSet:
        cs = self.cs
        for doc_id, old in self.live.docs.items():
            if doc_id in self.seen:
                continue
            if any(doc_id.startswith(prefix) for prefix in unreadable):
                self.unchanged(doc_id, old, unreadable=True)  # its folder (or the whole source) could not be read
                continue
            cs.deletes.append(Deleted(doc_id, self._ref(old), old.doc_hash, old.metadata))
            self.removed.append((doc_id, old.doc_hash, old.metadata))
        cs.docs_digest = digest_update(cs.docs_digest, self.added, self.removed)
        cs.seconds = (time.time_ns() - self.scan_start) / 1e9
        return cs


def detect_changes(cfg: RunConfig, live: LiveState, *, rescan: bool = False, rebuild: bool = False,
                   progress: bool = False) -> ChangeSet:
    """Compare the source named by ``cfg`` with ``live``; read only what may have changed."""
    src = Path(cfg.source)
    kind = source_kind(src)
    det = _Detector(cfg, live, rescan, rebuild)
    cs = det.cs
    unreadable: list[str] = []
    bar = tqdm(desc=f"scan {cfg.tenant}", unit="file", disable=not progress, leave=False)
    try:
        if kind in ("folder", "file"):
            entries = walk_folder(src, cs.skipped, unreadable) if kind == "folder" else _single_file(src)
            for entry in entries:
                cs.files_seen += 1
                bar.update(1)
                old = live.docs.get(entry.rel)
                if (old is not None and not det.read_all and old.size == entry.size and old.mtime_ns == entry.mtime_ns
                        and old.mtime_ns >= 0):
                    det.unchanged(entry.rel, old)
                    continue
                cs.files_read += 1
                failed: list[str] = []
                doc = read_text_file(entry.path, entry.rel, cs.skipped, set(), unreadable=failed)
                if doc is not None:
                    det.document(doc, entry.size, entry.mtime_ns)
                elif failed and old is not None:
                    det.unchanged(entry.rel, old, unreadable=True)  # an I/O error, not a content change
            cs.source = SourceState(path=cfg.source, kind=kind)
        else:
            # One file of records. Its stat unchanged: nothing to read. Its stat changed: hash its bytes
            # first; byte-identical to what was read last time (a rewrite, a copy, a touch), nothing to parse.
            st = src.stat()
            m = live.manifest
            prev = m.source if m is not None and m.source is not None and m.source.path == cfg.source and m.source.kind == kind else None
            same_stat = prev is not None and prev.size == st.st_size and prev.mtime_ns == st.st_mtime_ns and prev.mtime_ns >= 0
            digest = prev.sha256 if same_stat else _file_digest(src)
            same_bytes = prev is not None and digest is not None and prev.sha256 == digest
            mtime = -1 if racy(st.st_mtime_ns, det.scan_start) else st.st_mtime_ns
            cs.source = SourceState(path=cfg.source, kind=kind, size=st.st_size, mtime_ns=mtime, sha256=digest)
            cs.files_seen = 1
            cs.files_read = 0 if same_stat else 1  # hashing reads the bytes too
            if (same_stat or same_bytes) and not det.read_all:
                for doc_id, old in live.docs.items():
                    det.unchanged(doc_id, old)
            else:
                cs.files_read = 1
                records = iter_jsonl(src, cs.skipped, unreadable) if kind == "jsonl" else iter_parquet(src, cs.skipped, unreadable)
                for doc in records:
                    bar.update(1)
                    det.document(doc)
                after = _stat_or_none(src)
                if after is None or (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                    cs.source = SourceState(path=cfg.source, kind=kind, size=-1, mtime_ns=-1)  # written while read: trust nothing
    finally:
        bar.close()
    return det.finish(unreadable)


def _file_digest(path: Path) -> str | None:
    """sha256 of a file's bytes, or None if it cannot be read (the read that follows reports why)."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def _stat_or_none(path: Path):
    try:
        return path.stat()
    except OSError:
        return None


def _single_file(path: Path) -> Iterable:

    st = path.stat()
    return [FileEntry(path.name, path, st.st_size, st.st_mtime_ns)]
