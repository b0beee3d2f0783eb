"""Fusing dense and BM25 results: the methods the evaluation compares and the one search uses.

Both retrievers return their ``depth`` best rows with scores; every candidate of
either list gets both scores (a dense score is an exact inner product with the
row's stored vector, a BM25 score is read from the full score array), then:

* ``rrf``: reciprocal rank fusion, ``sum 1 / (k_rrf + rank)`` over the two lists
  (ranks only; a candidate absent from a list contributes nothing from it);
* ``weighted``: each score min-max normalised over the union of candidates, then
  ``alpha * dense + (1 - alpha) * bm25``;
* ``rescore``: only BM25's candidates, ordered by that weighted combination
  (``alpha = 1`` is pure dense re-scoring of BM25's candidates).

``hybrid-ctx`` is the weighted fusion with BM25 over each chunk's window, the chunk and its neighbours in its
document (``HybridParams.window``). Two earlier forms of neighbour evidence stay as parameters for the
benchmarks that compare them: a share of the better neighbour's fused score (``neighbours``), optionally
rescaled so that documents keep their rank (``keep_doc_order``).
``params_for(mode)`` holds the configuration each mode uses; they were tuned on
SciFact's train queries and half of the chunking-evaluation questions only
(benchmarks/retrieval.py), and reported on the other data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Literal, Mapping, Sequence

MODES = ("dense", "bm25", "hybrid", "hybrid-ctx")


@dataclass(frozen=True)
class HybridParams:
    method: Literal["rrf", "weighted", "rescore"] = "weighted"
    alpha: float = 0.5  # weight of the dense score (weighted, rescore)
    k_rrf: int = 60
    depth: int = 50  # candidates taken from each retriever
    # weight of the better neighbour's fused score (hybrid-ctx's earlier form, scored by the evaluation only):
    # a chunk whose neighbour in its document also answers the query ranks higher
    neighbours: float = 0.0
    # with neighbours: each document's chunks are rescaled so that its best chunk keeps the score it had without
    # them. A document's rank (by its best chunk) is then the plain fusion's; only the order within it changes.
    keep_doc_order: bool = False
    # hybrid-ctx: BM25 scores each chunk's window, its own words plus this share of its two neighbours' in its
    # document (ragindex.store.lexical.windowed); 0: the chunk alone
    window: float = 0.0

    def label(self) -> str:
        if self.method == "rrf":
            return f"rrf(k={self.k_rrf}, depth={self.depth})"
        extra = f", neighbours={self.neighbours}" if self.neighbours else ""
        extra += ", keep_doc_order" if self.neighbours and self.keep_doc_order else ""
        extra += f", bm25_window={self.window}" if self.window else ""
        return f"{self.method}(alpha={self.alpha}, depth={self.depth}{extra})"


# The fusion `--mode hybrid` uses: the best of 26 candidates (RRF k 10/30/60, weighted alpha 0.1..0.7,
# dense re-scoring alpha 0.5/0.7/1.0, each at depth 20 and 50) by recall on the tuning half of the
# chunking-evaluation questions, with the default schema's chunks, among those whose IoU is at least BM25's
# (benchmarks/retrieval.py; results/retrieval.json). Dense gets 0.2 of the weight: on these corpora the words
# of the question carry more than MiniLM's similarity, but dense still lifts recall over BM25 alone.
DEFAULT_HYBRID = HybridParams(method="weighted", alpha=0.2, depth=50)
# `--mode hybrid-ctx` (issue 26), the default configuration's mode with default@3: the same fusion, with BM25
# scoring each chunk's window: its own words, plus half the words of the chunk before and of the chunk after it in
# its document. The search returns the chunk itself; its neighbours only lend it their words, and a chunk with no
# neighbour (a one-chunk document) scores exactly as in hybrid. The share was chosen from 1, 1/2, 1/3 and 1/4 on
# the tuning half of the chunking-evaluation questions and SciFact's train claims (benchmarks/moonshot.py): with
# default@3, tune recall 84.7 / IoU 7.82 against 82.8 / 7.26 in hybrid.
CTX_HYBRID = HybridParams(method="weighted", alpha=0.2, depth=50, window=0.5)
# The neighbour-score bonus, hybrid-ctx's previous form (benchmarks/moonshot.py, carryover.py compare it).
NEIGHBOUR_BONUS = HybridParams(method="weighted", alpha=0.2, depth=50, neighbours=0.5, keep_doc_order=True)


def params_for(mode: str) -> HybridParams:
    """The fusion a hybrid mode uses."""
    return CTX_HYBRID if mode == "hybrid-ctx" else DEFAULT_HYBRID


def _scaled(of: dict[Hashable, float], keys: Sequence[Hashable]) -> dict[Hashable, float]:
    """Every score of ``of`` min-max normalised with the bounds of ``keys`` (the candidates), floored at 0: the
    candidates span [0, 1], and a neighbour outside them never moves their scale."""
    if not keys:
        return {}
    lo, hi = min(of[k] for k in keys), max(of[k] for k in keys)
    span = hi - lo
    return {k: max((v - lo) / span, 0.0) if span > 0 else 1.0 for k, v in of.items()}


def fuse(dense: Sequence[tuple[Hashable, float]], lexical: Sequence[tuple[Hashable, float]],
         dense_of: dict[Hashable, float], lexical_of: dict[Hashable, float], params: HybridParams,
         neighbours_of: Mapping[Hashable, Sequence[Hashable]] | None = None,
         document_of: Mapping[Hashable, Hashable] | None = None) -> list[tuple[Hashable, float]]:
    """Candidates in fused order with their fused score (higher first; ties keep no order: the caller breaks them).

    ``dense`` / ``lexical``: each retriever's own top list (key, score), best
    first. ``dense_of`` / ``lexical_of``: both scores for every candidate of the
    union (``fill`` them before calling). With ``params.neighbours`` (the bonus), each candidate adds that
    weight times the fused score of the better of its neighbours in ``neighbours_of`` (the chunks before
    and after it in its document), whose scores ``dense_of`` / ``lexical_of`` must hold too. With
    ``params.keep_doc_order``, ``document_of`` names every candidate's document.
    """
    if params.neighbours and params.method != "weighted":
        raise ValueError(f"neighbour evidence needs the weighted fusion, not {params.method}")
    if params.method == "rrf":
        out: dict[Hashable, float] = {}
        for ranked in (dense, lexical):
            for rank, (key, _) in enumerate(ranked, start=1):
                out[key] = out.get(key, 0.0) + 1.0 / (params.k_rrf + rank)
        return sorted(out.items(), key=lambda kv: -kv[1])
    keys = [k for k, _ in lexical] if params.method == "rescore" else list(dict.fromkeys([k for k, _ in dense] + [k for k, _ in lexical]))
    d, lx = _scaled(dense_of, keys), _scaled(lexical_of, keys)

    def f(k: Hashable) -> float:
        return params.alpha * d[k] + (1 - params.alpha) * lx[k]

    near = neighbours_of or {}
    fused = {k: f(k) + params.neighbours * max((f(n) for n in near.get(k, ())), default=0.0) for k in keys}
    if params.neighbours and params.keep_doc_order:
        fused = _keep_doc_order(fused, {k: f(k) for k in keys}, document_of)
    return sorted(fused.items(), key=lambda kv: -kv[1])


def _keep_doc_order(fused: dict[Hashable, float], plain: dict[Hashable, float],
                    document_of: Mapping[Hashable, Hashable] | None) -> dict[Hashable, float]:
    """``fused`` rescaled per document so that each document's best candidate scores what its best plain score
    was: documents rank as without neighbours, their chunks in the order the neighbours gave."""
    if document_of is None:
        raise ValueError("keep_doc_order needs each candidate's document")
    best_plain: dict[Hashable, float] = {}
    best_fused: dict[Hashable, float] = {}
    for k, v in fused.items():
        d = document_of[k]
        best_plain[d] = max(best_plain.get(d, 0.0), plain[k])
        best_fused[d] = max(best_fused.get(d, 0.0), v)
    return {k: v * best_plain[document_of[k]] / best_fused[document_of[k]] if best_fused[document_of[k]] > 0 else 0.0
            for k, v in fused.items()}
