"""Read documents from a source: a folder of text files, a .jsonl file or a .parquet file.

Bad input never stops a run and is never dropped silently: every file, line or
row that cannot become a document is returned as a :class:`Skipped` with a
reason, and the caller reports the count and the list.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst", ".html", ".htm"}
MAX_ID_LEN = 1024


def max_doc_bytes() -> int:
    """Largest document read (default 32 MiB, ``$RAGINDEX_MAX_DOC_MB``); bigger ones are skipped with a reason.

    A single huge file is almost always an export or a log dump, and chunking it
    would dominate a run's time and memory; it is reported, not silently cut.
    """
    return int(float(os.environ.get("RAGINDEX_MAX_DOC_MB", "32")) * 1024 * 1024)


@dataclass(frozen=True)
class RawDocument:
    doc_id: str
    text: str  # normalised
    source: str
    title: str | None = None
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    where: str  # file, or file:line / file#row
    reason: str


@dataclass
class SourceReport:
    documents: list[RawDocument] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def normalise(text: str) -> str:
    """NFC, LF line endings, no byte-order mark."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


def _bad_id(doc_id) -> str | None:
    if not isinstance(doc_id, str) or not doc_id:
        return "missing or non-string id"
    if len(doc_id) > MAX_ID_LEN:
        return f"id longer than {MAX_ID_LEN} characters"
    if any(unicodedata.category(c) == "Cc" for c in doc_id):
        return "id contains control characters"
    return None


def _document(doc_id, text, title, metadata, source: str, where: str, report: SourceReport, seen: set) -> None:
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
    if reason is None:
        body = normalise(text)
        if title:
            body = normalise(title) + "\n\n" + body
        if not body.strip():
            reason = "empty text"
    if reason is not None:
        report.skipped.append(Skipped(where, reason))
        return
    seen.add(doc_id)
    report.documents.append(RawDocument(doc_id, body, source, title, metadata or {}))


def read_source(path: Path) -> SourceReport:
    """Read every document under ``path``; raise FileNotFoundError if it does not exist."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"source {path} does not exist")
    report = SourceReport()
    seen: set[str] = set()
    if path.is_dir():
        _read_folder(path, report, seen)
    elif path.suffix == ".jsonl":
        _read_jsonl(path, report, seen)
    elif path.suffix == ".parquet":
        _read_parquet(path, report, seen)
    elif path.suffix.lower() in TEXT_SUFFIXES:
        _read_text_file(path, path.name, report, seen)
    else:
        raise ValueError(f"source {path}: expected a folder, a .jsonl or a .parquet file, or a text file ({', '.join(sorted(TEXT_SUFFIXES))})")
    return report


def _walk(root: Path, report: SourceReport) -> Iterator[Path]:
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            sub = d / name
            if name.startswith("."):
                report.skipped.append(Skipped(str(sub.relative_to(root)), "hidden directory, not read"))
            elif sub.is_symlink():
                target = sub.resolve()
                if not target.is_relative_to(real_root):
                    report.skipped.append(Skipped(str(sub.relative_to(root)), f"symlink to {target}, outside the source root"))
                else:
                    report.skipped.append(Skipped(str(sub.relative_to(root)), "symlinked directory, not followed (its target is read directly)"))
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            yield d / name


def _read_folder(root: Path, report: SourceReport, seen: set) -> None:
    real_root = root.resolve()
    for f in _walk(root, report):
        rel = f.relative_to(root).as_posix()
        if f.name.startswith("."):
            report.skipped.append(Skipped(rel, "hidden file, not read"))
            continue
        if f.suffix.lower() not in TEXT_SUFFIXES:
            report.skipped.append(Skipped(rel, f"unsupported file type {f.suffix or '(none)'!r}"))
            continue
        if f.is_symlink() and not f.resolve().is_relative_to(real_root):
            report.skipped.append(Skipped(rel, f"symlink to {f.resolve()}, outside the source root"))
            continue
        _read_text_file(f, rel, report, seen)


def _read_text_file(f: Path, doc_id: str, report: SourceReport, seen: set) -> None:
    try:
        size = f.stat().st_size
        if size > max_doc_bytes():
            report.skipped.append(Skipped(doc_id, f"too large: {size / 2**20:.1f} MiB > {max_doc_bytes() / 2**20:.0f} MiB "
                                          "(raise RAGINDEX_MAX_DOC_MB or split the file)"))
            return
        data = f.read_bytes()
    except OSError as exc:
        report.skipped.append(Skipped(doc_id, f"unreadable: {exc.strerror or exc}"))
        return
    if not data:
        report.skipped.append(Skipped(doc_id, "empty file (0 bytes)"))
        return
    if b"\x00" in data[:8192]:
        report.skipped.append(Skipped(doc_id, "binary file (NUL bytes)"))
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        report.skipped.append(Skipped(doc_id, f"not valid UTF-8 (byte {exc.start}); convert it to UTF-8"))
        return
    _document(doc_id, text, None, None, str(f), doc_id, report, seen)


def _read_jsonl(f: Path, report: SourceReport, seen: set) -> None:
    with open(f, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{f.name}:{lineno}"
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                report.skipped.append(Skipped(where, "line is not valid UTF-8"))
                continue
            except json.JSONDecodeError as exc:
                report.skipped.append(Skipped(where, f"invalid JSON: {exc.msg}"))
                continue
            if not isinstance(obj, dict):
                report.skipped.append(Skipped(where, "line is not a JSON object"))
                continue
            doc_id = obj.get("id", obj.get("_id"))  # "_id" is the BEIR spelling
            _document(doc_id, obj.get("text"), obj.get("title"), obj.get("metadata"), str(f), where, report, seen)


def _read_parquet(f: Path, report: SourceReport, seen: set) -> None:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(f)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
        report.skipped.append(Skipped(f.name, f"unreadable Parquet file: {exc}"))
        return
    missing = {"id", "text"} - set(table.column_names)
    if missing:
        report.skipped.append(Skipped(f.name, f"missing column(s) {', '.join(sorted(missing))}; expected id, text[, title, metadata]"))
        return
    cols = {c: table.column(c).to_pylist() for c in ("id", "text", "title", "metadata") if c in table.column_names}
    for i in range(table.num_rows):
        meta = cols.get("metadata", [None] * table.num_rows)[i]
        if isinstance(meta, str):
            try:
                meta = json.loads(meta)
            except json.JSONDecodeError:
                report.skipped.append(Skipped(f"{f.name}#{i}", "metadata is not valid JSON"))
                continue
        _document(cols["id"][i], cols["text"][i], cols.get("title", [None] * table.num_rows)[i], meta, str(f), f"{f.name}#{i}", report, seen)
