"""What a document is before it is indexed, and the checks every source's records pass.

A :class:`RawDocument` is one document as a source yields it: its id, its text
(normalised: NFC, LF line endings, the title first when there is one) and, for a
converted file, its :class:`~ragindex.ingest.convert.Layout`. :func:`make_document`
validates a record from any source (folder, .jsonl, .parquet, a converter) the same
way, and turns what it rejects into a :class:`Skipped` with a reason: the same size
limit (:func:`~ragindex.ingest.limits.max_doc_bytes`) and the same metadata rules
(:func:`json_value`: JSON values, at most :data:`MAX_METADATA_DEPTH` levels) for all.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from ragindex.fsutil import sha256_text
from ragindex.ingest.convert import Layout
from ragindex.ingest.limits import max_doc_bytes, too_large

MAX_ID_LEN = 1024
MAX_METADATA_DEPTH = 64  # levels of objects and lists in a record's metadata (the object itself is the first)
_PLAIN = frozenset({str, int, float, bool, type(None)})  # JSON values as they are (checked by exact type: fast)


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


def json_value(value, depth: int = 0):
    """A metadata value as JSON holds it, the same for every source; ValueError (the reason) if it cannot be.

    JSON values stay as they are. What a Parquet file (or a Python caller) may hold
    besides: dates, times and timestamps become ISO 8601 strings (a timestamp keeps its
    offset when it has one); a duration becomes seconds; a decimal becomes a number (an
    integer when it has no fraction, else the nearest float), so range filters work on
    it; bytes become their text when they are UTF-8, else ``"base64:..."``; a map becomes
    an object (keys that are not strings become their JSON text). Objects and lists may
    nest :data:`MAX_METADATA_DEPTH` levels: deeper ones are refused, as are values of
    any other type.
    """
    if type(value) in _PLAIN or value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (dict, list, tuple)):
        if depth >= MAX_METADATA_DEPTH:
            raise ValueError(f"metadata nested more than {MAX_METADATA_DEPTH} levels")
        if isinstance(value, dict):  # plain keys and values are taken as they are, without a call each
            return {(k if type(k) is str else _json_key(k)): (v if type(v) in _PLAIN else json_value(v, depth + 1))
                    for k, v in value.items()}
        return [v if type(v) in _PLAIN else json_value(v, depth + 1) for v in value]
    if isinstance(value, (dt.date, dt.time)):  # a datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(data).decode("ascii")
    raise ValueError(f"metadata holds a value of type {type(value).__name__}, which has no JSON form")


def _json_key(key) -> str:
    key = json_value(key, MAX_METADATA_DEPTH)  # a key is never a container
    return key if isinstance(key, str) else json.dumps(key)


def _utf8_size(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


def make_document(doc_id, text, title, metadata, source: str, where: str, skipped: list[Skipped], seen: set,
                  limit: int | None = None) -> RawDocument | None:
    """Validate one record; a RawDocument, or None with the reason appended to ``skipped``.

    ``limit`` (default :func:`~ragindex.ingest.limits.max_doc_bytes`) holds the record's
    text, title and metadata together, in UTF-8 bytes: the measure a text file is held to.
    """
    reason = _bad_id(doc_id)
    if reason is None and not isinstance(text, str):
        reason = "missing or non-string text"
    if reason is None and title is not None and not isinstance(title, str):
        reason = "title is not a string"
    if reason is None and metadata is not None and not isinstance(metadata, dict):
        reason = "metadata is not an object"
    if reason is None and metadata is not None:
        try:
            metadata = json_value(metadata)
        except ValueError as exc:
            reason = str(exc)
    if reason is None and doc_id in seen:
        reason = f"duplicate id {doc_id!r} (first occurrence kept)"
    meta_json = json.dumps(metadata or {}, ensure_ascii=False) if reason is None else ""
    if reason is None:
        limit = max_doc_bytes() if limit is None else limit
        size = _utf8_size(text) + (_utf8_size(title) if title else 0) + (_utf8_size(meta_json) if metadata else 0)
        reason = too_large(size, limit, "RAGINDEX_MAX_DOC_MB", "document") if size > limit else None
    if reason is None and "\x00" in text:
        reason = "text contains NUL bytes"
    if reason is None and not (encodable(text) and encodable(title or "") and encodable(meta_json)):
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
