"""Evaluate one chunker (or whole documents) on one dataset with an exact inner-product search.

A document-labelled dataset is scored at document level (a document scores its
best chunk; every chunk is scored, so the aggregation is exact); a span dataset
at character level with one index over all its documents and the top ``k`` chunks.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from ragindex.chunkers.context import embed_text, lexical_text
from ragindex.evaluate.datasets import Dataset
from ragindex.evaluate.metrics import DOC_METRICS, SPAN_METRICS, bootstrap_se, doc_scores, span_scores
from ragindex.evaluate.vectors import CachedEmbedder, EmbedStats
from ragindex.fsutil import sha256_text
from ragindex.indexing.chunk import chunk_documents
from ragindex.search.hybrid import HybridParams, fuse, params_for
from ragindex.store.lexical import LexicalIndex, collection_stats, query_terms, windowed
from ragindex.store.lexical import score as bm25_score

WHOLE_DOCS = "whole-docs"
DOC_DEPTH = 100  # documents ranked per question (recall@100 needs 100)
QUERY_BLOCK = 256


@dataclass
class Chunks:
    """The units that get embedded: one row per chunk, grouped by document."""

    doc_ids: list[str]
    starts: list[int]
    ends: list[int]
    texts: list[str]
    context: list[list[str]] | None = None  # per chunk, its context header (a schema with context_headers)

    @property
    def embedded(self) -> list[str]:
        """What the model embeds: each text below its context header, when there is one (as the pipeline does)."""
        if self.context is None:
            return self.texts
        return [embed_text(t, c) for t, c in zip(self.texts, self.context)]

    @property
    def lexical(self) -> list[str]:
        """What BM25 scores: the context and the text, as a segment's lexical index holds them."""
        if self.context is None:
            return self.texts
        return [lexical_text(t, c) for t, c in zip(self.texts, self.context)]


@dataclass
class EvalResult:
    dataset: str
    dataset_fingerprint: str
    chunker: str
    chunker_fingerprint: str
    embedder_fingerprint: str
    k: int
    metrics: dict[str, float]
    noise: dict[str, float]  # bootstrap standard error of each mean, over questions
    per_question: dict[str, dict[str, float]]
    chunks: int
    embed: EmbedStats = field(default_factory=EmbedStats)
    seconds: float = 0.0
    mode: str = "dense"
    hybrid: str | None = None  # the fusion configuration, for mode hybrid

    def to_dict(self, per_question: bool = False) -> dict:
        d = asdict(self)
        if not per_question:
            d.pop("per_question")
        return d


def whole_docs(ds: Dataset) -> Chunks:
    return Chunks(list(ds.doc_ids), [0] * len(ds.texts), [len(t) for t in ds.texts], list(ds.texts))


