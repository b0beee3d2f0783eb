"""Read documents from a source: a folder of documents, a .jsonl file or a .parquet file.

A folder holds text files (read as they are) and PDF, DOCX, PPTX and HTML files
(converted to text with their pages and headings by :mod:`ragindex.ingest.convert`).

Everything here streams: a folder is walked once with each file's stat, so the
caller decides which files to read at all; .jsonl lines and .parquet record
batches are validated one at a time (:mod:`ragindex.ingest.records`). Bad input
never stops a run and is never dropped silently: every file, folder, line or row
that cannot become a document is recorded as a :class:`Skipped` with a reason.
A source that cannot be read as a whole (missing, or of a kind ragindex does not
read) is a :class:`~ragindex.errors.SourceError` from :func:`source_kind`.
"""

from __future__ import annotations

import os
import stat as stat_mod
from pathlib import Path
from typing import Iterator

from ragindex.errors import SourceError, SourceMissing
from ragindex.ingest.convert import CONVERTERS, ConversionError, Limits
from ragindex.ingest.convert.pool import convert_one
from ragindex.ingest.documents import (
    FileEntry,
    RawDocument,
    Skipped,
    SourceReport,
    encodable,
    make_document,
    shown,
)
from ragindex.ingest.limits import max_doc_bytes, max_file_bytes, too_large
from ragindex.ingest.records import PARQUET_BATCH, iter_jsonl, iter_parquet  # noqa: F401  (the record readers live there)

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst"}  # read as they are
DOCUMENT_SUFFIXES = TEXT_SUFFIXES | set(CONVERTERS)  # what a folder source reads


def source_kind(path: Path) -> str:
    """What ``path`` is as a source: folder | jsonl | parquet | file (one document). Nothing is read.

    The one check of a source, for ``tenants add`` and for every run: :class:`SourceMissing`
    (a FileNotFoundError too) if it does not exist, :class:`SourceError` (one line, exit 1)
    for a file ragindex does not read as a source, such as a ``.csv``.
    """
    path = Path(path)
    if not path.exists():
        raise SourceMissing(f"source {path} does not exist")
    if path.is_dir():
        return "folder"
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".parquet":
        return "parquet"
    if path.suffix.lower() in DOCUMENT_SUFFIXES:
        return "file"
    what = f"a {path.suffix} file" if path.suffix else "a file with no suffix"
    raise SourceError(f"source {path}: {what} is not a source ragindex reads; use a folder, a .jsonl or .parquet file "
                      f"of records (id, text[, title, metadata]), or one document ({', '.join(sorted(DOCUMENT_SUFFIXES))})")


def read_source(path: Path) -> SourceReport:
    """Read every document under ``path`` at once (evaluation and tests; the pipeline streams)."""
    path = Path(path)
    kind = source_kind(path)
    report = SourceReport()
    if kind in ("folder", "file"):
        entries = walk_folder(path, report.skipped) if kind == "folder" else [FileEntry(path.name, path, -1, -1)]
        for entry in entries:
            read = read_converted_file if entry.path.suffix.lower() in CONVERTERS else read_text_file
            doc = read(entry.path, entry.rel, report.skipped)
            if doc is not None:
                report.documents.append(doc)
    else:
        report.documents.extend((iter_jsonl if kind == "jsonl" else iter_parquet)(path, report.skipped))
    return report


# -- folders -------------------------------------------------------------------


