"""Narrower spans (issue 26): rank chunks as today, but return each hit's best window of sentences.

Measured on the chunking-evaluation set (chroma: 5 corpora, 472 questions, character
spans, k=5) with the default schema (default@2: recursive 200 tokens, no overlap) and
the default hybrid fusion (DEFAULT_HYBRID), all-MiniLM-L6-v2 through the evaluation cache.
Chunks are ranked exactly as ``ragindex.evaluate.runner.rank_chunks`` does; only what a
hit returns changes. Candidates, each giving k=5 (doc_id, start, end) per question:

* ``baseline``: the hybrid top-5 chunks;
* ``window``: the hit chunk's text is split into sentences (a sentence ends after . ! ?
  followed by whitespace, or at a newline; each stripped of surrounding whitespace, exact
  document offsets). Every sentence gets the same fusion as chunks: dense cosine of the
  query with the sentence's embedding, and BM25 of the query over a LexicalIndex built on
  every sentence of the corpus (sentence-level IDF and lengths), each min-max normalised
  over the candidate sentences, combined ``alpha * dense + (1 - alpha) * bm25`` with
  DEFAULT_HYBRID's alpha. The hit returns the contiguous run of sentences maximising
  ``sum(score_i - lam * chars_i / 100)`` (at least one sentence; lam = 0 returns the whole chunk);
* ``window+neighbours``: the candidate sentences are those of the previous, the hit and
  the next chunk of the same document; the run must contain a sentence of the hit chunk;
* ``window+dedupe`` / ``window+neighbours+dedupe``: windows taken down the hybrid ranking
  (ranks 1..DEPTH); a window that overlaps or touches (only whitespace between) a region
  already returned is merged into it, so the question gets 5 distinct regions.

``lam`` is tuned per candidate on the tune half (``halves``, as benchmarks/retrieval.py):
the best IoU among values whose recall is at least the baseline's on that half (else the
best recall); rows for the tune half, the report half and all questions (x100). Cost: the
sentences scored per question (embedded at query time if sentence vectors are not stored)
and the sentences in the corpus (vectors stored at index time). For headroom, an oracle (not a
candidate: it reads the references) returns per hit the minimal sentence run covering the
reference's overlap with the chunk (else the chunk's shortest sentence).

Usage:
    python benchmarks/spans.py            # writes benchmarks/results/spans.json
    python benchmarks/spans.py --smoke    # one small corpus, a few questions
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ragindex.evaluate import datasets
from ragindex.evaluate.metrics import span_scores
from ragindex.evaluate.runner import chunk_dataset, lexical_index, lexical_scores, rank_chunks
from ragindex.evaluate.vectors import CachedEmbedder, eval_cache_path
from ragindex.search.hybrid import DEFAULT_HYBRID
from ragindex.store.lexical import LexicalIndex
from retrieval import halves  # the one split every retrieval benchmark uses (benchmarks/ is on sys.path)

RESULTS = REPO / "benchmarks" / "results"
K = 5
DEPTH = 20  # hybrid ranks a deduplicating candidate may draw on
LAMS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # penalty per 100 characters
CANDIDATES = {"window": (False, False), "window+neighbours": (True, False),
              "window+dedupe": (False, True), "window+neighbours+dedupe": (True, True)}  # (neighbours, dedupe)
BOUNDARY = re.compile(r"[.!?](?=\s)|\n")


def sentences(text: str, offset: int) -> list[tuple[int, int]]:
    """Exact (start, end) document offsets of the sentences of ``text`` (which starts at ``offset``)."""
    out, pos = [], 0
    for m in list(BOUNDARY.finditer(text)) + [None]:
        end = m.end() if m else len(text)
        piece = text[pos:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            out.append((offset + pos + lead, offset + pos + len(piece.rstrip())))
        pos = end
    return out


class Sentences:
    """Every chunk's sentences, in document order, with each chunk's neighbours in its document."""

    def __init__(self, ds, chunks):
        doc_text = dict(zip(ds.doc_ids, ds.texts))
        self.doc, self.start, self.end, self.of_chunk = [], [], [], []
        for ci, (d, s, e, t) in enumerate(zip(chunks.doc_ids, chunks.starts, chunks.ends, chunks.texts)):
            assert doc_text[d][s:e] == t, "chunk text is not the document slice"
            ids = []
            for a, b in sentences(t, s):
                ids.append(len(self.doc))
                self.doc.append(d), self.start.append(a), self.end.append(b)
            self.of_chunk.append(ids)
        self.texts = [doc_text[d][a:b] for d, a, b in zip(self.doc, self.start, self.end)]
        self.chars = np.array([b - a for a, b in zip(self.start, self.end)], dtype=np.float64)
        order = sorted(range(len(chunks.texts)), key=lambda i: (chunks.doc_ids[i], chunks.starts[i]))
        self.prev, self.next = [-1] * len(order), [-1] * len(order)
        for a, b in pairwise(order):
            if chunks.doc_ids[a] == chunks.doc_ids[b]:
                self.next[a], self.prev[b] = b, a


def _minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.ones_like(x)


def best_run(v: np.ndarray, must: np.ndarray) -> tuple[int, int]:
    """(i, j): the contiguous run v[i..j] with the largest sum that contains a position where ``must`` holds.

    Ties prefer the longer run (lam = 0 keeps every sentence of the chunk)."""
    n = len(v)
    left, lstart = v.copy(), np.arange(n)  # best sum of a run ending at p, and where it starts
    for p in range(1, n):
        if left[p - 1] >= 0:
            left[p], lstart[p] = v[p] + left[p - 1], lstart[p - 1]
    right, rend = v.copy(), np.arange(n)  # best sum of a run starting at p, and where it ends
    for p in range(n - 2, -1, -1):
        if right[p + 1] >= 0:
            right[p], rend[p] = v[p] + right[p + 1], rend[p + 1]
    best = max(np.flatnonzero(must), key=lambda p: (left[p] + right[p] - v[p], rend[p] - lstart[p]))
    return int(lstart[best]), int(rend[best])


def window(sents: Sentences, chunks, ci: int, dense: np.ndarray, lex: np.ndarray, lam: float, neighbours: bool):
    """(doc_id, start, end) of hit chunk ``ci``'s best window, and the sentence ids scored for it."""
    hit = sents.of_chunk[ci]
    if not hit:
        return (chunks.doc_ids[ci], chunks.starts[ci], chunks.ends[ci]), []
    cand = ([*sents.of_chunk[sents.prev[ci]]] if neighbours and sents.prev[ci] >= 0 else []) + hit
    cand += sents.of_chunk[sents.next[ci]] if neighbours and sents.next[ci] >= 0 else []
    idx = np.asarray(cand)
    a = DEFAULT_HYBRID.alpha
    v = a * _minmax(dense[idx]) + (1 - a) * _minmax(lex[idx]) - lam * sents.chars[idx] / 100
    i, j = best_run(v, np.isin(idx, hit))
    return (chunks.doc_ids[ci], sents.start[cand[i]], sents.end[cand[j]]), cand


