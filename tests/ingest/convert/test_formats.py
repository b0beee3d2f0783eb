"""Each converter against real files with known content (tests/support/docgen.py): text, pages, headings, tables,
and a clear reason for every file that cannot become a document."""

from __future__ import annotations

import codecs
import difflib
import json
import re
import time
from importlib import metadata

import pytest
from fpdf import FPDF

from ragindex.ingest.convert import CONVERTERS, ConversionError, Converted, Limits, converter_for, fingerprint
from ragindex.ingest.convert import pdf as pdf_converter
from tests.support import docgen
from tests.support.docgen import Section

MIB = 1024 * 1024
DEFAULT = Limits()


def convert(path, limits: Limits = DEFAULT) -> Converted:
    return converter_for(path.suffix).convert(path.read_bytes(), limits)


def collapse(text: str) -> str:
    return " ".join(text.split())


def offset_of(text: str, snippet: str) -> int:
    """Where ``snippet`` starts in ``text``, whitespace-insensitively (its first dozen words are enough)."""
    words = snippet.split()[:12]
    m = re.search(r"\s+".join(map(re.escape, words)), text)
    assert m, f"not in the converted text: {snippet[:80]!r}"
    return m.start()


def rejects(path, reason: str, limits: Limits = DEFAULT) -> str:
    with pytest.raises(ConversionError) as info:
        convert(path, limits)
    assert str(info.value).startswith(reason), str(info.value)
    return str(info.value)


def assert_heading_paths(got: Converted, truth: docgen.Truth) -> None:
    assert truth.paths and any(len(path) > 2 for _, path in truth.paths)  # the fixture nests, so the check can fail
    for para, path in truth.paths:
        assert got.layout.heading_path_at(offset_of(got.text, para)) == path, para[:60]


