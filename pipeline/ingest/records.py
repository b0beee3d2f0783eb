"""Read a file of records: a ``.jsonl`` file (one JSON object a line) or a ``.parquet`` file (one row each).

Records stream: a line or a record batch at a time. Each is validated by
:func:`~ragindex.ingest.documents.make_document`, like a document from any source: the
same size limit (``$RAGINDEX_MAX_DOC_MB`` on its text, title and metadata) and the same
metadata rules (JSON values, nested at most ``MAX_METADATA_DEPTH`` levels). One bad
record is one :class:`~ragindex.ingest.documents.Skipped` with its reason, never the end
of the file:

- a ``.jsonl`` line longer than any document within the limit could be in JSON
  (:data:`JSON_BYTES_PER_BYTE` times the limit) is read past in pieces, never decoded;
- a line nested too deeply for the JSON parser, or with a number too long for it
  (4300 digits), is skipped (each used to abort the run);
- Parquet metadata of any Arrow type becomes JSON values (dates and timestamps as ISO
  8601 strings, decimals as numbers, bytes as text or base64: see ``json_value``);
  nanosecond timestamps, times and durations are read to the microsecond first (the
  finest a Python datetime holds). A row whose values still cannot be read (a date
  past year 9999) is skipped alone; only a damaged file stops the reader, and then
  the documents it did not read are kept, never counted as deleted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from ragindex.ingest.documents import MAX_METADATA_DEPTH, RawDocument, Skipped, make_document
from ragindex.ingest.limits import max_doc_bytes, too_large

PARQUET_BATCH = 4096
JSON_BYTES_PER_BYTE = 6  # the most bytes JSON spends on one byte of text ("\u0001")
LINE_SLACK = 64 * 1024  # a line's id, keys and punctuation beyond its text
PIECE = 1024 * 1024  # how much of an over-long line is held at once while it is read past
TOO_DEEP = f"JSON nested too deeply to read (metadata may nest {MAX_METADATA_DEPTH} levels)"


# -- .jsonl ----------------------------------------------------------------------


def _lines(fh, cap: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, the line or None if it is over ``cap`` bytes, its size) for every line of ``fh``."""
    lineno = 0
    while raw := fh.readline(cap + 1):
        lineno += 1
        if len(raw) <= cap or raw.endswith(b"\n"):
            yield lineno, raw, len(raw)
            continue
        size = len(raw)
        del raw
        while (piece := fh.readline(PIECE)) and not piece.endswith(b"\n"):
            size += len(piece)
        yield lineno, None, size + len(piece)


def iter_jsonl(f: Path, skipped: list[Skipped], unreadable: list[str] | None = None) -> Iterator[RawDocument]:
    """One document per valid line (``id`` or BEIR's ``_id``, ``text``, optional ``title`` and ``metadata``).

    If the file cannot be opened, ``""`` is appended to ``unreadable`` (keep every document).
    """
    limit = max_doc_bytes()
    seen: set[str] = set()
    try:
        fh = open(f, "rb")
    except OSError as exc:
        skipped.append(Skipped(f.name, f"unreadable ({exc.strerror or exc}); the documents it held are kept as they were"))
        if unreadable is not None:
            unreadable.append("")
        return
    with fh:
        for lineno, raw, size in _lines(fh, JSON_BYTES_PER_BYTE * limit + LINE_SLACK):
            where = f"{f.name}:{lineno}"
            if raw is None:
                skipped.append(Skipped(where, too_large(size, limit, "RAGINDEX_MAX_DOC_MB", "document")))
                continue
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
            except ValueError as exc:  # a number past the parser's limit (4300 digits)
                skipped.append(Skipped(where, f"unreadable JSON: {str(exc).split(':')[0]}"))
                continue
            except RecursionError:
                skipped.append(Skipped(where, TOO_DEEP))
                continue
            if not isinstance(obj, dict):
                skipped.append(Skipped(where, "line is not a JSON object"))
                continue
            doc_id = obj.get("id", obj.get("_id"))  # "_id" is the BEIR spelling
            doc = make_document(doc_id, obj.get("text"), obj.get("title"), obj.get("metadata"), str(f), where, skipped, seen,
                                limit)
            if doc is not None:
                yield doc


