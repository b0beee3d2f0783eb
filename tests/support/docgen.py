"""Real PDF, DOCX, PPTX and HTML files with known content, for the converter tests.

Each ``make_*`` writes a file with the library a user's tools would have used
(fpdf2, python-docx, python-pptx, or plain markup) from the chroma corpora text
(:mod:`tests.support.data`), and returns the :class:`Truth` it was made from:
the text on each page, the headings with their levels, and the heading path
that encloses each body paragraph. The bad files (encrypted, corrupt, scanned,
zip bomb, too many pages, an unknown encoding) are written the same way, as a
user would meet them. The same content on every run, and fast: the largest
file, the default-limit zip bomb, is a 600 MiB stream of zeros compressed in
about a second to under 3 MB.
"""

from __future__ import annotations

import io
import random
import zipfile
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import docx
from docx.oxml import OxmlElement
from fpdf import FPDF
from PIL import Image
from pptx import Presentation
from pptx.util import Inches

from tests.support.data import passages

PROSE = ("pubmed", "state_of_the_union", "wikitexts")  # corpora of running text (chatlogs and finance are records)
LEVELS = (1, 2, 3, 2, 1, 2)  # the nesting of the sample sections: every move a heading outline allows
# Punctuation a core PDF font (latin-1) lacks, as a writer would have typed it.
LATIN1 = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                        "\u2212": "-", "\u2009": " ", "\u2032": "'"})
MIB = 1024 * 1024


@dataclass(frozen=True)
class Section:
    """A heading and the paragraphs under it."""

    level: int
    title: str
    paragraphs: tuple[str, ...]
    bookmark: str | None = None  # a PDF outline entry worded otherwise than the heading drawn (None: the same)


@dataclass(frozen=True)
class Slide:
    title: str | None
    body: tuple[str, ...]  # the body placeholder's paragraphs (one shape: they come out as its lines)
    notes: str = ""
    box: str = ""  # a text box drawn last but placed above the body: read before it
    table: tuple[tuple[str, ...], ...] = ()
    group: tuple[str, ...] = ()  # text boxes grouped in one row below the body, drawn right to left


@dataclass
class Truth:
    """What a generated file holds, as its converter should give it back."""

    path: Path
    blocks: list[str] = field(default_factory=list)  # headings' titles, paragraphs, table rows, in order
    pages: list[str] = field(default_factory=list)  # PDF pages / PPTX slides: their blocks, "\n\n"-joined
    headings: list[tuple[int, str, int | None]] = field(default_factory=list)  # (level, title, page)
    paths: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (body paragraph, its heading path)
    table_lines: list[str] = field(default_factory=list)  # rows as "a | b | c"
    notes: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # text in the file that must not come out

    @property
    def text(self) -> str:
        return "\n\n".join(self.blocks)

    @property
    def paragraphs(self) -> list[str]:
        return [p for p, _ in self.paths]


def clean(text: str, latin1: bool = False) -> str:
    """Text as the fixtures write it: one line, no angle brackets (wikitext's ``<unk>``: a converter's output
    must hold no ``<``), and for a core PDF font, latin-1 only."""
    text = text.replace("<", "").replace(">", "")
    if latin1:
        text = text.translate(LATIN1).encode("latin-1", errors="ignore").decode("latin-1")
    return " ".join(text.split())


def _cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a sentence end, else at a space."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    stop = max(head.rfind(". "), head.rfind("? "), head.rfind("! "))
    return head[: stop + 1] if stop > limit // 3 else head.rsplit(" ", 1)[0]


def sample_sections(n: int = len(LEVELS), latin1: bool = False, chars: int = 500) -> list[Section]:
    """``n`` sections from the prose passages (not an article's front matter): nested as LEVELS, titled by
    the passage's title (cut short), with its first two paragraphs (each cut to ``chars``)."""
    out = []
    for p in (q for q in passages(60) if q.corpus in PROSE and "PMID" not in q.title):
        if len(out) == n:
            break
        paras = [_cut(clean(x, latin1), chars) for x in p.text.split("\n\n")]
        paras = [x for x in paras if len(x) > 80][:2]
        if paras:
            out.append(Section(LEVELS[len(out) % len(LEVELS)], _cut(clean(p.title, latin1), 70), tuple(paras)))
    return out


