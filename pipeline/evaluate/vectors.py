"""Embedding for evaluation, through a per-dataset cache keyed by (embedder_fp, text_hash).

Evaluating a chunker that changed only partly embeds only the chunk texts it has
not seen before; queries go through the same cache. The cache is the pipeline's
own :class:`~pipeline.store.cache.EmbeddingCache` (one DuckDB file per dataset under
``$RAGINDEX_HOME/eval/<dataset>/``), so its ledger records what each evaluation
actually paid.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ragindex.fsutil import sha256_text
from ragindex.store.cache import EmbeddingCache
from ragindex.store.paths import home

COMMIT_EVERY = 1024  # texts per committed batch: a killed run keeps what it embedded


def eval_cache_path(dataset_key: str, root: Path | None = None) -> Path:
    """``$RAGINDEX_HOME/eval/<dataset_key>/embeddings.duckdb``."""
    return (root or home()) / "eval" / dataset_key / "embeddings.duckdb"


@dataclass
class EmbedStats:
    """What one evaluation asked for and what it actually embedded."""

    texts: int = 0
    unique_texts: int = 0
    cache_hits: int = 0
    embedded: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def add(self, other: "EmbedStats") -> None:
        for f in ("texts", "unique_texts", "cache_hits", "embedded", "tokens"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.seconds += other.seconds


@dataclass(frozen=True)
class _Plan:
    # The fields EmbeddingCache.start_run reads.
    texts_to_embed: int
    tokens_to_embed: int
    cost_usd: float = 0.0
    vectors_reused: int = 0


@dataclass
class CachedEmbedder:
    """Embeds texts through one dataset's cache; the model is built only on a cache miss."""

    cache_path: Path
    build: Callable[[], object]
    label: str = "eval"
    progress: Callable[[str], None] | None = None
    stats: EmbedStats = field(default_factory=EmbedStats)
    _embedder: object | None = None

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = self.build()
        return self._embedder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for ``texts`` in order, embedding only texts the cache lacks."""
        emb = self.embedder
        hashes = [sha256_text(t) for t in texts]
        uniq = dict(zip(hashes, texts))
        st = EmbedStats(texts=len(texts), unique_texts=len(uniq))
        t0 = time.perf_counter()
        with EmbeddingCache(self.cache_path) as cache:
            have = cache.cached_hashes(emb.fingerprint, list(uniq))
            # Longest first, so each committed slice batches texts of similar length.
            missing = sorted((h for h in uniq if h not in have), key=lambda h: -len(uniq[h]))
            st.cache_hits = len(uniq) - len(missing)
            if missing:
                run_id = hashlib.sha256(f"{self.label}|{time.time_ns()}|{missing[0]}".encode()).hexdigest()[:16]
                tokens = emb.token_counts([uniq[h] for h in missing])
                cache.start_run(run_id, "eval", self.label, emb.fingerprint, emb.device, _Plan(len(missing), int(sum(tokens)), 0.0, st.cache_hits))
                for i in range(0, len(missing), COMMIT_EVERY):
                    part = missing[i : i + COMMIT_EVERY]
                    t1 = time.perf_counter()
                    vecs = emb.embed([uniq[h] for h in part])
                    secs = time.perf_counter() - t1
                    cache.commit_batch(run_id, emb.fingerprint, part, vecs, tokens[i : i + COMMIT_EVERY], 0, secs, 0.0)
                    if self.progress:
                        self.progress(f"{self.label}: embedded {min(i + COMMIT_EVERY, len(missing))}/{len(missing)} texts")
                cache.finish_run(run_id)
                st.embedded = len(missing)
                st.tokens = int(sum(tokens))
            out = cache.vectors(emb.fingerprint, hashes, emb.dim)
        st.seconds = time.perf_counter() - t0
        self.stats.add(st)
        return out
