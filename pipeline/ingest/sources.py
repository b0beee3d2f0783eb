"""Read documents from a source: a folder of documents, a .jsonl file or a .parquet file.

A folder holds text files (read as they are) and PDF, DOCX, PPTX and HTML files
(converted to text with their pages and headings by :mod:`ragindex.ingest.convert`).

Everything here streams: a folder is walked once with each file's stat, so the
caller decides which files to read at all; .jsonl lines and .parquet record
batches are validated one at a time. Bad input never stops a run and is never
dropped silently: every file, folder, line or row that cannot become a
document is recorded as a :class:`Skipped` with a reason.
"""

from __future__ import annotations

import json
import os
import stat as stat_mod
from pathlib import Path
from typing import Iterator

from ragindex.ingest.convert import CONVERTERS, ConversionError, Limits
from ragindex.ingest.convert.pool import convert_one
from ragindex.ingest.documents import (
    FileEntry,
    RawDocument,
    Skipped,
    SourceReport,
    encodable,
    make_document,
    max_doc_bytes,
    shown,
)

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst"}  # read as they are
DOCUMENT_SUFFIXES = TEXT_SUFFIXES | set(CONVERTERS)  # what a folder source reads
PARQUET_BATCH = 4096


def source_kind(path: Path) -> str:
    """folder | jsonl | parquet | file; ValueError for anything else, FileNotFoundError if missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"source {path} does not exist")
    if path.is_dir():
        return "folder"
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".parquet":
        return "parquet"
    if path.suffix.lower() in DOCUMENT_SUFFIXES:
        return "file"
    raise ValueError(f"source {path}: expected a folder, a .jsonl or a .parquet file, or a document "
                     f"({', '.join(sorted(DOCUMENT_SUFFIXES))})")


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
    data = read_file_bytes(f, doc_id, skipped, unreadable, limit=max_doc_bytes(), limit_env="RAGINDEX_MAX_DOC_MB")
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
    return make_document(doc_id, text, None, None, str(f), doc_id, skipped, seen if seen is not None else set())


def max_file_bytes() -> int:
    """Largest PDF, DOCX, PPTX or HTML file converted (default 256 MiB, ``$RAGINDEX_MAX_FILE_MB``).

    Binary formats carry images and fonts, so their bytes are a poor measure of their
    text; the converted text is held to :func:`max_doc_bytes` and pages to
    ``$RAGINDEX_MAX_PAGES`` by the converters themselves.
    """
    return int(float(os.environ.get("RAGINDEX_MAX_FILE_MB", "256")) * 1024 * 1024)


def read_file_bytes(f: Path, doc_id: str, skipped: list[Skipped], unreadable: list[str] | None = None,
                    limit: int | None = None, limit_env: str = "RAGINDEX_MAX_FILE_MB") -> bytes | None:
    """A file's bytes (at most ``limit``, default :func:`max_file_bytes`), or None with a reason appended to
    ``skipped``; an I/O error also appends ``doc_id`` to ``unreadable`` (the file says nothing about its content)."""
    limit = max_file_bytes() if limit is None else limit
    try:
        size = f.stat().st_size
        if size > limit:
            skipped.append(Skipped(doc_id, f"too large: {size / 2**20:.1f} MiB > {limit / 2**20:.0f} MiB "
                                   f"(raise {limit_env} or split the file)"))
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


# -- record files ----------------------------------------------------------------


def iter_jsonl(f: Path, skipped: list[Skipped], unreadable: list[str] | None = None) -> Iterator[RawDocument]:
    """One document per valid line (``id`` or BEIR's ``_id``, ``text``, optional ``title`` and ``metadata``).

    If the file cannot be opened, ``""`` is appended to ``unreadable`` (keep every document).
    """
    seen: set[str] = set()
    try:
        fh = open(f, "rb")
    except OSError as exc:
        skipped.append(Skipped(f.name, f"unreadable ({exc.strerror or exc}); the documents it held are kept as they were"))
        if unreadable is not None:
            unreadable.append("")
        return
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{f.name}:{lineno}"
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                skipped.append(Skipped(where, "line is not valid UTF-8"))
                continue
            except json.JSONDecodeError as exc:
                skipped.append(Skipped(where, f"invalid JSON: {exc.msg}"))
                continue
            if not isinstance(obj, dict):
                skipped.append(Skipped(where, "line is not a JSON object"))
                continue
            doc_id = obj.get("id", obj.get("_id"))  # "_id" is the BEIR spelling
            doc = make_document(doc_id, obj.get("text"), obj.get("title"), obj.get("metadata"), str(f), where, skipped, seen)
            if doc is not None:
                yield doc


def iter_parquet(f: Path, skipped: list[Skipped], unreadable: list[str] | None = None) -> Iterator[RawDocument]:
    """One document per valid row, read in record batches (columns ``id``, ``text``, optional ``title``, ``metadata``).

    If the file (or a batch part-way through it) cannot be read, ``""`` is appended
    to ``unreadable``: the documents not read are kept, never counted as deleted.
    """
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
        names = set(pf.schema_arrow.names)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
        skipped.append(Skipped(f.name, f"unreadable Parquet file: {exc}"))
        if unreadable is not None:
            unreadable.append("")
        return
    missing = {"id", "text"} - names
    if missing:
        skipped.append(Skipped(f.name, f"missing column(s) {', '.join(sorted(missing))}; expected id, text[, title, metadata]"))
        if unreadable is not None:
            unreadable.append("")
        return
    cols = [c for c in ("id", "text", "title", "metadata") if c in names]
    seen: set[str] = set()
    i = 0
    try:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH, columns=cols):
            data = {c: batch.column(c).to_pylist() for c in cols}
            for j in range(batch.num_rows):
                where = f"{f.name}#{i}"
                i += 1
                meta = data["metadata"][j] if "metadata" in data else None
                if isinstance(meta, str):
                    try:
                        meta = json.loads(meta)
                    except json.JSONDecodeError:
                        skipped.append(Skipped(where, "metadata is not valid JSON"))
                        continue
                title = data["title"][j] if "title" in data else None
                doc = make_document(data["id"][j], data["text"][j], title, meta, str(f), where, skipped, seen)
                if doc is not None:
                    yield doc
    except Exception as exc:  # noqa: BLE001 - a damaged page part-way through the file
        skipped.append(Skipped(f"{f.name}#{i}", f"unreadable Parquet data from here on: {exc}"))
        if unreadable is not None:
            unreadable.append("")