def _paths(items: list[Section | str]) -> list[tuple[str, tuple[str, ...]]]:
    """The heading path over each paragraph; a bare string continues the section before it."""
    stack: list[Section] = []
    out = []
    for item in items:
        paras = (item,) if isinstance(item, str) else item.paragraphs
        if isinstance(item, Section):
            stack = [s for s in stack if s.level < item.level] + [item]
        out += [(p, tuple(s.bookmark or s.title for s in stack)) for p in paras]
    return out


def _blocks(item: Section | str) -> list[str]:
    return [item] if isinstance(item, str) else [item.title, *item.paragraphs]


# -- PDF ------------------------------------------------------------------------------------------------------


def sample_pages() -> list[list[Section | str]]:
    """Four pages: two sections on the first, a page that only continues a section, nested levels throughout."""
    s = sample_sections(latin1=True)
    extra = _cut(clean([p for p in passages(80) if p.corpus in PROSE][-1].text, latin1=True), 700)
    return [[s[0], s[1]], [s[2], s[3]], [extra], [s[4], s[5]]]


def _pdf() -> FPDF:
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)  # each page holds exactly what the truth says; overflow is checked instead
    pdf.set_margins(20, 20, 20)
    return pdf


def make_pdf(path: Path, pages: list[list[Section | str]] | None = None, outline: bool = True,
             early_bookmarks: bool = False) -> Truth:
    """A PDF with one list of sections (or continuing paragraphs) per page; with ``outline``, each heading is a
    bookmark too (fpdf2's start_section), which is what a converter reads headings from. With
    ``early_bookmarks``, a heading that opens a page has its bookmark at the foot of the page before, as a
    layout engine leaves it when it pushes the heading over."""
    pages = sample_pages() if pages is None else pages
    pdf = _pdf()
    truth = Truth(path)
    for number, items in enumerate(pages, 1):
        early = outline and early_bookmarks and number > 1 and isinstance(items[0], Section)
        if early:
            pdf.start_section(items[0].bookmark or items[0].title, items[0].level - 1)
        pdf.add_page()
        for k, item in enumerate(items):
            if isinstance(item, Section):
                if outline and not (early and k == 0):
                    pdf.start_section(item.bookmark or item.title, item.level - 1)
                pdf.set_font("Helvetica", "B", 16 - 2 * item.level)
                pdf.multi_cell(0, 8, item.title, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(3)
                truth.headings.append((item.level, item.bookmark or item.title, number))
            pdf.set_font("Helvetica", "", 11)
            for para in (item,) if isinstance(item, str) else item.paragraphs:
                pdf.multi_cell(0, 5.5, para, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(4)
        if pdf.get_y() > pdf.h - pdf.b_margin:
            raise ValueError(f"page {number} overflows: give it less text")
        truth.pages.append("\n\n".join(b for item in items for b in _blocks(item)))
    truth.blocks = [b for items in pages for item in items for b in _blocks(item)]
    truth.paths = _paths([item for items in pages for item in items])
    path.write_bytes(bytes(pdf.output()))
    return truth


def encrypted_pdf(path: Path) -> Path:
    """A PDF that opens only with the user password "secret"."""
    pdf = _pdf()
    pdf.add_page()
    pdf.set_font("Helvetica", "", 11)
    pdf.multi_cell(0, 5.5, "A confidential page.")
    pdf.set_encryption(owner_password="owner", user_password="secret")
    path.write_bytes(bytes(pdf.output()))
    return path


def corrupt_pdf(path: Path) -> Path:
    """The first third of a real PDF, as an interrupted download leaves it."""
    make_pdf(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def scanned_pdf(path: Path, pages: int = 2) -> Path:
    """Pages that only hold a picture and drawn shapes: what a scanner without OCR writes."""
    pdf = _pdf()
    for k in range(pages):
        pdf.add_page()
        pdf.image(Image.new("L", (200, 260), color=200 - 40 * k), x=20, y=20, w=170)
        pdf.rect(20, 250, 170, 20, style="F")
    path.write_bytes(bytes(pdf.output()))
    return path


def big_pdf(path: Path, pages: int = 2000) -> Path:
    """A PDF of ``pages`` pages, one short line each."""
    pdf = _pdf()
    pdf.set_font("Helvetica", "", 11)
    for k in range(pages):
        pdf.add_page()
        pdf.cell(text=f"Page {k + 1}.")
    path.write_bytes(bytes(pdf.output()))
    return path


# -- DOCX -----------------------------------------------------------------------------------------------------


def sample_table() -> list[list[str]]:
    """A header and one row per prose passage: its id, its title's first words, its length."""
    rows = [["Passage", "Opening words", "Characters"]]
    for p in [q for q in passages(30) if q.corpus in PROSE][:4]:
        rows.append([p.id, " ".join(clean(p.title).split()[:5]), str(len(p.text))])
    return rows


def make_docx(path: Path, sections: list[Section] | None = None, title: str = "Collected passages") -> Truth:
    """A DOCX: a Title, headings of each level, paragraphs, after the second section a table whose last row has
    two cells merged (the converter keeps that cell once), and the last section's paragraphs inside a content
    control (``w:sdt``, as a form or a template leaves them)."""
    sections = sample_sections() if sections is None else sections
    table = sample_table()
    document = docx.Document()
    document.add_heading(title, 0)
    truth = Truth(path, blocks=[title], headings=[(1, title, None)])
    for k, s in enumerate(sections):
        document.add_heading(s.title, s.level)
        truth.headings.append((s.level, s.title, None))
        for para in s.paragraphs:
            document.add_paragraph(para)
        truth.blocks += _blocks(s)
        if k == 1:
            grid = document.add_table(rows=len(table) + 1, cols=len(table[0]))
            for r, row in enumerate(table):
                for c, cell in enumerate(row):
                    grid.cell(r, c).text = cell
            merged = grid.cell(len(table), 0).merge(grid.cell(len(table), 1))
            merged.text = "All passages"
            grid.cell(len(table), 2).text = str(sum(int(row[2]) for row in table[1:]))
            truth.table_lines = [" | ".join(row) for row in table] + [f"All passages | {grid.cell(len(table), 2).text}"]
            truth.blocks += truth.table_lines
    _content_control(document.paragraphs[-len(sections[-1].paragraphs):])
    truth.paths = _paths([Section(1, title, ()), *sections])
    document.save(path)
    return truth


def _content_control(paragraphs) -> None:
    """Move ``paragraphs`` (consecutive) into a content control at their place."""
    sdt, content = OxmlElement("w:sdt"), OxmlElement("w:sdtContent")
    sdt.append(content)
    paragraphs[0]._p.addprevious(sdt)
    for p in paragraphs:
        content.append(p._p)


def corrupt_docx(path: Path, how: str = "truncated") -> Path:
    """A DOCX cut short ("truncated": no longer a zip), or a valid zip without a Word document ("not-word")."""
    if how == "truncated":
        make_docx(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("readme.txt", "This archive was renamed to .docx by mistake.")
    return path


def zip_bomb_docx(path: Path, expand_mib: int = 600) -> Path:
    """A zip named .docx whose document part is ``expand_mib`` MiB of zeros (about 1/230 of it on disk),
    streamed in 1 MiB chunks so neither memory nor time grows with the expansion."""
    chunk = bytes(MIB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        with zf.open("word/document.xml", "w", force_zip64=True) as member:
            for _ in range(expand_mib):
                member.write(chunk)
    return path


# -- PPTX -----------------------------------------------------------------------------------------------------


def sample_slides() -> list[Slide]:
    """Four slides: one with a text box placed above its body, one with a table, one with a group of text
    boxes, one without a title."""
    s = sample_sections(5, chars=300)
    table = tuple(tuple(row) for row in sample_table()[:3])
    return [Slide(s[0].title, s[0].paragraphs, notes=f"Next comes: {s[1].title}", box=s[3].paragraphs[0]),
            Slide(s[1].title, s[1].paragraphs, notes="Point at the table.", table=table),
            Slide(s[2].title, s[2].paragraphs, group=("Left label of the figure", "Right label of the figure")),
            Slide(None, s[4].paragraphs, notes="A slide without a title.")]


def make_pptx(path: Path, slides: list[Slide] | None = None) -> Truth:
    """A PPTX, one slide per :class:`Slide` ("Title and Content", or "Blank" without a title)."""
    slides = sample_slides() if slides is None else slides
    deck = Presentation()
    truth = Truth(path)
    path_now: tuple[str, ...] = ()
    for number, spec in enumerate(slides, 1):
        slide = deck.slides.add_slide(deck.slide_layouts[1 if spec.title else 6])
        blocks = []
        if spec.title:
            slide.shapes.title.text = spec.title
            truth.headings.append((1, spec.title, number))
            blocks.append(spec.title)
            path_now = (spec.title,)
        if spec.box:  # drawn after the body, placed above it
            slide.shapes.add_textbox(Inches(0.5), Inches(1.2), Inches(9), Inches(0.4)).text_frame.text = spec.box
            blocks.append(spec.box)
            truth.paths.append((spec.box, path_now))
        body = "\n".join(spec.body)
        if spec.title:
            slide.placeholders[1].text_frame.text = body
        else:
            slide.shapes.add_textbox(Inches(0.5), Inches(1.8), Inches(9), Inches(3)).text_frame.text = body
        blocks.append(body)
        truth.paths.append((body, path_now))
        if spec.group:
            group = slide.shapes.add_group_shape()
            for k in reversed(range(len(spec.group))):
                box = group.shapes.add_textbox(Inches(0.5 + 4.5 * k), Inches(5.8), Inches(4), Inches(0.5))
                box.text_frame.text = spec.group[k]
            blocks += spec.group
            truth.paths += [(text, path_now) for text in spec.group]
        if spec.table:
            grid = slide.shapes.add_table(len(spec.table), len(spec.table[0]), Inches(0.5), Inches(5.6),
                                          Inches(9), Inches(1.2)).table
            for r, row in enumerate(spec.table):
                for c, cell in enumerate(row):
                    grid.cell(r, c).text = cell
            lines = [" | ".join(row) for row in spec.table]
            truth.table_lines += lines
            blocks.append("\n".join(lines))
        if spec.notes:
            slide.notes_slide.notes_text_frame.text = spec.notes
            truth.notes.append(spec.notes)
            blocks.append("Notes: " + spec.notes)
        truth.pages.append("\n\n".join(blocks))
        truth.blocks += blocks
    deck.save(path)
    return truth


# -- HTML -----------------------------------------------------------------------------------------------------

CHROME = {  # page furniture around the content, each with text that must not come out
    "header": "<header><div class='brand'>Quarterly Review Online</div></header>",
    "nav": "<nav><ul><li><a href='/'>Front page</a></li><li><a href='/archive'>Back issues archive</a></li></ul></nav>",
    "aside": "<aside><h3>Related reading</h3><p>Subscribe for weekly digests</p></aside>",
    "footer": "<footer><p>Copyright Quarterly Review, all rights reserved</p></footer>",
    "script": "<script>window.trackingPixelLoaded = true; console.log('analytics ready');</script>",
    "style": "<style>.content-column { max-width: 40em; }</style>",
    "form": "<form><label>Search the review</label><input name='q'></form>",
}
INNER = (  # furniture inside the content itself: breadcrumbs, an inline widget, a share box, a comment template
    "<nav class='crumbs'><a href='/'>Home</a> / <a href='/reports'>Reports index</a></nav>",
    "<script>document.write('inline widget loading');</script><noscript>Enable JavaScript to comment</noscript>",
    "<aside><p>Share this article with colleagues</p></aside><template><p>Comment template body</p></template>",
)
HIDDEN = ["Quarterly Review", "Front page", "Back issues archive", "Related reading", "Subscribe for weekly digests",
          "trackingPixelLoaded", "analytics ready", "max-width", "Search the review", "A page title nobody reads",
          "Reports index", "inline widget loading", "Enable JavaScript", "Share this article", "Comment template"]


def _marked_up(text: str, k: int) -> str:
    """A paragraph's HTML: some words inside inline elements and the source wrapped over lines, which a
    converter must read back as the same text."""
    words = [escape(w) for w in text.split()]
    tags = ("em", "b", "code", "span")
    for i in range(2 + k % 3, len(words), 7):
        tag = tags[i % len(tags)]
        words[i] = f"<{tag}>{words[i]}</{tag}>" if i % 2 else f'<a href="#w{i}">{words[i]}</a>'
    lines = [" ".join(words[i: i + 9]) for i in range(0, len(words), 9)]
    return "\n      ".join(lines)


def make_html(path: Path, sections: list[Section] | None = None, with_nav: bool = True, wrap: str = "main",
              charset: str = "utf-8", declare: str | None = "utf-8") -> Truth:
    """An HTML page: headings h1 to h3, paragraphs as <p>, as bare text in a <div> and as list items, a table;
    with ``with_nav``, a header, nav, aside, footer, form, script and style around it and some inside it
    (listed in ``hidden``).
    ``wrap`` puts the content in a <main>, an <article> or straight in the <body>; the page is encoded in
    ``charset`` and declares ``declare`` in a <meta> (none when None)."""
    sections = sample_sections() if sections is None else sections
    table = sample_table()[:3]
    body, truth = [], Truth(path, hidden=list(HIDDEN) if with_nav else [])
    for k, s in enumerate(sections):
        body.append(f"<h{s.level}>{escape(s.title)}</h{s.level}>")
        truth.headings.append((s.level, s.title, None))
        for j, para in enumerate(s.paragraphs):
            html = _marked_up(para, k + j)
            body.append((f"<p>{html}</p>", f"<div class='lead'>\n      {html}\n    </div>",
                         f"<ul><li>{html}</li></ul>")[(k + j) % 3])
        truth.blocks += _blocks(s)
        if with_nav and k < len(INNER):
            body.append(INNER[k])
        if k == 2:
            rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in table)
            body.append(f"<table><tbody>{rows}</tbody></table>")
            truth.table_lines = [" | ".join(row) for row in table]
            truth.blocks += truth.table_lines
    truth.paths = _paths(list(sections))
    content = "\n    ".join(body)
    if wrap != "body":
        content = f"<{wrap}>\n    {content}\n  </{wrap}>"
    chrome = CHROME if with_nav else {}
    meta = f'<meta charset="{declare}">' if declare else ""
    page = (f"<!DOCTYPE html>\n<html lang='en'><head>{meta}<title>A page title nobody reads</title>"
            f"{chrome.get('style', '')}{chrome.get('script', '')}</head>\n<body>\n  "
            + "".join(chrome.get(k, "") for k in ("header", "nav", "form"))
            + f"\n  {content}\n  " + "".join(chrome.get(k, "") for k in ("aside", "footer", "script")) + "\n</body></html>\n")
    path.write_bytes(page.encode(charset, errors="replace"))
    return truth


def html_unknown_encoding(path: Path, label: str = "x-mac-klingon") -> Path:
    """A page declaring a charset Python has no codec for."""
    path.write_bytes(f'<html><head><meta charset="{label}"></head><body><p>Qapla\'</p></body></html>'.encode())
    return path


def html_undecodable(path: Path) -> Path:
    """Bytes that are not UTF-8, declare nothing, and are no encoding charset-normalizer can name."""
    rng = random.Random(7)
    path.write_bytes(bytes(rng.randrange(128, 256) for _ in range(2000)))
    return path


def binary_html(path: Path) -> Path:
    """An image saved under a .html name."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), color=(20, 120, 200)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return path
