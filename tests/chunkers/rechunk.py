"""Chunk the test corpora again in a separate interpreter, for the determinism checks.

``python -m tests.chunkers.rechunk KEY...`` (run from the repository root; a KEY is
``REF/CORPUS``, CORPUS a chunking-study corpus name or ``passages``) prints
``KEY DIGEST`` for each key as soon as it is done, where DIGEST is
:func:`tests.chunkers.invariants.spans_digest` of the chunks of every document of
the corpus in file order.

Each key gets a fresh chunker, and the passage records are chunked in *reverse*
order, while the test process reuses one chunker per schema across corpora and
documents; a chunker whose output depends on what it chunked before, on the hash
seed or on anything else but its input shows up as a digest mismatch.
"""

from __future__ import annotations

import sys

from ragindex.chunkers import build_chunker
from ragindex.chunkers.probe import probe_embed
from ragindex.schemas.registry import PACKAGE_DIR, SchemaRegistry
from tests.chunkers.invariants import spans_digest
from tests.support.data import chroma_texts, passage_docs


def read_passages() -> list[tuple[str, str]]:
    """(doc id, title + " " + text) of every passage record (tests.support.data), in order."""
    return [(d["_id"], d["title"] + " " + d["text"]) for d in passage_docs()]


def read_corpus(corpus: str) -> list[str]:
    """The document texts of ``corpus``: one chunking-study file, or all the passage records."""
    if corpus == "passages":
        return [text for _, text in read_passages()]
    return [chroma_texts()[corpus]]


def main(argv: list[str]) -> None:
    keys = argv
    schemas = SchemaRegistry(PACKAGE_DIR).files()
    texts: dict[str, list[str]] = {}
    for key in keys:
        ref, corpus = key.split("/")
        docs = texts.get(corpus) or texts.setdefault(corpus, read_corpus(corpus))
        chunker = build_chunker(schemas[ref].spec, embed=probe_embed)  # cluster: stand-in vectors
        per_doc = [chunker.chunk(text) for text in reversed(docs)][::-1]
        print(key, spans_digest(per_doc), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
