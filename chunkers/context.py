"""Context headers: what a chunk is embedded as when its schema sets ``context_headers``.

A chunk cut from the middle of a document loses what the document is about: its
title and the headings above it. With ``context_headers = true`` in a schema, each
chunk is embedded below a one-line header of that context::

    Title > Section > Subsection

    <the chunk's own text>

The chunk's span, the text search returns and the text BM25 scores are unchanged
(BM25 already scores the heading path beside the text). The header is part of
what is embedded, so it is part of the chunk's ``text_hash`` (the cache key), and
:func:`format_probe` is part of the schema's fingerprint: editing the format
below changes the fingerprint of every schema that uses it.
"""

from __future__ import annotations

from typing import Iterable, Sequence

SEPARATOR = " > "


def context_of(title: str | None, heading_path: Iterable[str]) -> list[str]:
    """A chunk's context, outermost first: the document's title (if it has one), then its headings.

    A title that is also the first heading (a markdown document whose ``# Title``
    line names it) is not repeated.
    """
    heads = [h for h in heading_path if h]
    title = " ".join((title or "").split())
    if title and (not heads or heads[0] != title):
        return [title, *heads]
    return heads


def embed_text(text: str, context: Sequence[str] | None) -> str:
    """What the model embeds for a chunk with ``context``: the header line, a blank line, the chunk."""
    if not context:
        return text
    return SEPARATOR.join(context) + "\n\n" + text


def lexical_text(text: str, context: Sequence[str] | None) -> str:
    """What BM25 scores for a chunk: its context words, then its text (headings count with or without headers)."""
    return " ".join([*(context or []), text])


def format_probe() -> str:
    """The header format applied to a fixed example (fingerprinted with every schema that uses headers)."""
    return embed_text("chunk", ["Title", "Section"])
