"""What every chunker kind promises, independent of how it splits.

A chunker turns one normalised document text into spans. It never copies text:
a span is ``(start, end)`` into the document, so ``text[start:end]`` *is* the
chunk, and offsets stay valid for span-level evaluation and for search hits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(frozen=True, slots=True)
class Span:
    """One chunk of a document.

    Attributes:
        start: first character (code point) of the chunk in the document.
        end: one past the last character.
        token_count: exact token count of ``text[start:end]`` for the schema's tokenizer.
        heading_path: markdown headings enclosing the chunk, outermost first.
    """

    start: int
    end: int
    token_count: int
    heading_path: tuple[str, ...] = field(default=())


class Tokenizer(Protocol):
    """The slice of a tokenizer that chunkers need."""

    name: str

    def count(self, text: str) -> int:
        """Exact number of tokens in ``text`` (no special tokens)."""

    def starts(self, text: str) -> list[int]:
        """Character offset at which each token of ``text`` starts (ascending)."""


class Chunker(Protocol):
    """A configured chunker: deterministic, pure, no I/O."""

    def chunk(self, text: str) -> list[Span]:
        """Split ``text``; spans are sorted by start and never empty after stripping."""


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` so it neither starts nor ends with whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def fit_span(text: str, start: int, end: int, limit: int, tok: Tokenizer) -> list[Span]:
    """Return ``[start, end)`` as consecutive spans of at most ``limit`` tokens each.

    Token counts are always taken on the exact substring: a BPE or WordPiece cut
    can make a substring cost more tokens than the window it came from, so a
    candidate cut is moved back one token at a time until the substring fits.
    Whitespace around each span is stripped; whitespace-only input gives no span.
    """
    out: list[Span] = []
    start, end = strip_span(text, start, end)
    while start < end:
        n = tok.count(text[start:end])
        if n <= limit:
            out.append(Span(start, end, n))
            break
        starts = tok.starts(text[start:end])
        k = min(limit, len(starts) - 1)
        while True:
            cut = max(start + starts[k], start + 1)
            s, e = strip_span(text, start, cut)
            m = tok.count(text[s:e])
            if m <= limit or k <= 1:
                break
            k -= 1
        while m > limit and e - s > 1:  # pathological: one "token" re-tokenises long
            cut = e - 1
            s, e = strip_span(text, start, cut)
            m = tok.count(text[s:e])
        if s < e:
            out.append(Span(s, e, m))
        start, end = strip_span(text, cut, end)
    return out


def windows(starts: Sequence[int], size: int, step: int) -> list[tuple[int, int]]:
    """Token-index windows ``[i, i + size)`` every ``step`` tokens, covering all tokens."""
    n = len(starts)
    out = []
    i = 0
    while i < n:
        out.append((i, min(i + size, n)))
        if i + size >= n:
            break
        i += step
    return out
