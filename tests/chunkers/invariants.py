"""The chunk invariants every chunker kind promises, as one reusable check.

Used by the real-corpus tests (test_invariants.py) and the property tests
(test_hypothesis.py). ``violations`` returns readable problem strings instead of
asserting, so a corpus-wide test can report the first few offending documents.
"""

from __future__ import annotations

import hashlib
import json

from ragindex.chunkers.base import Span
from ragindex.chunkers.tokenizers import get_tokenizer


def violations(text: str, spans: list[Span], spec, *, limit: int = 5) -> list[str]:
    """What is wrong with ``spans`` as a chunking of ``text`` under ``spec`` (empty: nothing).

    Checks, on every chunk: ``0 <= start < end <= len(text)``; spans sorted by
    start; the chunk text is non-empty and has no leading/trailing whitespace;
    ``token_count`` equals the schema tokenizer's exact count of the chunk text
    and is at most ``spec.size``. On the whole: every non-whitespace character
    lies in some chunk; with ``overlap == 0`` no two chunks overlap. Stops after
    ``limit`` problems.
    """
    tok = get_tokenizer(spec.tokenizer)
    out: list[str] = []
    n = len(text)
    prev_start = -1
    for i, sp in enumerate(spans):
        if len(out) >= limit:
            return out
        where = f"chunk {i} [{sp.start}:{sp.end}]"
        if not (0 <= sp.start < sp.end <= n):
            out.append(f"{where}: bounds outside 0 <= start < end <= {n}")
            continue
        if sp.start < prev_start:
            out.append(f"{where}: starts before the previous chunk (start {prev_start})")
        prev_start = sp.start
        chunk = text[sp.start : sp.end]
        if chunk[0].isspace() or chunk[-1].isspace():
            out.append(f"{where}: leading/trailing whitespace {chunk[:12]!r}...{chunk[-12:]!r}")
        exact = tok.count(chunk)
        if sp.token_count != exact:
            out.append(f"{where}: token_count {sp.token_count} but {spec.tokenizer} counts {exact}")
        if exact > spec.size:
            out.append(f"{where}: {exact} tokens > size {spec.size}")
    if out:
        return out[:limit]

    # No text lost: walk the union of the spans (already known sorted, in bounds);
    # every gap between covered regions must be whitespace only. str.isspace on
    # the gap slices keeps this linear and in C.
    covered = 0
    for sp in spans:
        if sp.start > covered:
            gap = text[covered : sp.start]
            if not gap.isspace():
                out.append(f"text lost between {covered} and {sp.start}: {gap[:40]!r}")
        covered = max(covered, sp.end)
    if covered < n and not text[covered:].isspace():
        out.append(f"text lost after {covered}: {text[covered : covered + 40]!r}")

    if spec.overlap == 0:
        for i, (a, b) in enumerate(zip(spans, spans[1:])):
            if b.start < a.end:
                out.append(f"overlap 0 but chunk {i + 1} [{b.start}:{b.end}] overlaps chunk {i} [{a.start}:{a.end}]")
                if len(out) >= limit:
                    break
    return out[:limit]


def spans_digest(per_doc: list[list[Span]]) -> str:
    """sha256 of every span of every document, in document order: equal digests, equal chunks."""
    h = hashlib.sha256()
    for spans in per_doc:
        h.update(json.dumps([[s.start, s.end, s.token_count, list(s.heading_path)] for s in spans]).encode())
        h.update(b"\n")
    return h.hexdigest()
