"""Metadata filters, evaluated inside the search: a filter is a row mask, applied with the deletion mask.

A filter is JSON. A field condition is ``{FIELD: {OP: VALUE}}`` (several operators
on one field all hold), or ``{FIELD: VALUE}`` for equality; ``{"and": [...]}`` and
``{"or": [...]}`` combine filters, and ``{"not": FILTER}`` negates one. Operators:
``==``, ``!=``, ``in``, ``not_in``, ``<``, ``<=``, ``>``, ``>=``, ``exists``, and for
strings ``prefix`` and ``glob``. Fields are the keys of a document's ``metadata``
(``a.b`` reaches into nested objects), plus ``doc_id`` and ``path`` (a folder
source's relative path, which is its doc_id), and ``page`` and ``page_end``, a
chunk's first and last page in a PDF or a slide deck (a row field: a chunk of a
document without pages has none)::

    {"and": [{"team": "search"}, {"year": {">": 2020}}, {"path": {"prefix": "guides/"}}]}
    {"and": [{"path": "handbook.pdf"}, {"page": {"<=": 10}}]}     # pages 1-10 of one file

Because the mask is built before the search (a FAISS ID selector, a BM25 score
mask), a filtered search returns the ``k`` best rows that match, not the matches
among the ``k`` best. A filter only ever narrows one tenant's own rows.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import numpy as np

from ragindex.errors import FilterError  # noqa: F401  (raised here; defined with the rest)

OPS = ("==", "!=", "in", "not_in", "<", "<=", ">", ">=", "exists", "prefix", "glob")
ROW_FIELDS = ("page", "page_end")  # fields of a chunk rather than of its document
MAX_DEPTH = 16
MAX_CLAUSES = 64
MAX_LIST_VALUES = 1000  # in all the filter's ``in`` / ``not_in`` lists together: matching is a scan per row


def parse(spec: Any) -> dict:
    """Validate a filter (a dict or a JSON string) and return it as a dict."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise FilterError(f"filter is not valid JSON ({exc.msg})") from None
    count = [0, 0]  # clauses, values in in/not_in lists
    _check(spec, 0, count)
    return spec


def _check(node: Any, depth: int, count: list[int]) -> None:
    """Raise FilterError where ``node`` breaks the grammar or a bound (depth, clauses, list values)."""
    count[0] += 1
    if depth > MAX_DEPTH or count[0] > MAX_CLAUSES:
        raise FilterError(f"filter too complex (at most {MAX_DEPTH} levels and {MAX_CLAUSES} clauses)")
    if not isinstance(node, dict) or not node:
        raise FilterError("a filter is a non-empty JSON object")
    for key, value in node.items():
        if key in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"'{key}' takes a non-empty list of filters")
            for v in value:
                _check(v, depth + 1, count)
        elif key == "not":
            _check(value, depth + 1, count)
        elif isinstance(value, dict):
            if not value:
                raise FilterError(f"field {key!r}: empty condition")
            for op, arg in value.items():
                if op not in OPS:
                    raise FilterError(f"field {key!r}: unknown operator {op!r}; use one of {', '.join(OPS)}")
                if op in ("in", "not_in"):
                    _check_list(key, op, arg, count)
                if op in ("prefix", "glob") and not isinstance(arg, str):
                    raise FilterError(f"field {key!r}: {op!r} takes a string")


def _check_list(field: str, op: str, arg: Any, count: list[int]) -> None:
    """An ``in`` / ``not_in`` argument: a list, and the filter's lists hold at most MAX_LIST_VALUES values together.

    Each value is compared with each row's field, so the bound caps a filter's cost
    (200,000 values took 2.8 s of CPU per search before it).
    """
    if not isinstance(arg, list):
        raise FilterError(f"field {field!r}: {op!r} takes a list")
    count[1] += len(arg)
    if count[1] > MAX_LIST_VALUES:
        raise FilterError(f"field {field!r}: {op!r} list of {len(arg)} values; a filter holds at most {MAX_LIST_VALUES} "
                          "values in its 'in' / 'not_in' lists together")


