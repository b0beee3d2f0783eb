"""What a document is before it is indexed, and the checks every source's records pass.

A :class:`RawDocument` is one document as a source yields it: its id, its text
(normalised: NFC, LF line endings, the title first when there is one) and, for a
converted file, its :class:`~ragindex.ingest.convert.Layout`. :func:`make_document`
validates a record from any source (folder, .jsonl, .parquet, a converter) the same
way, and turns what it rejects into a :class:`Skipped` with a reason.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from ragindex.fsutil import sha256_text
from ragindex.ingest.convert import Layout

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
    text: str  # normalised, title first when there is one
    source: str
    title: str | None = None
    metadata: dict = field(default_factory=dict)
    layout: Layout | None = None  # pages and headings of a converted file


def document_hash(text: str, layout: Layout | None = None) -> str:
    """A document's content identity (DESIGN: doc_hash): its text, and for a converted file its layout too,
    so a converter that moves a page break or a heading re-chunks the file even when the text is the same."""
    if layout is None:
        return sha256_text(text)
    return sha256_text(text + "\x00" + layout.to_json())


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


def _bad_id(doc_id) -> str | None:
    if not isinstance(doc_id, str) or not doc_id:
        return "missing or non-string id"
    if len(doc_id) > MAX_ID_LEN:
        return f"id longer than {MAX_ID_LEN} characters"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in doc_id):
        return "id contains control characters or invalid unicode"
    return None


def encodable(s: str) -> bool:
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
    if reason is None and not (encodable(text) and encodable(title or "") and encodable(json.dumps(metadata or {}, ensure_ascii=False))):
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
