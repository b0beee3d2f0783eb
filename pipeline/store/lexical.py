"""BM25 over a tenant's chunks: one term-frequency matrix per segment, scored with the live generation's statistics.

Each segment stores ``lexical.npz``: the term ids it holds, the term frequencies
of its rows (a sparse matrix, rows x those terms, column-major so a query reads
only its terms' columns) and each row's length in terms. Text is tokenised by bm25s (its word
pattern and English stop words) and stemmed by PyStemmer's Snowball stemmer; a
term is identified by the CRC32 of its stem, so segments written at different
times agree on term ids without a shared vocabulary file.

Scores are computed at query time from statistics of the whole live generation,
as Lucene's IndexSearcher does across segments: document frequencies counted over
live rows of every segment, deleted rows excluded, and the average row length of
the live rows. (bm25s itself bakes each index's IDF into its scores, which is
right for one index but not for segments written at different times.) So a
generation of many segments ranks exactly as one segment holding the same rows.
BM25 with Lucene's IDF, ``ln(1 + (N - df + 0.5) / (df + 0.5))``, k1 = 1.2, b = 0.75.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import scipy.sparse as sp

K1 = 1.2
B = 0.75
HASH_SPACE = 1 << 24  # term ids: CRC32 of the stem, folded; collisions among ~10^5 real terms are rare and harmless


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str]) -> list[np.ndarray]:
    """Each text as an array of term ids (stemmed, stop words removed), in order."""
    import bm25s

    if not texts:
        return []
    tok = bm25s.tokenize(list(texts), stopwords="en", stemmer=_stemmer(), return_ids=True, show_progress=False)
    lookup = np.zeros(len(tok.vocab), dtype=np.int64)
    for term, i in tok.vocab.items():
        lookup[i] = zlib.crc32(term.encode("utf-8")) % HASH_SPACE
    return [lookup[np.asarray(ids, dtype=np.int64)] if len(ids) else np.zeros(0, np.int64) for ids in tok.ids]


@dataclass
class LexicalIndex:
    """The BM25 side of one segment: the terms it holds, their frequencies per row (CSC), row lengths."""

    terms: np.ndarray  # int64, sorted: the term ids present in this segment (column j is terms[j])
    tf: sp.csc_matrix  # rows x len(terms)
    doc_len: np.ndarray  # int32, terms per row (float32 in a window index: see windowed)

    @property
    def rows(self) -> int:
        return self.tf.shape[0]

    @classmethod
    def build(cls, texts: Sequence[str]) -> "LexicalIndex":
        ids = tokenize(texts)
        flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        terms, cols = np.unique(flat, return_inverse=True)
        rows = np.repeat(np.arange(len(ids), dtype=np.int64), [len(x) for x in ids])
        tf = sp.coo_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(ids), len(terms))).tocsc()
        tf.sum_duplicates()
        return cls(terms.astype(np.int64), tf, np.asarray([len(x) for x in ids], dtype=np.int32))

    @classmethod
    def stack(cls, parts: list["LexicalIndex"]) -> "LexicalIndex":
        """One index whose rows are the parts' rows, in order (a merge)."""
        if not parts:
            return cls.build([])
        terms = np.unique(np.concatenate([p.terms for p in parts]))
        blocks = []
        for p in parts:
            m = p.tf.tocoo()
            cols = np.searchsorted(terms, p.terms)[m.col]
            blocks.append(sp.csr_matrix((m.data, (m.row, cols)), shape=(p.rows, len(terms))))
        return cls(terms, sp.vstack(blocks).tocsc(), np.concatenate([p.doc_len for p in parts]))

    def take(self, rows: np.ndarray) -> "LexicalIndex":
        return LexicalIndex(self.terms, self.tf.tocsr()[rows].tocsc(), self.doc_len[rows])

    def column(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, frequencies) of one term; empty when the segment does not hold it."""
        j = int(np.searchsorted(self.terms, term))
        if j >= len(self.terms) or self.terms[j] != term:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        lo, hi = self.tf.indptr[j], self.tf.indptr[j + 1]
        return self.tf.indices[lo:hi], self.tf.data[lo:hi]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, terms=self.terms, data=self.tf.data.astype(np.float32), indices=self.tf.indices.astype(np.int32),
                 indptr=self.tf.indptr.astype(np.int64), rows=np.array([self.rows], dtype=np.int64), doc_len=self.doc_len)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LexicalIndex":
        z = np.load(io.BytesIO(data), allow_pickle=False)
        terms = z["terms"]
        tf = sp.csc_matrix((z["data"], z["indices"], z["indptr"]), shape=(int(z["rows"][0]), len(terms)))
        return cls(terms, tf, z["doc_len"])


def windowed(lex: LexicalIndex, before: np.ndarray, after: np.ndarray, neighbour_weight: float) -> LexicalIndex:
    """The index of each row's window: its own terms and length, plus ``neighbour_weight`` times those of the
    rows just before and after it in its document (``before`` / ``after``: that row's index, or -1 for none).

    BM25 then scores a chunk with its context (``hybrid-ctx``): a question whose words fall on both sides of a
    chunk boundary still matches. A row with no neighbour (a document of one chunk) is its own window, scored
    exactly as without windows. The window is a linear map of the rows (``W @ tf``), so the statistics of a
    generation's windows add up over segments like the rows' own, and a window never reaches into another
    document. Term counts and lengths become fractional; BM25 takes them as they are."""
    rows = np.arange(lex.rows)
    has_b, has_a = before >= 0, after >= 0
    i = np.concatenate([rows, rows[has_b], rows[has_a]])
    j = np.concatenate([rows, before[has_b], after[has_a]])
    v = np.concatenate([np.ones(lex.rows, np.float32), np.full(int(has_b.sum() + has_a.sum()), neighbour_weight, np.float32)])
    w = sp.csr_matrix((v, (i, j)), shape=(lex.rows, lex.rows))
    tf = sp.csc_matrix(w @ lex.tf, dtype=np.float32)
    tf.sum_duplicates()
    tf.sort_indices()
    return LexicalIndex(lex.terms, tf, (w @ lex.doc_len.astype(np.float32)).astype(np.float32))


@dataclass
class Stats:
    """Collection statistics of a generation's live rows for one query."""

    n: int
    avgdl: float
    df: dict[int, int]


def query_terms(query: str) -> np.ndarray:
    ids = tokenize([query])[0]
    return np.unique(ids)


def collection_stats(parts: list[tuple[LexicalIndex, np.ndarray | None]], terms: np.ndarray) -> Stats:
    """N, average row length and document frequency of ``terms`` over the live rows of every segment."""
    n, total = 0, 0
    df = dict.fromkeys(terms.tolist(), 0)
    for lex, mask in parts:
        live = mask if mask is not None else None
        n += int(live.sum()) if live is not None else lex.rows
        lengths = lex.doc_len[live] if live is not None else lex.doc_len
        total += float(lengths.sum(dtype=np.float64))  # a window index's lengths are fractional
        for t in terms.tolist():
            col, _ = lex.column(t)
            df[t] += int(live[col].sum()) if live is not None else len(col)
    return Stats(n, total / n if n else 0.0, df)


def score(lex: LexicalIndex, mask: np.ndarray | None, terms: np.ndarray, stats: Stats) -> np.ndarray:
    """BM25 score of every row of one segment (deleted rows -inf), with the generation's statistics."""
    out = np.zeros(lex.rows, dtype=np.float32)
    if stats.n == 0:
        return out
    norm = (K1 * (1 - B + B * lex.doc_len / max(stats.avgdl, 1e-9))).astype(np.float32)
    for t in terms.tolist():  # sorted term ids: the same summation order in every layout
        df = stats.df.get(t, 0)
        if df == 0:
            continue
        idf = np.float32(np.log1p((stats.n - df + 0.5) / (df + 0.5)))
        rows, tf = lex.column(t)
        out[rows] += idf * tf * np.float32(K1 + 1) / (tf + norm[rows])
    if mask is not None:
        out[~mask] = -np.inf
    return out