def regions(doc_text: dict, spans: list, k: int, dedupe: bool) -> tuple[list, int]:
    """(the first ``k`` spans, or (dedupe) the first ``k`` distinct regions, merging overlapping or touching ones;
    how many spans were used)."""
    if not dedupe:
        return spans[:k], min(k, len(spans))
    out: list[list] = []
    used = 0
    for d, s, e in spans:
        for r in out:  # one merge per span; a span bridging two regions leaves them overlapping (rare; scored as a union)
            lo, hi = (r[2], s) if r[2] <= s else (e, r[1]) if e <= r[1] else (0, 0)
            if r[0] == d and not doc_text[d][lo:hi].strip():
                r[1], r[2] = min(r[1], s), max(r[2], e)
                break
        else:
            if len(out) == k:
                break
            out.append([d, s, e])
        used += 1
    return [tuple(r) for r in out], used


def evaluate(ds, spans_of) -> dict:
    """Mean recall, precision, IoU (x100) of ``spans_of(qid)`` over ``ds``'s questions."""
    per = [span_scores(spans_of(q), [(s.doc_id, s.start, s.end) for s in ds.spans[q]]) for q in ds.query_ids]
    return {m: round(100 * float(np.mean([p[m] for p in per])), 3) for m in ("recall", "precision", "iou")} | {"questions": len(per)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="the smallest corpus and its first 8 questions only")
    ap.add_argument("--out", type=Path, default=RESULTS / "spans.json")
    args = ap.parse_args()
    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.schemas import SchemaRegistry

    t0 = time.time()
    ds = datasets.load("chroma")
    if args.smoke:
        doc = min(zip(ds.doc_ids, ds.texts), key=lambda dt: len(dt[1]))[0]
        qs = [q for q in ds.query_ids if all(s.doc_id == doc for s in ds.spans[q])][:8]
        ds = replace(ds.subset(qs, "smoke"), doc_ids=[doc], texts=[ds.texts[ds.doc_ids.index(doc)]])
    tune, report = halves(ds)
    emb = CachedEmbedder(eval_cache_path("chroma"), EmbedderConfig("default").build, label="eval-chroma")
    chunks = chunk_dataset(ds, SchemaRegistry().get("default@2"), emb.embed)
    sents = Sentences(ds, chunks)
    print(f"[{time.time() - t0:.0f}s] {len(chunks.texts)} chunks, {len(sents.texts)} sentences", flush=True)
    cvecs, qvecs = emb.embed(chunks.embedded), emb.embed(ds.queries)
    svecs = emb.embed(sents.texts)
    print(f"[{time.time() - t0:.0f}s] embedded", flush=True)
    lex, slex = lexical_index(chunks), LexicalIndex.build(sents.texts)
    ranked = dict(zip(ds.query_ids, rank_chunks(ds, chunks, qvecs, cvecs, DEPTH, "hybrid", DEFAULT_HYBRID, lex)))
    qpos = {q: i for i, q in enumerate(ds.query_ids)}
    dense = {q: svecs @ qvecs[qpos[q]] for q in ds.query_ids}
    lexs = {q: lexical_scores(slex, t) for q, t in zip(ds.query_ids, ds.queries)}
    doc_text = dict(zip(ds.doc_ids, ds.texts))
    print(f"[{time.time() - t0:.0f}s] ranked", flush=True)

    def spans_of(name: str, lam: float, cost: dict | None = None):
        neighbours, dedupe = CANDIDATES[name]

        def f(q: str) -> list:
            top = ranked[q][:K] if not dedupe else ranked[q]
            wins = [window(sents, chunks, ci, dense[q], lexs[q], lam, neighbours) for ci in top]
            out, used = regions(doc_text, [w for w, _ in wins], K, dedupe)
            if cost is not None:  # sentences scored for the hits that were used
                cost[q] = len({s for _, c in wins[:used] for s in c})
            return out
        return f

    base_spans = {q: [(chunks.doc_ids[i], chunks.starts[i], chunks.ends[i]) for i in ranked[q][:K]] for q in ds.query_ids}
    out: dict = {"schema": "default@2", "fusion": DEFAULT_HYBRID.label(), "k": K, "depth": DEPTH, "lam_grid_per_100_chars": list(LAMS),
                 "sentence_bm25": "LexicalIndex over every sentence of the corpus (sentence-level IDF)",
                 "corpus": {"chunks": len(chunks.texts), "sentences": len(sents.texts)}, "candidates": {}}
    out["candidates"]["baseline"] = {p: evaluate(part, base_spans.__getitem__) for p, part in zip(("tune", "report", "all"), (tune, report, ds))}

    def oracle(q: str) -> list:  # headroom, not a candidate: each hit's minimal sentence run covering the reference
        refs, res = [(s.doc_id, s.start, s.end) for s in ds.spans[q]], []
        for ci in ranked[q][:K]:
            ids = sents.of_chunk[ci]
            hit = [i for i in ids if any(d == sents.doc[i] and min(e, sents.end[i]) > max(s, sents.start[i]) for d, s, e in refs)]
            i, j = (hit[0], hit[-1]) if hit else (min(ids, key=lambda i: sents.chars[i]),) * 2 if ids else (None, None)
            res.append((sents.doc[i], sents.start[i], sents.end[j]) if i is not None else (chunks.doc_ids[ci], chunks.starts[ci], chunks.ends[ci]))
        return res
    out["oracle_window_uses_references"] = {p: evaluate(part, oracle) for p, part in zip(("tune", "report", "all"), (tune, report, ds))}
    print(f"baseline {json.dumps(out['candidates']['baseline'])}", flush=True)
    floor = out["candidates"]["baseline"]["tune"]["recall"]
    for name in CANDIDATES:
        grid = {lam: evaluate(tune, spans_of(name, lam)) for lam in LAMS}
        ok = [lam for lam in LAMS if grid[lam]["recall"] >= floor]
        lam = max(ok, key=lambda x: (grid[x]["iou"], grid[x]["recall"])) if ok else max(LAMS, key=lambda x: (grid[x]["recall"], grid[x]["iou"]))
        cost: dict = {}
        row = {"lam": lam, "tune": grid[lam], "report": evaluate(report, spans_of(name, lam)),
               "all": evaluate(ds, spans_of(name, lam, cost)),
               "sentences_scored_per_question": round(float(np.mean(list(cost.values()))), 1),
               "tune_grid": {str(x): grid[x] for x in LAMS}}
        out["candidates"][name] = row
        print(f"[{time.time() - t0:.0f}s] {name} lam={lam}: " + json.dumps({p: row[p] for p in ("tune", "report", "all")}), flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    if not args.smoke:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({n: {p: c[p] for p in ("lam", "tune", "report", "all") if p in c} for n, c in out["candidates"].items()}, indent=1))


if __name__ == "__main__":
    main()
