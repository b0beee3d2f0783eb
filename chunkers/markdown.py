"""``markdown``: one chunk per heading section, heading path in metadata.

A section runs from its heading line to the next heading of a configured level.
Sections longer than the size fall back to the ``recursive`` splitter inside
the section, and every resulting chunk carries the section's heading path.
Headings inside fenced code blocks are not headings. A converted document (PDF,
DOCX, PPTX, HTML) comes with its headings found by its converter, and they are
used instead of scanning the text: a PDF's outline has no ``#`` lines.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ragindex.chunkers.base import Span
from ragindex.chunkers.recursive import RecursiveChunker

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$", re.MULTILINE)


class MarkdownChunker:
    IMPL_VERSION = 1
    TAKES_HEADINGS = True  # chunk(text, headings=...) for converted documents

    def __init__(self, spec, tokenizer) -> None:
        self.levels = set(spec.heading_levels)
        self.fallback = RecursiveChunker(spec, tokenizer)

    def _headings(self, text: str) -> list[tuple[int, int, str]]:
        """(offset, level, title) of each heading line outside code fences."""
        fenced = []
        open_at = None
        opener = ""
        for m in _FENCE.finditer(text):
            marker, rest = m.group(1), m.group(2)
            if open_at is None:
                open_at, opener = m.start(), marker
            elif marker[0] == opener[0] and len(marker) >= len(opener) and not rest.strip():
                # Only a fence of the opening's character, at least as long and
                # with no info string, closes it (CommonMark). Closing on any fence
                # line ended a ``` block at a "~~~" or "```python" line inside it,
                # so "# comments" further down the code were taken as headings.
                fenced.append((open_at, m.end()))
                open_at = None
        if open_at is not None:
            fenced.append((open_at, len(text)))
        out = []
        for m in _HEADING.finditer(text):
            level = len(m.group(1))
            if level in self.levels and not any(a <= m.start() < b for a, b in fenced):
                out.append((m.start(), level, m.group(2).strip()))
        return out

    def chunk(self, text: str, headings=None) -> list[Span]:
        """Sections at the heading lines of ``text``, or at ``headings`` (objects with offset, level and
        title, from a converter) when given."""
        if headings is None:
            heads = self._headings(text)
        else:
            heads = [(h.offset, h.level, h.title) for h in headings if h.level in self.levels]
        bounds = [(0, None, None)] + heads
        out: list[Span] = []
        path: list[tuple[int, str]] = []
        for i, (start, level, title) in enumerate(bounds):
            end = bounds[i + 1][0] if i + 1 < len(bounds) else len(text)
            if level is not None:
                path = [(lv, t) for lv, t in path if lv < level] + [(level, title)]
            heading_path = tuple(t for _, t in path)
            for span in self.fallback.chunk(text, start, end):
                out.append(replace(span, heading_path=heading_path))
        return out
