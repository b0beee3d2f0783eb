"""PDF: the text layer, page by page, with headings from the document outline.

pdfium reports a page's text as lines (``\\r\\n`` after each) and nothing more: no
blank line between paragraphs, and a line that wraps loses the space it broke at.
So paragraphs are rebuilt from geometry: consecutive lines belong together unless
the vertical gap between them is wider than half a line (or the text jumps up, to
a new column), and the lines of a paragraph are joined with a space, which gives
back the source text where the layout engine wrapped it.

Headings come from the outline (bookmarks), the only structure a PDF states
rather than implies: each entry is looked for in the text of the page it points
to and the next one (a layout engine that pushes a heading onto the next page
often leaves its bookmark at the foot of the page before), and marked where its
title starts; an entry whose title is in neither (drawn as an image, or reworded
in the outline) is marked at the start of its page.

A PDF without any text on any page is a scan: it is skipped with a reason rather
than indexed as an empty document (OCR is not part of this converter).
"""

from __future__ import annotations

import re
import unicodedata

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ragindex.ingest.convert.base import ConversionError, Converted, Limits, TextBuilder

NAME = "pdf"
VERSION = 2  # 2: a line-end hyphen is "-", not U+FFFE
LIBRARY = "pypdfium2"
PARAGRAPH_GAP = 0.5  # a vertical gap wider than this many line heights starts a paragraph
OPTIONS = {"text": "text layer", "paragraph_gap": PARAGRAPH_GAP, "headings": "outline"}
SUFFIXES = (".pdf",)

_LINE = re.compile(r"[^\r\n]+")


def convert(data: bytes, limits: Limits) -> Converted:
    pdf = _open(data)
    try:
        count = len(pdf)
        if count > limits.max_pages:
            raise ConversionError(f"too many pages: {count} > {limits.max_pages} (raise RAGINDEX_MAX_PAGES or split the file)")
        builder = TextBuilder(limits)
        for index in range(count):
            builder.start_page(index + 1)
            for paragraph in _page_paragraphs(pdf, index):
                builder.paragraph(paragraph)
        if not builder.parts:
            raise ConversionError("no text layer: scanned pages need OCR, which is not supported")
        builder.end_page()
        _mark_outline(pdf, builder)
        return builder.build()
    finally:
        pdf.close()


def _open(data: bytes) -> pdfium.PdfDocument:
    """The document, or the reason it cannot be read: pdfium's load error code tells a password from damage."""
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise ConversionError("encrypted: no password") from exc
        if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
            raise ConversionError("encrypted: unsupported security handler") from exc
        raise ConversionError(f"corrupt PDF: {exc}") from exc


def _page_paragraphs(pdf: pdfium.PdfDocument, index: int) -> list[str]:
    """The paragraphs of one page; its page and text objects are closed at once (a long PDF holds no page memory)."""
    page = pdf[index]
    textpage = page.get_textpage()
    try:
        return _paragraphs(textpage)
    finally:
        textpage.close()
        page.close()


def _paragraphs(textpage: pdfium.PdfTextPage) -> list[str]:
    """The page's lines grouped into paragraphs by the gaps between them (a blank line always separates)."""
    # PDFium writes U+FFFE (a noncharacter) for a hyphen it takes for a soft one at a line's end; it is a hyphen.
    text = textpage.get_text_range().replace("\ufffe", "-")
    paragraphs: list[list[str]] = []
    previous, previous_end = None, 0
    for m in _LINE.finditer(text):
        line = m.group().strip()
        if not line:
            continue
        box = _line_box(textpage, m.start() + len(m.group()) - len(m.group().lstrip()))
        blank = text.count("\n", previous_end, m.start()) > 1
        if not paragraphs or blank or starts_paragraph(previous, box):
            paragraphs.append([])
        paragraphs[-1].append(line)
        previous, previous_end = box, m.end()
    return [join_lines(lines) for lines in paragraphs]


def _line_box(textpage: pdfium.PdfTextPage, text_index: int) -> tuple[float, float] | None:
    """(bottom, top) of the line starting at ``text_index``: the loose box of its first character, which spans
    the font's full height, so every line of one font measures the same; None where pdfium has no box."""
    char = pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, text_index)
    if char < 0:
        return None
    try:
        _, bottom, _, top = textpage.get_charbox(char, loose=True)
    except pdfium.PdfiumError:
        return None
    return bottom, top


def starts_paragraph(previous: tuple[float, float] | None, box: tuple[float, float] | None) -> bool:
    """Whether a line starts a new paragraph: a gap above it wider than PARAGRAPH_GAP line heights, or a jump up
    the page (the next column). Without geometry for either line, the lines stay together."""
    if previous is None or box is None:
        return False
    height = min(previous[1] - previous[0], box[1] - box[0])
    gap = previous[0] - box[1]  # PDF y grows upwards: the previous line's bottom minus this line's top
    return gap > PARAGRAPH_GAP * height or gap < -height


def join_lines(lines: list[str]) -> str:
    """Wrapped lines back into one paragraph: a space where the line broke, none after a hyphen (a compound
    split at its hyphen stays whole; a word hyphenated by the layout keeps its hyphen, which search tolerates)."""
    out = lines[0]
    for line in lines[1:]:
        out += line if out.endswith("-") else " " + line
    return out


def _mark_outline(pdf: pdfium.PdfDocument, builder: TextBuilder) -> None:
    """Mark each outline entry in the text of the page it points to or the next (entries without a page are
    left out). A title is looked for after the last one found, then from its page's start: a title repeated on
    a page finds its own line, and an outline out of reading order still finds each."""
    text = builder.text()
    spans = {page.number - 1: (page.start, page.end) for page in builder.pages}
    cursor = 0  # where the last title found ends: entries run in reading order
    for item in pdf.get_toc():
        dest = item.get_dest()
        index = dest.get_index() if dest is not None else None
        if index not in spans:
            continue
        start, end = spans[index][0], spans.get(index + 1, spans[index])[1]
        title = item.get_title()
        found = _find_title(text, title, max(cursor, start), end) or _find_title(text, title, start, end)
        if found is None:
            builder.mark_heading(start, item.level + 1, title)
        else:
            builder.mark_heading(found.start(), item.level + 1, title)
            cursor = found.end()


def _find_title(text: str, title: str, start: int, end: int) -> re.Match | None:
    """``title`` in ``text[start:end]``, ignoring whitespace and case (a wrapped heading lost a space, an
    outline may add one, small capitals come out as capitals)."""
    chars = [re.escape(c) for c in unicodedata.normalize("NFC", title) if not c.isspace()]
    if not chars:
        return None
    return re.compile(r"\s*".join(chars), re.IGNORECASE).search(text, start, end)
