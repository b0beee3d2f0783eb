"""Read documents from a source: a folder of text files, a .jsonl file or a .parquet file.

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
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst", ".html", ".htm"}
MAX_ID_LEN = 1024
PARQUET_BATCH = 4096


def max_doc_bytes() -> int:
    """Largest document read (default 32 MiB, ``$RAGINDEX_MAX_DOC_MB``); bigger ones are skipped with a reason.

    A single huge file is almost always an export or a log dump, and chunking it
    would dominate a run's time and memory; it is reported, not silently cut.
    """
    return int(float(os.environ.get("RAGINDEX_MAX_DOC_MB", "32")) * 1024 * 1024)


@dataclass(frozen=True)
class RawDocument:
    doc_id: str
    text: str  # normalised, title first when there is one
    source: str
    title: str | None = None
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    where: str  # file, folder, or file:line / file#row
    reason: str


@dataclass
class SourceReport:
    documents: list[RawDocument] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class FileEntry:
    """A candidate document file found by the walk, with the stat change detection compares."""

    rel: str  # path relative to the source root, '/'-separated: the document id
    path: Path
    size: int
    mtime_ns: int


def shown(name: str) -> str:
    """A file name safe to print: control characters and undecodable bytes escaped (``\\x1b``, ``\\udce9``), the rest as is."""
    out = []
    for ch in name:
        cat = unicodedata.category(ch)
        if cat == "Cs":  # a byte that was not UTF-8, smuggled in by surrogateescape
            out.append(f"\\u{ord(ch):04x}")
        elif cat == "Cc":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def normalise(text: str) -> str:
    """NFC, LF line endings, no byte-order mark."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


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
    if path.suffix.lower() in TEXT_SUFFIXES:
        return "file"
    raise ValueError(f"source {path}: expected a folder, a .jsonl or a .parquet file, or a text file ({', '.join(sorted(TEXT_SUFFIXES))})")


def _bad_id(doc_id) -> str | None:
    if not isinstance(doc_id, str) or not doc_id:
        return "missing or non-string id"
    if len(doc_id) > MAX_ID_LEN:
        return f"id longer than {MAX_ID_LEN} characters"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in doc_id):
        return "id contains control characters or invalid unicode"
    return None


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def make_document(doc_id, text, title, metadata, source: str, where: str, skipped: list[Skipped], seen: set) -> RawDocument | None:
    """Validate one record; a RawDocument, or None with the reason appended to ``skipped``."""
    reason = _bad_id(doc_id)
    if reason is None and not isinstance(text, str):
        reason = "missing or non-string text"
    if reason is None and title is not None and not isinstance(title, str):
        reason = "title is not a string"
    if reason is None and metadata is not None and not isinstance(metadata, dict):
        reason = "metadata is not an object"
    if reason is None and doc_id in seen:
        reason = f"duplicate id {doc_id!r} (first occurrence kept)"
    if reason is None and "\x00" in text:
        reason = "text contains NUL bytes"
    if reason is None and not (_encodable(text) and _encodable(title or "") and _encodable(json.dumps(metadata or {}, ensure_ascii=False))):
        reason = "text, title or metadata holds invalid unicode (a lone surrogate)"
    body = ""
    if reason is None:
        body = normalise(text)
        if title:
            body = normalise(title) + "\n\n" + body
        if not body.strip():
            reason = "empty text"
    if reason is not None:
        skipped.append(Skipped(where, reason))
        return None
    seen.add(doc_id)
    return RawDocument(doc_id, body, source, title, metadata or {})


def read_source(path: Path) -> SourceReport:
    """Read every document under ``path`` at once (evaluation and tests; the pipeline streams)."""
    path = Path(path)
    kind = source_kind(path)
    report = SourceReport()
    if kind == "folder":
        for entry in walk_folder(path, report.skipped):
            doc = read_text_file(entry.path, entry.rel, report.skipped)
            if doc is not None:
                report.documents.append(doc)
    elif kind == "file":
        doc = read_text_file(path, path.name, report.skipped)
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
            if not _encodable(e.name):
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
                if Path(e.name).suffix.lower() not in TEXT_SUFFIXES:
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
    try:
        size = f.stat().st_size
        if size > max_doc_bytes():
            skipped.append(Skipped(doc_id, f"too large: {size / 2**20:.1f} MiB > {max_doc_bytes() / 2**20:.0f} MiB "
                                   "(raise RAGINDEX_MAX_DOC_MB or split the file)"))
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
    if b"\x00" in data[:8192]:
        skipped.append(Skipped(doc_id, "binary file (NUL bytes)"))
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        skipped.append(Skipped(doc_id, f"not valid UTF-8 (byte {exc.start}); convert it to UTF-8"))
        return None
    return make_document(doc_id, text, None, None, str(f), doc_id, skipped, seen if seen is not None else set())


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