def chunk_dataset(ds: Dataset, schema, embed=None) -> Chunks:
    """Cut every document of ``ds`` with ``schema`` (the pipeline's own chunking stage).

    ``embed`` (the evaluation's cached embedder) is what a kind that clusters on
    embeddings uses for its pieces; other kinds ignore it.
    """
    cols = {"doc_id": ds.doc_ids, "doc_hash": [sha256_text(t) for t in ds.texts], "text": ds.texts}
    if ds.titles is not None:
        cols["title"] = ds.titles
    t = chunk_documents("eval", pa.table(cols), schema, embed=embed)
    context = t.column("heading_path").to_pylist() if schema.spec.context_headers else None
    return Chunks(t.column("doc_id").to_pylist(), t.column("start").to_pylist(), t.column("end").to_pylist(), t.column("text").to_pylist(),
                  context)


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` best columns per row, best first (ties: lower index first)."""
    n = min(n, scores.shape[1])
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n] if n < scores.shape[1] else np.tile(np.arange(scores.shape[1]), (len(scores), 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def rank_documents(q: np.ndarray, vecs: np.ndarray, doc_ids: list[str], depth: int = DOC_DEPTH) -> list[list[str]]:
    """Per query, the ``depth`` best documents, each scored by its best chunk (exact)."""
    uniq, first, inverse = np.unique(np.asarray(doc_ids, dtype=object), return_index=True, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(uniq)))
    vecs = vecs[order]
    out: list[list[str]] = []
    for b in range(0, len(q), QUERY_BLOCK):
        s = q[b : b + QUERY_BLOCK] @ vecs.T
        per_doc = np.maximum.reduceat(s, starts, axis=1)
        out.extend([[uniq[j] for j in row] for row in _top(per_doc, depth)])
    return out


def top_chunks(q: np.ndarray, vecs: np.ndarray, k: int) -> np.ndarray:
    """Per query, the indices of the ``k`` best chunks (exact inner product)."""
    return np.concatenate([_top(q[b : b + QUERY_BLOCK] @ vecs.T, k) for b in range(0, len(q), QUERY_BLOCK)]) if len(q) else np.zeros((0, k), int)


def lexical_index(chunks: Chunks) -> LexicalIndex:
    """BM25 over the chunks, as a segment would hold it (heading paths count only as context headers)."""
    return LexicalIndex.build(chunks.lexical)


def lexical_scores(lex: LexicalIndex, query: str) -> np.ndarray:
    terms = query_terms(query)
    return bm25_score(lex, None, terms, collection_stats([(lex, None)], terms))


def _ranked(scores: np.ndarray, ids: list[str], k: int) -> list[int]:
    """The ``k`` best rows, ties broken by a stable key (the chunk's identity), best first."""
    top = np.argpartition(-scores, min(k, len(scores)) - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return sorted(top.tolist(), key=lambda i: (-scores[i], ids[i]))


def chunk_neighbours(chunks: Chunks) -> tuple[np.ndarray, np.ndarray]:
    """Each chunk's neighbour just before and just after it in its document (-1: none)."""
    before, after = np.full(len(chunks.texts), -1), np.full(len(chunks.texts), -1)
    order = sorted(range(len(chunks.texts)), key=lambda i: (chunks.doc_ids[i], chunks.starts[i]))
    for a, b in zip(order, order[1:]):
        if chunks.doc_ids[a] == chunks.doc_ids[b]:
            after[a], before[b] = b, a
    return before, after


def rank_chunks(ds: Dataset, chunks: Chunks, qvecs: np.ndarray | None, cvecs: np.ndarray | None, k: int, mode: str,
                params: HybridParams | None = None, lex: LexicalIndex | None = None) -> list[list[int]]:
    """Per query, the ``k`` best chunks under ``mode`` (the same fusion search uses; exact dense scores)."""
    params = params or params_for(mode)
    ids = [f"{d}|{s}|{e}" for d, s, e in zip(chunks.doc_ids, chunks.starts, chunks.ends)]
    if mode == "dense":
        return [row.tolist() for row in top_chunks(qvecs, cvecs, k)]
    before, after = chunk_neighbours(chunks) if params.neighbours or params.window else (None, None)
    near = [[int(n) for n in pair if n >= 0] for pair in zip(before, after)] if params.neighbours else None
    lex = lex or lexical_index(chunks)
    if params.window:
        lex = windowed(lex, before, after, params.window)
    out = []
    for qi, query in enumerate(ds.queries):
        ls = lexical_scores(lex, query)
        if mode == "bm25":
            pos = np.flatnonzero(ls > 0)
            out.append([int(pos[i]) for i in _ranked(ls[pos], [ids[j] for j in pos], k)] if len(pos) else [])
            continue
        depth = max(params.depth, k)
        ds_ = cvecs @ qvecs[qi]
        dense = [(i, float(ds_[i])) for i in _ranked(ds_, ids, depth)]
        pos = np.flatnonzero(ls > 0)
        lexical = [(int(pos[i]), float(ls[pos[i]])) for i in _ranked(ls[pos], [ids[j] for j in pos], depth)] if len(pos) else []
        keys = {i for i, _ in dense} | {i for i, _ in lexical}
        neighbours = {i: near[i] for i in keys} if near is not None else {}
        scored = keys | {n for ns in neighbours.values() for n in ns}
        fused = fuse(dense, lexical, {i: float(ds_[i]) for i in scored}, {i: max(float(ls[i]), 0.0) for i in scored},
                     params, neighbours, {i: chunks.doc_ids[i] for i in keys})
        fused.sort(key=lambda kv: (-kv[1], ids[kv[0]]))
        out.append([i for i, _ in fused[:k]])
    return out


def score(ds: Dataset, chunks: Chunks, qvecs: np.ndarray | None, cvecs: np.ndarray | None, k: int, mode: str = "dense",
          params: HybridParams | None = None) -> dict[str, dict[str, float]]:
    """Per-question metrics for ``ds`` given query and chunk vectors, under a retrieval mode."""
    per_q: dict[str, dict[str, float]] = {}
    if ds.kind == "docs":
        if mode == "dense":
            ranking = rank_documents(qvecs, cvecs, chunks.doc_ids)
        elif mode == "bm25":  # each document scores its best chunk, exactly, as dense does
            lex = lexical_index(chunks)
            ranking = [_best_docs(lexical_scores(lex, q), chunks.doc_ids) for q in ds.queries]
        else:
            ranking = [list(dict.fromkeys(chunks.doc_ids[i] for i in row))[:DOC_DEPTH]
                       for row in rank_chunks(ds, chunks, qvecs, cvecs, DOC_DEPTH * 10, mode, params)]
        for qid, ranked in zip(ds.query_ids, ranking):
            per_q[qid] = doc_scores(ranked, ds.qrels[qid])
        return per_q
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for d, s, e in zip(chunks.doc_ids, chunks.starts, chunks.ends):
        by_doc.setdefault(d, []).append((s, e))
    for qid, top in zip(ds.query_ids, rank_chunks(ds, chunks, qvecs, cvecs, k, mode, params)):
        retrieved = [(chunks.doc_ids[i], chunks.starts[i], chunks.ends[i]) for i in top]
        refs = [(s.doc_id, s.start, s.end) for s in ds.spans[qid]]
        per_q[qid] = span_scores(retrieved, refs, by_doc)
    return per_q


def _best_docs(scores: np.ndarray, doc_ids: list[str], depth: int = DOC_DEPTH) -> list[str]:
    best: dict[str, float] = {}
    for d, sc in zip(doc_ids, scores.tolist()):
        if sc > 0 and sc > best.get(d, 0.0):
            best[d] = sc
    return [d for d, _ in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]]


def summarize(ds: Dataset, per_q: dict[str, dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """(mean of each metric, its bootstrap standard error over questions)."""
    names = DOC_METRICS if ds.kind == "docs" else SPAN_METRICS
    means, noise = {}, {}
    for m in names:
        vals = np.array([per_q[q][m] for q in ds.query_ids], dtype=np.float64)
        means[m] = float(vals.mean()) if len(vals) else 0.0
        noise[m] = bootstrap_se(vals)
    return means, noise


def evaluate(ds: Dataset, schema, embedder: CachedEmbedder, k: int = 5, mode: str = "dense",
             params: HybridParams | None = None) -> EvalResult:
    """Chunk with ``schema`` (None: whole documents), embed through the cache (not for bm25), rank, score."""
    params = params or params_for(mode)
    t0 = time.perf_counter()
    uses_model = schema is not None and schema.needs_embeddings  # its chunks depend on the model, whatever the mode
    before = EmbedStats(**asdict(embedder.stats))
    chunks = whole_docs(ds) if schema is None else chunk_dataset(ds, schema, embedder.embed)
    qvecs = embedder.embed(ds.queries) if mode != "bm25" else None
    cvecs = embedder.embed(chunks.embedded) if mode != "bm25" else None
    per_q = score(ds, chunks, qvecs, cvecs, k, mode, params)
    means, noise = summarize(ds, per_q)
    spent = EmbedStats(**asdict(embedder.stats))
    for f in ("texts", "unique_texts", "cache_hits", "embedded", "tokens", "seconds"):
        setattr(spent, f, getattr(spent, f) - getattr(before, f))
    return EvalResult(
        dataset=ds.name, dataset_fingerprint=ds.fingerprint(),
        chunker=WHOLE_DOCS if schema is None else schema.ref,
        chunker_fingerprint=(WHOLE_DOCS if schema is None else schema.chunk_fingerprint(embedder.embedder.fingerprint)
                             if schema.needs_embeddings else schema.fingerprint()),
        embedder_fingerprint=embedder.embedder.fingerprint if mode != "bm25" or uses_model else "bm25", k=k, metrics=means, noise=noise,
        per_question=per_q, chunks=len(chunks.texts), embed=spent, seconds=time.perf_counter() - t0,
        mode=mode, hybrid=params.label() if mode.startswith("hybrid") else None,
    )
