"""What every converter returns: normalised text, and where its pages and headings are.

A converter turns the bytes of one binary or markup file (PDF, DOCX, PPTX, HTML)
into a :class:`Converted`: the document's text, exactly as the chunker will see
it (NFC, LF line endings), plus a :class:`Layout` of character spans into that
text: the pages (1-based, PDF pages and PPTX slides) and the headings with their
levels. Chunk offsets point into the text, so a chunk's page and heading path are
read off the layout by offset, never guessed.

Converters build their text with :class:`TextBuilder`, which normalises each
piece as it is appended and records offsets in the normalised text, so the spans
cannot drift from the text. Headings are written as Markdown heading lines
(``## Title``), so a Markdown reader and the ``markdown`` chunker see the same
structure the layout records.

A file that cannot become a document raises :class:`ConversionError` with the
reason a user reads in the run's skipped list ("encrypted: no password", ...).
"""

from __future__ import annotations

import bisect
import json
import unicodedata
from dataclasses import dataclass, field

from ragindex.ingest.limits import max_doc_bytes, max_pages


class ConversionError(Exception):
    """This file cannot become a document; ``str(exc)`` is the reason shown to the user."""


@dataclass(frozen=True)
class Limits:
    """How much one file may expand to. Past a limit the file is skipped with a reason, never cut."""

    max_pages: int = 1000  # PDF pages or PPTX slides ($RAGINDEX_MAX_PAGES)
    max_chars: int = 32 * 1024 * 1024  # converted text ($RAGINDEX_MAX_DOC_MB, as for text files)
    max_unzipped: int = 512 * 1024 * 1024  # an Office file's members, uncompressed (zip bombs)
    max_ratio: int = 200  # an Office member's uncompressed / compressed size

    @classmethod
    def from_env(cls) -> Limits:
        return cls(max_pages=max_pages(), max_chars=max_doc_bytes())  # validated: SettingsError naming the variable


@dataclass(frozen=True)
class Page:
    number: int  # 1-based
    start: int
    end: int


@dataclass(frozen=True)
class Heading:
    offset: int  # where the heading line starts in the text
    level: int  # 1 = top
    title: str


@dataclass(frozen=True)
class Layout:
    """Pages and headings of a converted text, both sorted by offset."""

    pages: tuple[Page, ...] = ()
    headings: tuple[Heading, ...] = ()

    def page_at(self, offset: int) -> int | None:
        """The page holding character ``offset`` (the last page starting at or before it); None without pages."""
        if not self.pages:
            return None
        i = bisect.bisect_right(self.pages, offset, key=lambda p: p.start) - 1  # no list of starts per call
        return self.pages[max(i, 0)].number

    def heading_path_at(self, offset: int) -> tuple[str, ...]:
        """Titles of the headings enclosing ``offset``, outermost first."""
        path: list[Heading] = []
        for h in self.headings:
            if h.offset > offset:
                break
            path = [p for p in path if p.level < h.level] + [h]
        return tuple(h.title for h in path)

    def to_json(self) -> str:
        return json.dumps({"pages": [[p.number, p.start, p.end] for p in self.pages],
                           "headings": [[h.offset, h.level, h.title] for h in self.headings]},
                          ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str | None) -> Layout:
        if not s:
            return cls()
        d = json.loads(s)
        return cls(tuple(Page(n, a, b) for n, a, b in d.get("pages", ())),
                   tuple(Heading(o, lv, t) for o, lv, t in d.get("headings", ())))


@dataclass(frozen=True)
class Converted:
    text: str
    layout: Layout
    pages: int = 0  # pages (or slides) read; 0 for formats without pages
    tables: int = 0


# Vertical tab and form feed (PDFium's page breaks, PowerPoint's soft line breaks) are line breaks; other
# control characters but tab and newline are dropped: a text layer's STX and ETX are not text.
_CONTROLS = {c: None for c in range(32) if c not in (9, 10)} | {0x0B: "\n", 0x0C: "\n", 0x7F: None, 0xFEFF: None,
                                                                  0xFFFE: None, 0xFFFF: None}  # noncharacters


def _norm(s: str) -> str:
    s = s.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROLS)
    return unicodedata.normalize("NFC", s)


@dataclass
class TextBuilder:
    """Appends blocks (paragraphs, headings, table rows) separated by blank lines, recording spans.

    Offsets are in the final text: every piece is normalised before it is appended.
    """

    limits: Limits = field(default_factory=Limits)
    parts: list[str] = field(default_factory=list)
    size: int = 0
    pages: list[Page] = field(default_factory=list)
    headings: list[Heading] = field(default_factory=list)
    tables: int = 0
    _page: tuple[int, int] | None = None

    def _append(self, s: str) -> int:
        """Append ``s`` as its own block; return its offset."""
        if self.parts:
            self.parts.append("\n\n")
            self.size += 2
        at = self.size
        self.parts.append(s)
        self.size += len(s)
        if self.size > self.limits.max_chars:
            raise ConversionError(f"too large: the converted text exceeds {self.limits.max_chars / 2**20:.0f} MiB "
                                  "(raise RAGINDEX_MAX_DOC_MB or split the file)")
        return at

    def paragraph(self, text: str) -> int | None:
        """A block of body text (inner whitespace runs kept, ends stripped); empty text adds nothing."""
        text = _norm(text).strip()
        if not text:
            return None
        return self._append(text)

    def heading(self, level: int, title: str) -> int | None:
        """A heading line ``#... title`` (level clamped to 1..6); records the heading at its offset."""
        title = " ".join(_norm(title).split())
        if not title:
            return None
        level = min(max(int(level), 1), 6)
        at = self._append("#" * level + " " + title)
        self.headings.append(Heading(at, level, title))
        return at

    def mark_heading(self, offset: int, level: int, title: str) -> None:
        """Record a heading at ``offset`` of text already appended (a PDF outline entry found in its page)."""
        title = " ".join(_norm(title).split())
        if title:
            self.headings.append(Heading(offset, min(max(int(level), 1), 6), title))

    def table(self, rows: list[list[str]]) -> int | None:
        """A table as one block, one line per row, cells joined by `` | ``."""
        lines = [" | ".join(" ".join(_norm(c).split()) for c in row) for row in rows]
        lines = [ln for ln in lines if ln.strip(" |")]
        if not lines:
            return None
        self.tables += 1
        return self._append("\n".join(lines))

    def start_page(self, number: int) -> None:
        if self._page is not None:
            self.end_page()
        if number > self.limits.max_pages:
            raise ConversionError(f"too many pages: more than {self.limits.max_pages} "
                                  "(raise RAGINDEX_MAX_PAGES or split the file)")
        self._page = (number, self.size + (2 if self.parts else 0))

    def end_page(self) -> None:
        if self._page is None:
            return
        number, start = self._page
        self.pages.append(Page(number, min(start, self.size), self.size))
        self._page = None

    def text(self) -> str:
        return "".join(self.parts)

    def build(self) -> Converted:
        self.end_page()
        text = self.text()
        heads = tuple(sorted(self.headings, key=lambda h: h.offset))
        return Converted(text, Layout(tuple(self.pages), heads), pages=len(self.pages), tables=self.tables)
