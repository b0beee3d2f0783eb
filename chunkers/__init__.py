"""The chunking library: one module per chunker kind, a registry, no I/O.

``build_chunker(spec)`` turns a validated schema (any object with the schema's
attributes: ``kind``, ``tokenizer``, ``size``, ``overlap`` and the kind's own
fields) into a :class:`Chunker`. ``IMPL_VERSIONS`` feeds schema fingerprints, so
changing how a kind splits is a schema change that CI notices.
"""

from __future__ import annotations

from ragindex.chunkers.base import Chunker, Span, Tokenizer
from ragindex.chunkers.registry import IMPL_VERSIONS, KINDS, build_chunker, implementation_id, needs_embeddings

__all__ = ["Chunker", "Span", "Tokenizer", "KINDS", "IMPL_VERSIONS", "build_chunker", "implementation_id", "needs_embeddings"]