def walk_folder(root: Path, skipped: list[Skipped], unreadable: list[str] | None = None) -> Iterator[FileEntry]:
    """Every readable-looking document file under ``root``, sorted, with its stat; nothing is read.

    Hidden entries, unsupported types, symlinks leaving the root, loops and
    undecodable names are skipped with a reason. A folder that cannot be listed
    is skipped too, and its path (relative, '/'-terminated) is appended to
    ``unreadable`` so the caller can keep the documents it held.
    """
    root = Path(root)
    real_root = root.resolve()
    stack = [root]
    while stack:
        d = stack.pop()
        rel_d = d.relative_to(root).as_posix()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skipped(shown(rel_d) + "/", f"unreadable folder ({exc.strerror or exc}); "
                                   "the documents it held are kept as they were"))
            if unreadable is not None:
                unreadable.append("" if rel_d == "." else rel_d + "/")
            continue
        subdirs = []
        for e in entries:
            rel = Path(e.path).relative_to(root).as_posix()
            if not encodable(e.name):
                skipped.append(Skipped(shown(rel), "file name is not valid UTF-8; rename it"))
                continue
            if e.name.startswith("."):
                skipped.append(Skipped(rel, f"hidden {'directory' if _is_dir(e) else 'file'}, not read"))
                continue
            try:
                if e.is_symlink():
                    target = Path(e.path).resolve(strict=True)
                    if not target.is_relative_to(real_root):
                        skipped.append(Skipped(rel, f"symlink to {shown(str(target))}, outside the source root"))
                        continue
                    if target.is_dir():
                        skipped.append(Skipped(rel, "symlinked directory, not followed (its target is read directly)"))
                        continue
                if e.is_dir(follow_symlinks=False):
                    subdirs.append(Path(e.path))
                    continue
                if Path(e.name).suffix.lower() not in DOCUMENT_SUFFIXES:
                    skipped.append(Skipped(shown(rel), f"unsupported file type {Path(e.name).suffix or '(none)'!r}"))
                    continue
                st = e.stat(follow_symlinks=True)
            except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (pathlib)
                skipped.append(Skipped(shown(rel), f"unreadable ({getattr(exc, 'strerror', None) or exc})"))
                continue
            if not stat_mod.S_ISREG(st.st_mode):
                skipped.append(Skipped(shown(rel), "not a regular file"))
                continue
            yield FileEntry(rel, Path(e.path), st.st_size, st.st_mtime_ns)
        stack.extend(reversed(subdirs))


def _is_dir(e: os.DirEntry) -> bool:
    try:
        return e.is_dir(follow_symlinks=False)
    except OSError:
        return False


def read_text_file(f: Path, doc_id: str, skipped: list[Skipped], seen: set | None = None,
                   unreadable: list[str] | None = None) -> RawDocument | None:
    """One text file as a document, or None with a reason appended to ``skipped``.

    An I/O error (rather than bad content) also appends ``doc_id`` to ``unreadable``.
    """
    limit = max_doc_bytes()
    data = read_file_bytes(f, doc_id, skipped, unreadable, limit=limit, limit_env="RAGINDEX_MAX_DOC_MB")
    if data is None:
        return None
    if b"\x00" in data[:8192]:
        skipped.append(Skipped(doc_id, "binary file (NUL bytes)"))
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        skipped.append(Skipped(doc_id, f"not valid UTF-8 (byte {exc.start}); convert it to UTF-8"))
        return None
    return make_document(doc_id, text, None, None, str(f), doc_id, skipped, seen if seen is not None else set(), limit)


def read_file_bytes(f: Path, doc_id: str, skipped: list[Skipped], unreadable: list[str] | None = None,
                    limit: int | None = None, limit_env: str = "RAGINDEX_MAX_FILE_MB") -> bytes | None:
    """A file's bytes (at most ``limit``, default :func:`max_file_bytes`), or None with a reason appended to
    ``skipped``; an I/O error also appends ``doc_id`` to ``unreadable`` (the file says nothing about its content)."""
    limit = max_file_bytes() if limit is None else limit
    try:
        size = f.stat().st_size
        if size > limit:
            skipped.append(Skipped(doc_id, too_large(size, limit, limit_env)))
            return None
        data = f.read_bytes()
    except OSError as exc:
        skipped.append(Skipped(doc_id, f"unreadable: {exc.strerror or exc}"))
        if unreadable is not None:
            unreadable.append(doc_id)
        return None
    if not data:
        skipped.append(Skipped(doc_id, "empty file (0 bytes)"))
        return None
    return data


def converted_document(doc_id: str, converted, source: str, where: str, skipped: list[Skipped]) -> RawDocument | None:
    """A converter's output as a document (its text validated like any other), or None with a reason."""
    doc = make_document(doc_id, converted.text, None, None, source, where, skipped, set())
    if doc is None:
        return None
    if doc.text != converted.text:  # the layout's offsets are into the converter's text: it must be the document's
        skipped.append(Skipped(where, "converter returned text that is not normalised (a converter bug; please report it)"))
        return None
    return RawDocument(doc.doc_id, doc.text, source, None, {}, converted.layout)


def read_converted_file(f: Path, doc_id: str, skipped: list[Skipped], seen: set | None = None) -> RawDocument | None:
    """Convert one file in this process (evaluation and tests; a run converts in a worker pool)."""
    data = read_file_bytes(f, doc_id, skipped)
    if data is None:
        return None
    try:
        converted = convert_one(f.suffix, data, Limits.from_env())
    except ConversionError as exc:
        skipped.append(Skipped(doc_id, str(exc)))
        return None
    return converted_document(doc_id, converted, str(f), doc_id, skipped)
