"""Chunk the test corpora again in a separate interpreter, for the determinism checks.

``python -m tests.chunkers.rechunk DATA_ROOT KEY...`` (run from the repository root;
a KEY is ``REF/CORPUS``, CORPUS a chunking-study corpus name or ``scifact``) prints
``KEY DIGEST`` for each key as soon as it is done, where DIGEST is
:func:`tests.chunkers.invariants.spans_digest` of the chunks of every document of
the corpus in file order.

Each key gets a fresh chunker, and SciFact documents are chunked in *reverse*
order, while the test process reuses one chunker per schema across corpora and
documents; a chunker whose output depends on what it chunked before, on the hash
seed or on anything else but its input shows up as a digest mismatch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ragindex.chunkers import build_chunker
from ragindex.chunkers.probe import probe_embed
from ragindex.schemas.registry import PACKAGE_DIR, SchemaRegistry
from tests.chunkers.invariants import spans_digest


def read_scifact(path) -> list[tuple[str, str]]:
    """(doc id, title + " " + text) of every SciFact record, in file order."""
    with open(path, encoding="utf-8") as f:
        return [(r["_id"], r["title"] + " " + r["text"]) for r in map(json.loads, f)]


def read_corpus(data_root: Path, corpus: str) -> list[str]:
    """The document texts of ``corpus``: one chunking-study file, or all of SciFact."""
    if corpus == "scifact":
        return [text for _, text in read_scifact(data_root / "scifact" / "corpus.jsonl")]
    return [(data_root / "chroma_chunking" / "corpora" / f"{corpus}.md").read_text(encoding="utf-8")]


def main(argv: list[str]) -> None:
    data_root, keys = Path(argv[0]), argv[1:]
    schemas = SchemaRegistry(PACKAGE_DIR).files()
    texts: dict[str, list[str]] = {}
    for key in keys:
        ref, corpus = key.split("/")
        docs = texts.get(corpus) or texts.setdefault(corpus, read_corpus(data_root, corpus))
        chunker = build_chunker(schemas[ref].spec, embed=probe_embed)  # cluster: stand-in vectors
        per_doc = [chunker.chunk(text) for text in reversed(docs)][::-1]
        print(key, spans_digest(per_doc), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
