"""PPTX: one slide, one page; its title a heading, its shapes in reading order, its notes last.

A slide's shapes are stored in z-order (the order they were drawn), which says
nothing about reading order: a text box added last may sit at the top. They are
read top to bottom, then left to right, by their position; a group's shapes are
read the same way inside it. Each shape with text is one paragraph (its own
paragraphs as lines), a table is a table (a merged cell once, not once per cell
it covers), and the speaker notes, often the only
full sentences of a deck, follow as a paragraph starting "Notes: ".
"""

from __future__ import annotations

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE

from ragindex.ingest.convert.base import ConversionError, Converted, Limits, TextBuilder
from ragindex.ingest.convert.office import open_package

NAME = "pptx"
VERSION = 1
LIBRARY = "python-pptx"
OPTIONS = {"order": "top-left", "notes": True}
SUFFIXES = (".pptx",)


def convert(data: bytes, limits: Limits) -> Converted:
    presentation = open_package(data, limits, "PPTX", pptx.Presentation)
    slides = list(presentation.slides)
    if len(slides) > limits.max_pages:
        raise ConversionError(f"too many pages: {len(slides)} slides > {limits.max_pages} "
                              "(raise RAGINDEX_MAX_PAGES or split the file)")
    builder = TextBuilder(limits)
    for number, slide in enumerate(slides, 1):
        builder.start_page(number)
        title = slide.shapes.title
        if title is not None:
            builder.heading(1, title.text_frame.text)
        for shape in reading_order(s for s in slide.shapes if title is None or s.shape_id != title.shape_id):
            _shape(shape, builder)
        notes = _notes(slide)
        if notes:
            builder.paragraph("Notes: " + notes)
    return builder.build()


def reading_order(shapes) -> list:
    """Shapes sorted top to bottom, then left to right (a shape without a position reads first)."""
    return sorted(shapes, key=lambda s: (s.top or 0, s.left or 0))


def _shape(shape, builder: TextBuilder) -> None:
    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        for inner in reading_order(shape.shapes):
            _shape(inner, builder)
    elif shape.has_table:
        builder.table([[cell.text for cell in row.cells if not cell.is_spanned] for row in shape.table.rows])
    elif shape.has_text_frame:
        builder.paragraph(_lines(shape.text_frame.text))


def _notes(slide) -> str:
    if not slide.has_notes_slide:
        return ""
    frame = slide.notes_slide.notes_text_frame
    return _lines(frame.text).strip() if frame is not None else ""


def _lines(text: str) -> str:
    """python-pptx writes a line break inside a paragraph as a vertical tab; it is a line break."""
    return text.replace("\v", "\n")