def _get(meta: dict, field: str, doc_id: str, row: dict | None = None) -> Any:
    if field in ("doc_id", "path"):
        return doc_id
    if field in ROW_FIELDS:
        value = (row or {}).get(field)
        return _MISSING if value is None else value
    cur: Any = meta
    for part in field.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


class _Missing:
    pass


_MISSING = _Missing()


def _compare(value: Any, op: str, arg: Any) -> bool:
    if op == "exists":
        return (value is not _MISSING) == bool(arg)
    if value is _MISSING:
        return op in ("!=", "not_in")
    try:
        if op == "==":
            return value == arg
        if op == "!=":
            return value != arg
        if op == "in":
            return value in arg
        if op == "not_in":
            return value not in arg
        if op == "prefix":
            return isinstance(value, str) and value.startswith(arg)
        if op == "glob":
            return isinstance(value, str) and fnmatch.fnmatchcase(value, arg)
        if isinstance(value, bool) or isinstance(arg, bool):
            return False  # no ordering between booleans and numbers
        if op == "<":
            return value < arg
        if op == "<=":
            return value <= arg
        if op == ">":
            return value > arg
        if op == ">=":
            return value >= arg
    except TypeError:  # comparing a string with a number: not a match
        return False
    return False


def matches(node: dict, meta: dict, doc_id: str, row: dict | None = None) -> bool:
    for key, value in node.items():
        if key == "and":
            ok = all(matches(v, meta, doc_id, row) for v in value)
        elif key == "or":
            ok = any(matches(v, meta, doc_id, row) for v in value)
        elif key == "not":
            ok = not matches(value, meta, doc_id, row)
        elif isinstance(value, dict):
            got = _get(meta, key, doc_id, row)
            ok = all(_compare(got, op, arg) for op, arg in value.items())
        else:
            ok = _compare(_get(meta, key, doc_id, row), "==", value)
        if not ok:
            return False
    return True


def document_mask(spec: dict, doc_ids: list[str], metadata: list[str]) -> np.ndarray:
    """Which documents (one metadata JSON and id each) the filter keeps."""
    out = np.zeros(len(doc_ids), dtype=bool)
    for i, (d, meta) in enumerate(zip(doc_ids, _parsed(metadata))):
        out[i] = matches(spec, meta, d)
    return out


def _parsed(metadata: list[str]):
    """Each document's metadata JSON parsed, once per distinct string (documents often share theirs)."""
    cache: dict[str, dict] = {}
    for m in metadata:
        meta = cache.get(m)
        if meta is None:
            meta = cache[m] = json.loads(m) if m else {}
        yield meta


def uses_row_fields(node: Any) -> bool:
    """Whether the filter names a chunk's own fields (``page``, ``page_end``), so it must be evaluated per row."""
    if not isinstance(node, dict):
        return False
    return any(key in ROW_FIELDS or (key in ("and", "or") and any(uses_row_fields(v) for v in value))
               or (key == "not" and uses_row_fields(value)) for key, value in node.items())


def row_mask(spec: dict, doc_ids: list[str], metadata: list[str], first_rows, n_rows, pages, page_ends) -> np.ndarray:
    """Which rows the filter keeps, for a filter with row fields: evaluated once per (document, page span)."""
    n = len(pages)
    out = np.zeros(n, dtype=bool)
    for d, meta, first, count in zip(doc_ids, _parsed(metadata), first_rows, n_rows):
        seen: dict[tuple, bool] = {}
        for r in range(first, first + count):
            key = (pages[r], page_ends[r])
            ok = seen.get(key)
            if ok is None:
                ok = seen[key] = matches(spec, meta, d, {"page": key[0], "page_end": key[1]})
            out[r] = ok
    return out
