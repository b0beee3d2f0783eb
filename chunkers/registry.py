"""Kind name -> implementation, and each kind's implementation identity."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache

from ragindex.chunkers import cluster, markdown, recursive, sentence, token
from ragindex.chunkers.base import Chunker
from ragindex.chunkers.probe import PROBE_TEXT, probe_embed
from ragindex.chunkers.tokenizers import get_tokenizer

KINDS = {
    "token": token.TokenChunker,
    "recursive": recursive.RecursiveChunker,
    "markdown": markdown.MarkdownChunker,
    "sentence": sentence.SentenceChunker,
    "cluster": cluster.ClusterChunker,
}

# Bump a kind's number when you change its splitting on purpose; the behaviour
# hash in implementation_id() catches the changes nobody meant to make.
IMPL_VERSIONS = {kind: cls.IMPL_VERSION for kind, cls in KINDS.items()}


def needs_embeddings(spec) -> bool:
    """Whether the kind cuts on embeddings (and so must be built with ``embed``)."""
    return getattr(KINDS.get(spec.kind), "NEEDS_EMBEDDINGS", False)


def build_chunker(spec, embed=None) -> Chunker:
    """Instantiate the chunker a validated schema describes.

    ``embed(texts) -> array`` is required by kinds that need embeddings
    (:func:`needs_embeddings`) and ignored by the others.
    """
    try:
        cls = KINDS[spec.kind]
    except KeyError:
        raise KeyError(f"unknown chunker kind {spec.kind!r}; known: {', '.join(KINDS)}") from None
    if needs_embeddings(spec):
        return cls(spec, get_tokenizer(spec.tokenizer), embed=embed)
    return cls(spec, get_tokenizer(spec.tokenizer))


@lru_cache(maxsize=256)
def _behaviour_hash(spec) -> str:
    spans = build_chunker(spec, embed=probe_embed).chunk(PROBE_TEXT)
    payload = [(s.start, s.end, s.token_count, list(s.heading_path)) for s in spans]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def implementation_id(spec) -> str:
    """``"<IMPL_VERSION>:<behaviour hash>"`` of the kind that ``spec`` names.

    The behaviour hash is what the chunker makes of a fixed probe text with this
    very schema, so an edit to a kind's code (or to a tokenizer it relies on)
    that changes its output changes every affected fingerprint, even if nobody
    remembered to bump ``IMPL_VERSION``. Comment-only edits change nothing.
    """
    return f"{KINDS[spec.kind].IMPL_VERSION}:{_behaviour_hash(spec)}"
