"""HTML: the page's content as blocks, without its navigation, scripts or markup.

Decoding follows what a browser trusts, in order: a byte-order mark, a charset
declared in a ``<meta>`` near the top, UTF-8 if the bytes are valid UTF-8, and
last charset-normalizer's guess. A declared charset is taken at its word (bytes
it cannot decode become U+FFFD) except where browsers overrule it too: a page
saying latin-1 or ASCII is read as windows-1252, a superset that gives curly
quotes instead of control characters.

Only the content is converted: script, style, navigation, header, footer,
aside, form and embedded documents are removed, and of a page with a ``<main>``
(else its top-level ``<article>`` elements) only that. Two wrappers are kept
for what they hold: the ``<header>`` of an article or main that holds its
heading (HTML5's title block), and a ``<form>`` around the content itself (an
ASP.NET page wraps its whole body in one). The DOM is walked in
order: h1 to h6 are headings, a table is a table, ``<pre>`` keeps its
whitespace, and every other block element (p, li, blockquote, div, ...) ends a
paragraph made of the text and inline elements it holds, so text sitting
directly in a ``<div>`` is kept too. ``<title>`` is not body text and is not
emitted (it usually repeats the first heading or names the site). HTML has no pages.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes
from selectolax.lexbor import LexborHTMLParser, LexborNode

from ragindex.ingest.convert.base import ConversionError, Converted, Limits, TextBuilder

NAME = "html"
VERSION = 1
LIBRARY = "selectolax"
DROP = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg", "iframe")
OPTIONS = {"drop": list(DROP), "content": "main, else article, else body", "title": "not emitted"}
SUFFIXES = (".html", ".htm")

BLOCKS = frozenset({"address", "article", "blockquote", "body", "center", "dd", "details", "dialog", "div", "dl", "dt",
                    "fieldset", "figcaption", "figure", "hr", "html", "legend", "li", "main", "ol", "p", "section",
                    "summary", "ul"})
HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([^\s"';/>]+)""", re.IGNORECASE)
# Labels browsers read as another encoding (WHATWG Encoding): latin-1 and ASCII are windows-1252, and a
# UTF-16 label in a page whose <meta> could be read as ASCII cannot be true.
_OVERRULED = {"iso8859-1": "cp1252", "ascii": "cp1252", "utf-16": "utf-8", "utf-16-le": "utf-8", "utf-16-be": "utf-8"}
_END = object()  # marks the end of a block element on the walk's stack


def convert(data: bytes, limits: Limits) -> Converted:
    tree = LexborHTMLParser(decode(data))
    _unwrap_content_wrappers(tree)
    tree.strip_tags(list(DROP))
    builder = TextBuilder(limits)
    for root in _content(tree):
        _walk(root, builder)
    return builder.build()


def decode(data: bytes) -> str:
    """The page's text: BOM, then declared charset (first 4 KiB), then UTF-8, then a guess."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    if b"\x00" in data[:8192]:
        raise ConversionError("binary file: NUL bytes in the first 8 KiB, not HTML")
    m = _META_CHARSET.search(data[:4096])
    if m:
        return _decode_declared(data, m.group(1).decode("ascii", errors="replace"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        guess = from_bytes(data).best()
    if guess is None:
        raise ConversionError("unknown encoding: not UTF-8 and no charset declared")
    return str(guess)


def _decode_declared(data: bytes, label: str) -> str:
    try:
        name = codecs.lookup(label).name
        return data.decode(_OVERRULED.get(name, name), errors="replace")
    except LookupError as exc:  # unknown to Python, or a codec that is not a text encoding (base64, rot13)
        raise ConversionError(f"unknown encoding {label!r} declared; re-save the file as UTF-8") from exc


def _unwrap_content_wrappers(tree: LexborHTMLParser) -> None:
    """Unwrap (keep the children of) a header that titles an article or main, and a form around the content."""
    for header in tree.css("main header, article header"):
        if header.css_first("h1, h2, h3, h4, h5, h6") is not None:
            header.unwrap()
    for form in tree.css("form"):
        if form.css_first("main, article, h1") is not None:
            form.unwrap()


def _content(tree: LexborHTMLParser) -> list[LexborNode]:
    """What to convert: the <main>, else the <article> elements not inside another, else the body."""
    main = tree.css_first("main")
    if main is not None:
        return [main]
    articles = [a for a in tree.css("article") if not _inside(a, "article")]
    if articles:
        return articles
    return [tree.body] if tree.body is not None else []


def _inside(node: LexborNode, tag: str) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag == tag:
            return True
        parent = parent.parent
    return False


def _walk(root: LexborNode, builder: TextBuilder) -> None:
    """Emit the blocks under ``root`` in document order (iteratively: a deeply nested page cannot overflow the stack)."""
    inline: list[str] = []  # text of the paragraph being gathered
    stack: list = [root]
    while stack:
        node = stack.pop()
        if node is _END:
            _flush(inline, builder)
            continue
        tag = node.tag
        if tag == "-text":
            inline.append(node.text_content or "")
        elif tag == "br":
            inline.append(" ")
        elif tag in HEADINGS:
            _flush(inline, builder)
            builder.heading(HEADINGS[tag], inline_text(node))
        elif tag == "pre":
            _flush(inline, builder)
            builder.paragraph(node.text(deep=True))
        elif tag == "table":
            _flush(inline, builder)
            _table(node, builder)
        elif node.is_element_node:
            if tag in BLOCKS:
                _flush(inline, builder)
                stack.append(_END)
            stack.extend(reversed(list(node.iter(include_text=True))))
    _flush(inline, builder)


def _flush(inline: list[str], builder: TextBuilder) -> None:
    """End the paragraph being gathered, its whitespace collapsed as a browser renders it."""
    if inline:
        builder.paragraph(" ".join("".join(inline).split()))
        inline.clear()


def inline_text(node: LexborNode) -> str:
    """All text under ``node``, a ``<br>`` read as a space, whitespace collapsed."""
    parts = [" " if n.tag == "br" else n.text_content or "" for n in node.traverse(include_text=True)
             if n.tag in ("-text", "br")]
    return " ".join("".join(parts).split())


def _table(table: LexborNode, builder: TextBuilder) -> None:
    """A table's caption as a paragraph, then its own rows (a nested table reads as its cell's text)."""
    rows = []
    for child in table.iter():
        if child.tag == "caption":
            builder.paragraph(inline_text(child))
        trs = [child] if child.tag == "tr" else [tr for tr in child.iter() if tr.tag == "tr"]
        rows += [[inline_text(cell) for cell in tr.iter() if cell.tag in ("td", "th")] for tr in trs]
    builder.table(rows)
