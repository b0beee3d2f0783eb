"""``cluster``: semantic clustering of sentence-sized pieces under a token limit.

The chunking study's ClusterSemanticChunker idea, on offsets:

1. cut the document into pieces of at most ``piece_size`` tokens with the
   ``recursive`` splitter (same separators);
2. embed every piece (the caller supplies ``embed``: in the pipeline, the
   tenant's own embedder through its cache, counted in the plan and ledger);
3. choose the segmentation of the piece sequence into runs of at most
   ``size // piece_size`` consecutive pieces that maximises the summed pairwise
   similarity inside each run, with similarities centred on the document's mean
   (so joining two unrelated pieces costs, joining two related ones pays);
   dynamic programming, exact, O(pieces x run length);
4. each run becomes the span from its first piece's start to its last piece's
   end, re-cut with ``fit_span`` if the exact count of that slice exceeds
   ``size`` (the whitespace between pieces can add a token).

Only the similarities inside a run of ``size // piece_size`` neighbours matter,
so memory is O(pieces x run length) rather than the study's full n x n matrix.
The result depends on the embeddings, so the chunks' fingerprint includes the
embedder's (see ``schemas.chunker.SchemaFile.chunk_fingerprint``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from ragindex.chunkers.base import Span, fit_span
from ragindex.chunkers.recursive import RecursiveChunker

Embed = Callable[[Sequence[str]], np.ndarray]


class EmbeddingsRequired(RuntimeError):
    """The chunker was built without an ``embed`` function."""


class ClusterChunker:
    IMPL_VERSION = 1
    NEEDS_EMBEDDINGS = True

    def __init__(self, spec, tokenizer, embed: Embed | None = None) -> None:
        self.size = spec.size
        self.tok = tokenizer
        self.max_run = max(1, spec.size // spec.piece_size)
        self.splitter = RecursiveChunker(replace_size(spec, spec.piece_size), tokenizer)
        self.embed = embed

    def pieces(self, text: str) -> list[Span]:
        """The sentence-sized pieces the clustering works on (what ``embed`` is asked for)."""
        return self.splitter.chunk(text)

    def chunk(self, text: str) -> list[Span]:
        pieces = self.pieces(text)
        if len(pieces) <= 1:
            return pieces
        if self.embed is None:
            raise EmbeddingsRequired("the cluster chunker needs embeddings: build it with build_chunker(spec, embed=...)")
        vecs = np.asarray(self.embed([text[p.start : p.end] for p in pieces]), dtype=np.float64)
        runs = segment(vecs, self.max_run)
        out: list[Span] = []
        for a, b in runs:
            out.extend(fit_span(text, pieces[a].start, pieces[b].end, self.size, self.tok))
        return out


def replace_size(spec, size: int):
    """``spec`` as a recursive splitter of ``size`` tokens without overlap (pydantic or dataclass specs)."""
    if hasattr(spec, "model_copy"):
        return spec.model_copy(update={"size": size, "overlap": 0})
    return replace(spec, size=size, overlap=0)


def segment(vecs: np.ndarray, max_run: int) -> list[tuple[int, int]]:
    """Best split of ``len(vecs)`` pieces into runs of at most ``max_run``: ``[(first, last), ...]``.

    A run's reward is the sum over ordered pairs i != j inside it of
    ``v_i . v_j - mean``, where ``mean`` is the document's mean off-diagonal
    similarity (computed from the sum of the vectors, without the n x n matrix).
    Ties go to the longer run, so the result is deterministic.
    """
    n = len(vecs)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    v = vecs / np.where(norms == 0, 1.0, norms)
    total = v.sum(axis=0)
    mean = (float(total @ total) - float((v * v).sum())) / (n * (n - 1))
    # band[i, d] = v_i . v_{i-d} - mean, for d = 1 .. max_run - 1
    band = np.zeros((n, max_run))
    for d in range(1, max_run):
        band[d:, d] = (v[d:] * v[:-d]).sum(axis=1) - mean
    b = band.tolist()
    best = [0.0] + [-np.inf] * n
    first = [0] * (n + 1)
    for end in range(1, n + 1):  # the best split of pieces [0, end), whose last run ends at piece end-1
        reward = 0.0
        for length in range(1, min(max_run, end) + 1):
            start = end - length
            # adding piece `start` to the run [start+1, end): its pairs with each member, both orders
            reward += 2.0 * sum(b[start + d][d] for d in range(1, length))
            score = best[start] + reward
            if score >= best[end]:
                best[end] = score
                first[end] = start
    runs = []
    end = n
    while end > 0:
        start = int(first[end])
        runs.append((start, end - 1))
        end = start
    return runs[::-1]
