"""DOCX: the body in document order, headings from paragraph styles, tables as rows.

A Word document states its structure through styles: "Heading N" is a heading
of level N and "Title" one of level 1, whatever the paragraph looks like. The
body is walked element by element, so paragraphs and tables keep their order,
and content controls (``w:sdt``, which wrap a table of contents or a form
section) are opened rather than skipped. Headers, footers, comments and
footnotes are not body text and are left out. A DOCX has no pages: where a page
breaks depends on the renderer.
"""

from __future__ import annotations

import re

import docx
from docx.oxml.ns import qn
from docx.table import Table
from docx.text.paragraph import Paragraph

from ragindex.ingest.convert.base import Converted, Limits, TextBuilder
from ragindex.ingest.convert.office import open_package

NAME = "docx"
VERSION = 1
LIBRARY = "python-docx"
OPTIONS = {"headings": "styles", "tables": "rows"}
SUFFIXES = (".docx",)

_HEADING = re.compile(r"heading (\d)$", re.IGNORECASE)


def convert(data: bytes, limits: Limits) -> Converted:
    document = open_package(data, limits, "DOCX", docx.Document)
    builder = TextBuilder(limits)
    for element in _blocks(document.element.body):
        if element.tag == qn("w:p"):
            _paragraph(Paragraph(element, document), builder)
        else:
            builder.table(_rows(Table(element, document)))
    return builder.build()


def _blocks(container):
    """The paragraphs and tables of ``container`` in document order, looking inside content controls."""
    for child in container.iterchildren():
        if child.tag in (qn("w:p"), qn("w:tbl")):
            yield child
        elif child.tag == qn("w:sdt"):
            content = child.find(qn("w:sdtContent"))
            if content is not None:
                yield from _blocks(content)


def _paragraph(paragraph: Paragraph, builder: TextBuilder) -> None:
    level = heading_level(paragraph.style.name if paragraph.style is not None else "")
    if level:
        builder.heading(level, paragraph.text)
    else:
        builder.paragraph(paragraph.text)


def heading_level(style: str) -> int | None:
    """The heading level a paragraph style names: "Heading N" is N, "Title" is 1, any other style none."""
    if style.lower() == "title":
        return 1
    m = _HEADING.match(style)
    return int(m.group(1)) if m else None


def _rows(table: Table) -> list[list[str]]:
    """Cell text per row. python-docx repeats a cell merged across columns once per column it spans (the same
    object); it is kept once. A cell merged down the rows repeats in each: every row then reads whole."""
    rows = []
    for row in table.rows:
        cells: list = []
        for cell in row.cells:
            if not cells or cell is not cells[-1]:
                cells.append(cell)
        rows.append([cell.text for cell in cells])
    return rows