# -- .parquet --------------------------------------------------------------------


class Unreadable(NamedTuple):
    """A value of one row that Python cannot hold; the row is skipped with ``reason``."""

    reason: str


def python_type(t: pa.DataType) -> pa.DataType:
    """``t`` with every nanosecond timestamp, time and duration in it (at any depth) in microseconds."""
    if (pa.types.is_timestamp(t) or pa.types.is_time64(t) or pa.types.is_duration(t)) and t.unit == "ns":
        return pa.timestamp("us", t.tz) if pa.types.is_timestamp(t) else (pa.time64("us") if pa.types.is_time64(t) else pa.duration("us"))
    if pa.types.is_struct(t):
        return pa.struct([t.field(k).with_type(python_type(t.field(k).type)) for k in range(t.num_fields)])
    if pa.types.is_map(t):
        return pa.map_(t.key_field.with_type(python_type(t.key_type)), t.item_field.with_type(python_type(t.item_type)),
                       t.keys_sorted)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        field = t.value_field.with_type(python_type(t.value_type))
        return (pa.large_list(field) if pa.types.is_large_list(t)
                else pa.list_(field, t.list_size) if pa.types.is_fixed_size_list(t) else pa.list_(field))
    return t


def column_values(arr: pa.Array) -> list:
    """A column's values as Python objects; a value that cannot be one is an :class:`Unreadable`, alone."""
    target = python_type(arr.type)
    if target != arr.type:
        try:
            arr = arr.cast(target, safe=False)  # drops the nanoseconds; a value out of range is found below
        except (pa.ArrowException, ValueError):
            pass
    try:
        return arr.to_pylist(maps_as_pydicts="lossy")
    except (pa.ArrowException, ValueError, OverflowError, TypeError):
        out = []
        for k in range(len(arr)):
            try:
                out.append(arr[k].as_py(maps_as_pydicts="lossy"))
            except (pa.ArrowException, ValueError, OverflowError, TypeError) as exc:
                out.append(Unreadable(str(exc)))
        return out


def _metadata(meta) -> tuple[object, str | None]:
    """A row's metadata (a struct, a map, or JSON text) and the reason it cannot be used, if so."""
    if not isinstance(meta, str):
        return meta, None
    try:
        return json.loads(meta), None
    except json.JSONDecodeError:
        return None, "metadata is not valid JSON"
    except ValueError as exc:  # a number past the parser's limit (4300 digits)
        return None, f"metadata is unreadable JSON: {str(exc).split(':')[0]}"
    except RecursionError:
        return None, TOO_DEEP


def iter_parquet(f: Path, skipped: list[Skipped], unreadable: list[str] | None = None) -> Iterator[RawDocument]:
    """One document per valid row, read in record batches (columns ``id``, ``text``, optional ``title``, ``metadata``).

    If the file (or a batch part-way through it) cannot be read, ``""`` is appended
    to ``unreadable``: the documents not read are kept, never counted as deleted.
    """
    limit = max_doc_bytes()
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
    batches = pf.iter_batches(batch_size=PARQUET_BATCH, columns=cols)
    seen: set[str] = set()
    i = 0
    while True:
        try:
            batch = next(batches, None)
            if batch is None:
                return
            data = {c: column_values(batch.column(c)) for c in cols}
        except Exception as exc:  # noqa: BLE001 - a damaged page part-way through the file
            skipped.append(Skipped(f"{f.name}#{i}", f"unreadable Parquet data from here on: {exc}"))
            if unreadable is not None:
                unreadable.append("")
            return
        for j in range(batch.num_rows):
            where = f"{f.name}#{i + j}"
            row = {c: data[c][j] for c in cols}
            bad = next((f"{c} cannot be read: {v.reason}" for c, v in row.items() if isinstance(v, Unreadable)), None)
            meta, bad = _metadata(row.get("metadata")) if bad is None else (None, bad)
            if bad is not None:
                skipped.append(Skipped(where, bad))
                continue
            doc = make_document(row["id"], row["text"], row.get("title"), meta, str(f), where, skipped, seen, limit)
            if doc is not None:
                yield doc
        i += batch.num_rows
