"""Retrieval metrics, per question, and bootstrap noise over questions.

Document level (BEIR qrels; a document scores its best chunk): nDCG@10 with
linear gains as trec_eval computes it, recall@k, MRR@10.

Span level, exactly as ../shared/data/chroma_chunking/METRICS.md describes the
chunking-evaluation study: for one question with reference ranges E and the k
retrieved chunks R (chunks of other documents overlap nothing):

* numerator  = characters of the union of (chunk ∩ reference), chunks of the question's documents;
* recall     = numerator / Σ|reference|;
* precision  = numerator / Σ|chunk| over all k chunks (a plain sum);
* IoU        = numerator / (Σ|chunk| + reference characters no chunk covers);
* precisionΩ = numerator / |union of every chunk of the corpus that shares a
  character with a reference, plus uncovered reference characters| — the best
  efficiency possible at perfect recall, independent of the embedder.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

DOC_METRICS = ("ndcg@10", "recall@5", "recall@10", "recall@100", "mrr@10")
SPAN_METRICS = ("recall", "precision", "iou", "precision_omega")

Range = tuple[int, int]


def doc_scores(ranked: Sequence[str], relevant: dict[str, int]) -> dict[str, float]:
    """Per-question document metrics from a ranked list of distinct doc ids."""
    rel = {d: g for d, g in relevant.items() if g > 0}
    out: dict[str, float] = {}
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(rel.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    out["ndcg@10"] = dcg / idcg if idcg else 0.0
    for k in (5, 10, 100):
        out[f"recall@{k}"] = sum(1 for d in ranked[:k] if d in rel) / len(rel) if rel else 0.0
    out["mrr@10"] = next((1.0 / (i + 1) for i, d in enumerate(ranked[:10]) if d in rel), 0.0)
    return out


def union(ranges: Iterable[Range]) -> list[Range]:
    """Merge overlapping or touching half-open ranges."""
    out: list[list[int]] = []
    for s, e in sorted(r for r in ranges if r[1] > r[0]):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def length(ranges: Iterable[Range]) -> int:
    return sum(e - s for s, e in ranges)


def _covered(chunks: Sequence[Range], refs: Sequence[Range]) -> tuple[list[Range], list[Range]]:
    """(union of chunk ∩ reference, reference parts no chunk covers)."""
    inter = union((max(cs, rs), min(ce, re)) for cs, ce in chunks for rs, re in refs if min(ce, re) > max(cs, rs))
    uncovered = []
    for rs, re in union(refs):
        pos = rs
        for s, e in inter:
            if e <= pos or s >= re:
                continue
            if s > pos:
                uncovered.append((pos, s))
            pos = max(pos, e)
        if pos < re:
            uncovered.append((pos, re))
    return inter, uncovered


def span_scores(retrieved: Sequence[tuple[str, int, int]], refs: Sequence[tuple[str, int, int]],
                all_chunks: dict[str, Sequence[Range]] | None = None) -> dict[str, float]:
    """Per-question span metrics; ``retrieved`` and ``refs`` are (doc_id, start, end).

    ``all_chunks`` (doc_id -> chunk ranges) is needed for precisionΩ only.
    """
    ref_total = sum(e - s for _, s, e in refs)  # a plain sum, as the study does
    chunk_total = sum(e - s for _, s, e in retrieved)
    numerator = 0
    uncovered_total = 0
    docs = {d for d, _, _ in refs}
    for doc in docs:
        r = [(s, e) for d, s, e in refs if d == doc]
        c = [(s, e) for d, s, e in retrieved if d == doc]
        inter, uncovered = _covered(c, r)
        numerator += length(inter)
        uncovered_total += length(uncovered)
    out = {
        "recall": numerator / ref_total if ref_total else 0.0,
        "precision": numerator / chunk_total if chunk_total else 0.0,
        "iou": numerator / (chunk_total + uncovered_total) if (chunk_total + uncovered_total) else 0.0,
    }
    if all_chunks is not None:
        num = den = 0
        for doc in docs:
            r = [(s, e) for d, s, e in refs if d == doc]
            touching = [(s, e) for s, e in all_chunks.get(doc, ()) if any(min(e, re) > max(s, rs) for rs, re in r)]
            inter, uncovered = _covered(touching, r)
            num += length(inter)
            den += length(union(touching + uncovered))
        out["precision_omega"] = num / den if den else 0.0
    return out


def bootstrap_se(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> float:
    """Standard error of the mean by resampling questions with replacement (fixed seed: reproducible)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    return float(values[idx].mean(axis=1).std(ddof=1))


def paired_bootstrap_ci(deltas: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean per-question change (same questions, two runs)."""
    deltas = np.asarray(deltas, dtype=np.float64)
    if len(deltas) == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = deltas[rng.integers(0, len(deltas), size=(n_boot, len(deltas)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
