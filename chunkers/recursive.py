"""``recursive``: split on a separator hierarchy, merge pieces up to the size.

The algorithm is LangChain's RecursiveCharacterTextSplitter as used by the
chunking study (keep_separator at the start of the next piece, strip whitespace,
token length function), rewritten on offsets so every chunk is an exact slice of
the document. One deliberate difference: the study's merge adds up piece token
counts, which can overshoot the real count of the joined text; here a merged
chunk whose exact count exceeds the size is re-cut (``fit_span``), so the size
is a hard limit.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Iterable

from ragindex.chunkers.base import Span, fit_span, strip_span

Piece = tuple[int, int]  # [start, end) into the document


class RecursiveChunker:
    IMPL_VERSION = 1

    def __init__(self, spec, tokenizer) -> None:
        self.size = spec.size
        self.overlap = spec.overlap
        self.separators = tuple(spec.separators) or ("",)
        self.tok = tokenizer

    def chunk(self, text: str, start: int = 0, end: int | None = None) -> list[Span]:
        """Chunk ``text[start:end]`` (the whole text by default); offsets are into ``text``."""
        end = len(text) if end is None else end
        self._text = text
        self._counts: dict[Piece, int] = {}  # _split counts every piece; _merge needs the same counts again
        self._char_counts: dict[str, int] = {}
        pieces = self._split((start, end), self.separators)
        out: list[Span] = []
        for s, e in pieces:
            out.extend(fit_span(text, s, e, self.size, self.tok))
        if self.overlap:
            # With overlap, a merged piece that fit_span re-cuts (its exact count
            # exceeded the summed estimate) can end with a span that starts after
            # the next piece, which begins inside it: restore start order. Without
            # overlap pieces are disjoint and already in order.
            out.sort(key=lambda sp: (sp.start, sp.end))
        return out

    def _len(self, p: Piece) -> int:
        if p[1] - p[0] == 1:  # a single character costs the same wherever it is: count it once per character
            c = self._text[p[0]]
            n = self._char_counts.get(c)
            if n is None:
                n = self._char_counts[c] = self.tok.count(c)
            return n
        n = self._counts.get(p)
        if n is None:
            n = self._counts[p] = self.tok.count(self._text[p[0] : p[1]])
        return n

    def _split(self, piece: Piece, separators: tuple[str, ...]) -> list[Piece]:
        text = self._text[piece[0] : piece[1]]
        separator, rest = separators[-1], ()
        for i, sep in enumerate(separators):
            if sep == "":
                separator = sep
                break
            if sep in text:
                separator, rest = sep, separators[i + 1 :]
                break
        if separator == "":
            # The last resort splits into single characters; each is below the size, so they
            # all merge. Stream them instead of materialising a piece per character: a long
            # run without any separator (a minified file, a base64 blob) stays linear in time
            # and constant in memory per character.
            return self._merge((piece[0] + i, piece[0] + i + 1) for i in range(len(text)))
        splits = _split_keep_start(piece, text, separator)
        final: list[Piece] = []
        good: list[Piece] = []
        for sp in splits:
            if self._len(sp) < self.size:
                good.append(sp)
                continue
            if good:
                final.extend(self._merge(good))
                good = []
            if not rest:
                final.append(sp)
            else:
                final.extend(self._split(sp, rest))
        if good:
            final.extend(self._merge(good))
        return final

    def _merge(self, splits: Iterable[Piece]) -> list[Piece]:
        # keep_separator joins with "", so the separator costs no tokens and a
        # merged chunk is simply [first.start, last.end).
        docs: list[Piece] = []
        current: deque[tuple[Piece, int]] = deque()
        total = 0
        for sp in splits:
            n = self._len(sp)
            if total + n > self.size and current:
                docs.append(self._join(current))
                # `not self.overlap`: pieces that count 0 tokens (MiniLM drops NUL,
                # combining marks, zero-width characters) keep `total` at 0, so the
                # LangChain condition alone would carry them into the next chunk and
                # make chunks of an overlap-0 schema overlap.
                while current and (total > self.overlap or total + n > self.size or not self.overlap):
                    total -= current.popleft()[1]
            current.append((sp, n))
            total += n
        if current:
            docs.append(self._join(current))
        return [d for d in docs if d[0] < d[1]]

    def _join(self, current: deque[tuple[Piece, int]]) -> Piece:
        return strip_span(self._text, current[0][0][0], current[-1][0][1])


def _split_keep_start(piece: Piece, text: str, separator: str) -> list[Piece]:
    """Split keeping each separator at the start of the piece after it; drop empty pieces."""
    base = piece[0]
    if separator == "":
        return [(base + i, base + i + 1) for i in range(len(text))]
    cuts = [m.start() for m in re.finditer(re.escape(separator), text)]
    bounds = [0] + [c for c in cuts if c > 0] + [len(text)]
    return [(base + a, base + b) for a, b in zip(bounds, bounds[1:]) if a < b]