def assert_in_order(got: Converted, truth: docgen.Truth) -> None:
    offsets = [offset_of(got.text, block) for block in truth.blocks]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def assert_pages(got: Converted, truth: docgen.Truth) -> None:
    """Pages 1..N, each span holding exactly its own page's text."""
    assert [p.number for p in got.layout.pages] == list(range(1, len(truth.pages) + 1)) and got.pages == len(truth.pages)
    spans = [collapse(got.text[p.start:p.end]) for p in got.layout.pages]
    for k, page in enumerate(truth.pages):
        assert collapse(page) in spans[k], f"page {k + 1}"
        assert not any(collapse(page) in span for j, span in enumerate(spans) if j != k), f"page {k + 1} elsewhere"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One generated file per format and its truth (generated once: the tests only read them)."""
    d = tmp_path_factory.mktemp("docs")
    return {"pdf": docgen.make_pdf(d / "report.pdf"), "docx": docgen.make_docx(d / "report.docx"),
            "pptx": docgen.make_pptx(d / "deck.pptx"), "html": docgen.make_html(d / "page.html")}


# -- the module contract --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", sorted(CONVERTERS))
def test_each_converter_module_states_its_identity(suffix):
    mod = converter_for(suffix)
    assert mod.NAME == mod.__name__.rsplit(".", 1)[1] and isinstance(mod.VERSION, int) and mod.VERSION >= 1 and suffix in mod.SUFFIXES
    assert metadata.version(mod.LIBRARY)  # the distribution the fingerprint names is installed
    json.dumps(mod.OPTIONS)
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint(suffix))


@pytest.mark.parametrize("kind", ["pdf", "docx", "pptx", "html"])
def test_the_same_bytes_convert_to_the_same_text_and_layout(files, kind):
    first, second = convert(files[kind].path), convert(files[kind].path)
    assert first.text and first.text == second.text and first.layout.to_json() == second.layout.to_json()
    assert first.layout.headings and first.tables == second.tables


# -- PDF ------------------------------------------------------------------------------------------------------


def test_pdf_text_is_the_source_text(files):
    truth = files["pdf"]
    got = convert(truth.path)
    ratio = difflib.SequenceMatcher(None, collapse(got.text), collapse(truth.text), autojunk=False).ratio()
    assert ratio >= 0.98, ratio
    blocks = got.text.split("\n\n")  # paragraphs rebuilt from line gaps, wrapped lines joined with their space
    assert all(para in blocks for para in truth.paragraphs)
    assert_in_order(got, truth)


def test_pdf_pages_hold_their_own_text(files):
    assert_pages(convert(files["pdf"].path), files["pdf"])


def test_pdf_outline_gives_nested_heading_paths(files):
    truth = files["pdf"]
    got = convert(truth.path)
    assert [(h.level, h.title) for h in got.layout.headings] == [(lv, t) for lv, t, _ in truth.headings]
    for h, (_, title, page) in zip(got.layout.headings, truth.headings, strict=True):
        assert got.text.startswith(title, h.offset) and got.layout.page_at(h.offset) == page
    assert_heading_paths(got, truth)


def test_pdf_without_an_outline_has_the_text_and_no_headings(tmp_path, files):
    got = convert(docgen.make_pdf(tmp_path / "plain.pdf", outline=False).path)
    assert got.layout.headings == () and got.text == convert(files["pdf"].path).text


def test_a_bookmark_left_on_the_page_before_its_heading_still_finds_it(tmp_path):
    truth = docgen.make_pdf(tmp_path / "early.pdf", early_bookmarks=True)
    got = convert(truth.path)
    for h, (_, title, page) in zip(got.layout.headings, truth.headings, strict=True):
        assert got.text.startswith(title, h.offset) and got.layout.page_at(h.offset) == page
    assert_heading_paths(got, truth)


def test_an_outline_entry_not_in_its_page_text_is_marked_at_the_page_start(tmp_path):
    pages = docgen.sample_pages()
    first = pages[1][0]
    pages[1][0] = Section(first.level, first.title, first.paragraphs, bookmark="Chapter two, drawn as an image")
    got = convert(docgen.make_pdf(tmp_path / "renamed.pdf", pages).path)
    marked = next(h for h in got.layout.headings if h.title == "Chapter two, drawn as an image")
    assert marked.offset == got.layout.pages[1].start


def test_wrapped_pdf_lines_join_with_the_space_they_broke_at():
    assert pdf_converter.join_lines(["the price", "of it"]) == "the price of it"
    assert pdf_converter.join_lines(["a price-", "determining factor"]) == "a price-determining factor"


def test_a_paragraph_starts_at_a_gap_wider_than_half_a_line_or_a_jump_up_the_page():
    line = (700.0, 712.0)  # (bottom, top) of a 12-point line; the next one 14 points lower
    assert not pdf_converter.starts_paragraph(line, (686.0, 698.0))
    assert pdf_converter.starts_paragraph(line, (678.0, 690.0))  # 10 points of white between them
    assert pdf_converter.starts_paragraph(line, (750.0, 762.0))  # the top of the next column
    assert not pdf_converter.starts_paragraph(None, line)


def test_an_encrypted_pdf_says_it_needs_a_password(tmp_path):
    assert rejects(docgen.encrypted_pdf(tmp_path / "locked.pdf"), "encrypted: no password") == "encrypted: no password"


def test_a_corrupt_pdf_is_named_corrupt(tmp_path):
    rejects(docgen.corrupt_pdf(tmp_path / "cut.pdf"), "corrupt PDF")
    (tmp_path / "notes.pdf").write_text("meeting notes, saved with the wrong name")
    rejects(tmp_path / "notes.pdf", "corrupt PDF")


def test_a_scanned_pdf_says_it_has_no_text_layer(tmp_path):
    rejects(docgen.scanned_pdf(tmp_path / "scan.pdf"), "no text layer")


def test_too_many_pages_is_refused_before_any_text_is_read(tmp_path, monkeypatch):
    path = docgen.big_pdf(tmp_path / "big.pdf")
    monkeypatch.setattr(pdf_converter, "_page_paragraphs", lambda *a: pytest.fail("read a page of a refused file"))
    start = time.perf_counter()
    assert "2000 > 1000" in rejects(path, "too many pages")
    assert time.perf_counter() - start < 5


def test_pdf_limits_on_pages_and_text_are_skip_reasons(files):
    rejects(files["pdf"].path, "too many pages", Limits(max_pages=3))
    rejects(files["pdf"].path, "too large", Limits(max_chars=1000))


# -- DOCX -----------------------------------------------------------------------------------------------------


def test_docx_headings_come_from_styles_as_markdown_lines(files):
    truth = files["docx"]
    got = convert(truth.path)
    assert [(h.level, h.title) for h in got.layout.headings] == [(lv, t) for lv, t, _ in truth.headings]
    for h in got.layout.headings:
        assert got.text.startswith("#" * h.level + " " + h.title, h.offset)
    assert all(para in got.text.split("\n\n") for para in truth.paragraphs)
    assert got.layout.pages == () and got.pages == 0
    assert_heading_paths(got, truth)


def test_docx_body_keeps_document_order_with_tables_as_rows(files):
    truth = files["docx"]
    got = convert(truth.path)
    assert_in_order(got, truth)
    assert "\n".join(truth.table_lines) in got.text.split("\n\n") and got.tables == 1
    assert truth.table_lines[-1].startswith("All passages | ")  # the merged cell, once


def test_a_corrupt_docx_is_named_corrupt(tmp_path):
    assert "not a zip" in rejects(docgen.corrupt_docx(tmp_path / "cut.docx"), "corrupt DOCX")
    rejects(docgen.corrupt_docx(tmp_path / "other.docx", how="not-word"), "corrupt DOCX")
    (tmp_path / "old.docx").write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") + bytes(512))  # a legacy .doc renamed
    rejects(tmp_path / "old.docx", "corrupt DOCX: an OLE compound file")


def test_a_zip_bomb_is_refused_without_expanding_it(tmp_path):
    start = time.perf_counter()
    big = docgen.zip_bomb_docx(tmp_path / "bomb.docx")  # 600 MiB of zeros: over the default 512 MiB
    assert big.stat().st_size < 4 * MIB
    assert "expand to 600 MiB" in rejects(big, "zip bomb")
    small = docgen.zip_bomb_docx(tmp_path / "small.docx", expand_mib=5)  # under the total, but 5 MiB from ~20 KiB
    assert "word/document.xml expands to 5 MiB" in rejects(small, "zip bomb")
    assert time.perf_counter() - start < 15


def test_the_zip_limits_come_from_the_limits(files):
    rejects(files["docx"].path, "zip bomb", Limits(max_unzipped=1000))
    assert convert(files["docx"].path, Limits(max_unzipped=10 * MIB)).text  # a real document is far from either limit


# -- PPTX -----------------------------------------------------------------------------------------------------


def test_pptx_slides_are_pages_with_their_titles_as_headings(files):
    truth = files["pptx"]
    got = convert(truth.path)
    assert_pages(got, truth)
    assert [(h.level, h.title, got.layout.page_at(h.offset)) for h in got.layout.headings] == truth.headings
    for para, path in truth.paths:  # a slide without a title stays under the title before it
        assert got.layout.heading_path_at(offset_of(got.text, para)) == path


def test_pptx_shapes_read_top_to_bottom_then_tables_then_notes(files):
    truth = files["pptx"]
    got = convert(truth.path)
    assert_in_order(got, truth)  # the text box drawn last but placed above the body reads first
    assert "\n".join(truth.table_lines) in got.text.split("\n\n") and got.tables == 1
    for k, notes in enumerate(truth.notes):
        assert got.layout.page_at(offset_of(got.text, "Notes: " + notes)) == [1, 2, 4][k]
        assert "Notes: " + notes in got.text.split("\n\n")


def test_pptx_bad_files_are_refused(tmp_path, files):
    rejects(files["pptx"].path, "too many pages: 4 slides > 3", Limits(max_pages=3))
    (tmp_path / "a.pptx").write_bytes(files["docx"].path.read_bytes())  # a Word file renamed
    rejects(tmp_path / "a.pptx", "corrupt PPTX")
    (tmp_path / "b.pptx").write_bytes(docgen.corrupt_docx(tmp_path / "b.docx").read_bytes())
    rejects(tmp_path / "b.pptx", "corrupt PPTX: not a zip")
    (tmp_path / "c.pptx").write_bytes(docgen.zip_bomb_docx(tmp_path / "c.docx", expand_mib=5).read_bytes())
    rejects(tmp_path / "c.pptx", "zip bomb")


# -- HTML -----------------------------------------------------------------------------------------------------


def test_html_gives_the_content_without_markup_or_page_furniture(files):
    truth = files["html"]
    got = convert(truth.path)
    assert "<" not in got.text and got.layout.pages == ()
    assert truth.hidden and not [h for h in truth.hidden if h in got.text]
    blocks = got.text.split("\n\n")
    assert all(para in blocks for para in truth.paragraphs)  # inline elements and source line breaks undone
    assert "\n".join(truth.table_lines) in blocks
    assert_in_order(got, truth)


def test_html_headings_nest(files):
    truth = files["html"]
    got = convert(truth.path)
    assert [(h.level, h.title) for h in got.layout.headings] == [(lv, t) for lv, t, _ in truth.headings]
    assert_heading_paths(got, truth)


@pytest.mark.parametrize("wrap", ["article", "body"])
def test_html_content_is_found_in_an_article_or_the_body(tmp_path, files, wrap):
    got = convert(docgen.make_html(tmp_path / "p.html", wrap=wrap).path)
    assert got.text == convert(files["html"].path).text


def test_html_reads_only_the_main_element_and_keeps_loose_text_and_pre(tmp_path):
    page = tmp_path / "p.html"
    page.write_text("<body><div>Outside the main column</div><main><div>Loose text <b>in</b> a div<p>A paragraph"
                    "</p>and its tail</div><div>one div</div><div>the next</div><pre>line one\n    indented</pre>"
                    "<p>one<br>two</p></main></body>")
    got = convert(page)
    assert got.text.split("\n\n") == ["Loose text in a div", "A paragraph", "and its tail", "one div", "the next",
                                      "line one\n    indented", "one two"]


def test_html_keeps_an_articles_title_header_and_a_form_around_the_whole_page(tmp_path):
    page = tmp_path / "p.html"
    page.write_text("<body><header>Site banner</header><form id='aspnetForm'><article><header><h1>The title</h1>"
                    "<p>By a writer</p></header><p>The body.</p><footer>Filed under: news</footer></article>"
                    "<form><input name='q'>Search box</form></form></body>")
    got = convert(page)
    assert got.text.split("\n\n") == ["# The title", "By a writer", "The body."]
    assert got.layout.heading_path_at(got.text.index("The body.")) == ("The title",)


def test_html_decoding_follows_bom_then_declaration_then_utf8(tmp_path, files):
    utf16 = docgen.make_html(tmp_path / "u16.html", charset="utf-16", declare=None)  # Python writes the BOM
    assert convert(utf16.path).text == convert(files["html"].path).text
    page = tmp_path / "cp.html"
    page.write_bytes(b'<meta charset="iso-8859-1"><p>Caf\xe9 \x93quoted\x94 it\x92s</p>')  # browsers read cp1252
    assert convert(page).text == "Caf\u00e9 \u201cquoted\u201d it\u2019s"
    page.write_bytes(codecs.BOM_UTF8 + '<meta charset="latin-1"><p>Caf\u00e9</p>'.encode())
    assert convert(page).text == "Caf\u00e9"


def test_html_without_a_declaration_is_guessed(tmp_path):
    truth = docgen.make_html(tmp_path / "p.html", charset="cp1252", declare=None)
    with pytest.raises(UnicodeDecodeError):  # curly quotes in windows-1252: a guess is needed
        truth.path.read_bytes().decode("utf-8")
    got = convert(truth.path)
    ascii_paras = [p for p in truth.paragraphs if p.isascii()]
    assert ascii_paras and all(p in got.text.split("\n\n") for p in ascii_paras)
    assert "\u2019" in got.text  # the guess is windows-1252 (or a sibling with the same quotes)


def test_html_that_cannot_be_decoded_says_why(tmp_path):
    msg = rejects(docgen.html_unknown_encoding(tmp_path / "k.html"), "unknown encoding")
    assert msg == "unknown encoding 'x-mac-klingon' declared; re-save the file as UTF-8"
    rejects(docgen.html_unknown_encoding(tmp_path / "b.html", label="base64"), "unknown encoding 'base64' declared")
    rejects(docgen.html_undecodable(tmp_path / "u.html"), "unknown encoding: not UTF-8 and no charset declared")
    rejects(docgen.binary_html(tmp_path / "i.html"), "binary file")


def test_a_line_end_hyphen_is_a_hyphen_not_a_noncharacter():
    """PDFium returns U+FFFE for a hyphen that ends a line; it must come out as "-" (it broke search on those words)."""
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 5, " ".join(["alpha beta gamma tri- and di- or mono-"] * 40))
    text = converter_for(".pdf").convert(bytes(pdf.output()), Limits()).text
    assert "\ufffe" not in text and "\uffff" not in text
    assert text.count("-") == 3 * 40
