"""Stage 1, documents: what changed in a tenant's source since its live generation.

Folder sources are walked with each file's stat. A file whose (relative path,
size, mtime_ns) equals what the live generation recorded is not read at all; a
file whose stat moved is read and hashed, and counts as unchanged if its content
hash did not move. A .jsonl or .parquet source whose own stat is unchanged is not
read at all; otherwise its records are hashed as they stream, and only new or
changed records are kept in memory. ``--rescan`` reads and hashes everything.

A PDF, DOCX, PPTX or HTML file whose stat moved is hashed first: bytes and
converter as recorded mean nothing to do; bytes the tenant's conversion cache
holds are not converted again; the rest are converted in a worker pool
(``ingest.convert.pool``). A converter upgrade makes its files be read again even
with an unchanged stat, and only those whose text or layout moved are re-chunked.

The result is a :class:`~ragindex.ingest.changeset.ChangeSet`: the documents to write into a new segment
(new, changed, or carried into a rebuild), with their text or a reference to
identical chunks the tenant already holds, and the documents to delete. It
refers to the live generation by id, so a later stage can tell whether another
writer promoted something in between. Nothing here writes.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

from ragindex.errors import ChangeError, SourceError  # noqa: F401  (raised here; defined with the rest)
from ragindex.fsutil import sha256_file
from ragindex.ingest.changeset import ChangeSet, Deleted, DocChange, DocRef, RunConfig, canonical_metadata
from ragindex.ingest.convert import CONVERTERS, Converted, fingerprint, label
from ragindex.ingest.convert.pool import ConvertPool, Job
from ragindex.ingest.documents import FileEntry, RawDocument, Skipped, document_hash
from ragindex.ingest.sources import (
    converted_document,
    iter_jsonl,
    iter_parquet,
    read_file_bytes,
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
        self.reconvert: set[str] = set()  # files read again only because their converter changed
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
                                         reuse=self._ref(old), old=self._ref(old), source_sha256=old.source_sha256,
                                         convert_fp=old.convert_fp))

    def same_bytes(self, doc_id: str, old: LiveDoc, size: int, mtime_ns: int) -> None:
        """A converted file whose stat moved but whose bytes (and converter) did not: nothing to convert or chunk."""
        self.seen.add(doc_id)
        if mtime_ns >= 0 and racy(mtime_ns, self.scan_start):
            mtime_ns = -1
        if not self.carry:
            self.cs.docs_unchanged += 1
            if mtime_ns < 0 or not self.reusable:
                return
            self.cs.docs_restated += 1  # re-homed with its new stat, or every later run would hash it again
        self.cs.upserts.append(DocChange(doc_id, "kept", old.doc_hash, old.metadata, size, mtime_ns, reuse=self._ref(old),
                                         old=self._ref(old), source_sha256=old.source_sha256, convert_fp=old.convert_fp))

    def document(self, doc: RawDocument, size: int = -1, mtime_ns: int = -1, source_sha256: str | None = None,
                 convert_fp: str | None = None) -> None:
        """A document read from the source (or converted from a file): unchanged, changed or new."""
        self.seen.add(doc.doc_id)
        h, meta = document_hash(doc.text, doc.layout), canonical_metadata(doc.metadata)
        old = self.live.docs.get(doc.doc_id)
        if mtime_ns >= 0 and racy(mtime_ns, self.scan_start):
            mtime_ns = -1
        if old is not None and old.doc_hash == h and old.metadata == meta and not self.carry:
            self.cs.docs_unchanged += 1
            moved = (old.size, old.mtime_ns) != (size, mtime_ns) or (old.source_sha256, old.convert_fp) != (source_sha256, convert_fp)
            if mtime_ns >= 0 and moved and self.reusable:
                # Read because its stat (or its converter) moved, but its content did not: re-home its
                # chunks with the new stat, or every later run would read it again.
                self.cs.docs_restated += 1
                self.cs.upserts.append(DocChange(doc.doc_id, "kept", h, meta, size, mtime_ns, reuse=self._ref(old),
                                                 old=self._ref(old), source_sha256=source_sha256, convert_fp=convert_fp))
            return
        same = self.by_hash().get(h) if self.reusable else None
        kind = "new" if old is None else ("kept" if old.doc_hash == h and old.metadata == meta else "changed")
        # A converted document keeps its text even when its chunks are copied: the run caches its conversion.
        keep_text = same is None or source_sha256 is not None
        change = DocChange(doc.doc_id, kind, h, meta, size, mtime_ns, text=doc.text if keep_text else None,
                           reuse=self._ref(same) if same is not None else None,
                           old=self._ref(old) if old is not None else None, title=doc.title, layout=doc.layout,
                           source_sha256=source_sha256, convert_fp=convert_fp)
        self.cs.upserts.append(change)
        if kind == "changed" and doc.doc_id in self.reconvert:
            self.cs.conversions.reconverted_changed += 1
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
                   progress: bool = False, cached: Callable[[str, str], Converted | None] | None = None,
                   pool: ConvertPool | None = None) -> ChangeSet:
    """Compare the source named by ``cfg`` with ``live``; read only what may have changed.

    ``cached(sha256, convert_fp)`` looks a conversion up in the tenant's cache;
    files it does not hold are converted in ``pool`` (one is started if needed).
    """
    src = Path(cfg.source)
    _still_a_folder(src, cfg, live)
    kind = source_kind(src)
    det = _Detector(cfg, live, rescan, rebuild)
    cs = det.cs
    unreadable: list[str] = []
    bar = tqdm(desc=f"scan {cfg.tenant}", unit="file", disable=not progress, leave=False)
    try:
        if kind in ("folder", "file"):
            entries = walk_folder(src, cs.skipped, unreadable) if kind == "folder" else _single_file(src)
            to_convert: list[tuple[FileEntry, str]] = []
            for entry in entries:
                cs.files_seen += 1
                bar.update(1)
                old = live.docs.get(entry.rel)
                suffix = entry.path.suffix.lower()
                fp = fingerprint(suffix) if suffix in CONVERTERS else None
                same_stat = (old is not None and old.size == entry.size and old.mtime_ns == entry.mtime_ns
                             and old.mtime_ns >= 0)
                if same_stat and not det.read_all and old.convert_fp == fp:
                    det.unchanged(entry.rel, old)
                    continue
                cs.files_read += 1
                failed: list[str] = []
                if fp is None:
                    doc = read_text_file(entry.path, entry.rel, cs.skipped, set(), unreadable=failed)
                    if doc is not None:
                        det.document(doc, entry.size, entry.mtime_ns)
                    elif failed and old is not None:
                        det.unchanged(entry.rel, old, unreadable=True)  # an I/O error, not a content change
                    continue
                if same_stat and old.convert_fp != fp:
                    det.reconvert.add(entry.rel)
                    cs.conversions.reconverted += 1
                data = read_file_bytes(entry.path, entry.rel, cs.skipped, failed)
                if data is None:
                    if failed and old is not None:
                        det.unchanged(entry.rel, old, unreadable=True)
                    continue
                sha = hashlib.sha256(data).hexdigest()
                del data  # read again by the pool only if it must be converted: at most one file per worker in memory
                if old is not None and (old.source_sha256, old.convert_fp) == (sha, fp) and not det.read_all:
                    det.same_bytes(entry.rel, old, entry.size, entry.mtime_ns)
                    continue
                hit = cached(sha, fp) if cached is not None else None
                if hit is not None:
                    cs.conversions.cached += 1
                    doc = converted_document(entry.rel, hit, str(entry.path), entry.rel, cs.skipped)
                    if doc is not None:
                        det.document(doc, entry.size, entry.mtime_ns, sha, fp)
                    continue
                to_convert.append((entry, fp))
            if to_convert:
                _convert(det, to_convert, pool, progress)
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


def _still_a_folder(src: Path, cfg: RunConfig, live: LiveState) -> None:
    """SourceError if the live generation read ``src`` as a folder and it is now a file (nothing is read).

    Read as a source of its own, the file would delete every document of the folder
    (or fail as a kind ragindex does not read): a sync gone wrong or an archive put in
    the folder's place is refused with what happened, and the index stays as it is.
    """
    m = live.manifest
    was = m.source.kind if m is not None and m.source is not None and m.source.path == cfg.source else None
    if was == "folder" and src.exists() and not src.is_dir():
        raise SourceError(f"source {src} was a folder when generation {live.generation} was built and is now a file; "
                          f"nothing was changed. Put the folder back, or index the file from its own path "
                          f"(`ragindex tenants add {cfg.tenant} --source PATH`)")


def _convert(det: _Detector, files: list[tuple[FileEntry, str]], pool: ConvertPool | None, progress: bool) -> None:
    """Convert ``files`` in the worker pool and feed each outcome to the detector (in walk order).

    A file the converter rejects is skipped with its reason and, if it was indexed,
    its old version is removed like any document whose content became unreadable
    text. A crash or a timeout keeps the old version: it says nothing about the file.
    """
    cs = det.cs
    sha_of: dict[str, str] = {}
    failed: list[str] = []  # I/O errors since the scan: the indexed version is kept

    def jobs():
        for entry, _ in files:
            data = read_file_bytes(entry.path, entry.rel, cs.skipped, failed)
            if data is None:  # vanished or unreadable since the scan: it is skipped with that reason
                continue
            sha_of[entry.rel] = hashlib.sha256(data).hexdigest()  # the bytes converted, whatever the scan saw
            yield Job(entry.rel, entry.path.suffix.lower(), data)

    outcomes = {}
    t0 = time.perf_counter()
    with (pool if pool is not None else ConvertPool()) as p:
        for out in p.run(jobs(), total=len(files), progress=progress, desc=f"convert {cs.config.tenant}"):
            outcomes[out.key] = out
    cs.conversions.seconds += time.perf_counter() - t0
    for entry, fp in files:
        out = outcomes.get(entry.rel)
        old = det.live.docs.get(entry.rel)
        if out is None:
            if entry.rel in failed and old is not None:
                det.unchanged(entry.rel, old, unreadable=True)
            continue
        if out.converted is None:
            cs.conversions.failed += 1
            cs.skipped.append(Skipped(entry.rel, out.error + ("; the version indexed before is kept" if out.transient and old else "")))
            if out.transient and old is not None:
                det.unchanged(entry.rel, old, unreadable=True)
            continue
        c = out.converted
        cs.conversions.converted += 1
        cs.conversions.pages += c.pages
        name = label(entry.path.suffix.lower())
        cs.conversions.by_converter[name] = cs.conversions.by_converter.get(name, 0) + 1
        doc = converted_document(entry.rel, c, str(entry.path), entry.rel, cs.skipped)
        if doc is not None:
            det.document(doc, entry.size, entry.mtime_ns, sha_of[entry.rel], fp)


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
