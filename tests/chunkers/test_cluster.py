"""The ``cluster`` kind: its dynamic programme is exact, it cuts at topic changes, and its identity includes the model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ragindex.chunkers import build_chunker
from ragindex.chunkers.cluster import EmbeddingsRequired, segment
from ragindex.chunkers.tokenizers import get_tokenizer
from ragindex.schemas.chunker import _ADAPTER
from ragindex.schemas.registry import PACKAGE_DIR, SchemaRegistry
from tests.chunkers.invariants import violations


def _reward(vecs: np.ndarray, runs: list[tuple[int, int]]) -> float:
    """The objective, computed the study's way: the full similarity matrix, centred, diagonal zeroed."""
    v = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    sim = v @ v.T
    sim = sim - sim[np.triu_indices(len(v), 1)].mean()
    np.fill_diagonal(sim, 0.0)
    return float(sum(sim[a : b + 1, a : b + 1].sum() for a, b in runs))


def _all_splits(n: int, max_run: int):
    for cuts in itertools.product((False, True), repeat=n - 1):
        runs, a = [], 0
        for i, cut in enumerate(cuts):
            if cut:
                runs.append((a, i))
                a = i + 1
        runs.append((a, n - 1))
        if max(b - a + 1 for a, b in runs) <= max_run:
            yield runs


@pytest.mark.parametrize("seed", range(40))
def test_segment_is_the_best_split_by_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    n, max_run = int(rng.integers(2, 10)), int(rng.integers(1, 5))
    vecs = rng.normal(size=(n, 8))
    runs = segment(vecs, max_run)
    assert runs[0][0] == 0 and runs[-1][1] == n - 1
    assert all(b + 1 == c for (_, b), (c, _) in zip(runs, runs[1:])), "runs must tile the pieces"
    assert max(b - a + 1 for a, b in runs) <= max_run
    best = max(_reward(vecs, r) for r in _all_splits(n, max_run))
    assert _reward(vecs, runs) == pytest.approx(best, abs=1e-9)


def test_segment_never_exceeds_the_run_length_even_when_every_join_costs():
    # All pieces mutually dissimilar-ish: the study's code (dp initialised to 0, `>`)
    # can then return one run over the whole range; the limit must hold regardless.
    vecs = np.eye(12)
    runs = segment(vecs, 3)
    assert max(b - a + 1 for a, b in runs) <= 3


TOPICS = {"cat": 0, "kitten": 0, "purr": 0, "whisker": 0, "rocket": 1, "orbit": 1, "launch": 1, "fuel": 1}


def _topic_embed(texts):
    """Two orthogonal directions: one for cat words, one for space words."""
    out = np.full((len(texts), 2), 1e-3)
    for i, t in enumerate(texts):
        for w in t.lower().replace(".", " ").split():
            if w in TOPICS:
                out[i, TOPICS[w]] += 1.0
    return out


def _cluster(size: int = 48, piece: int = 12):
    return _ADAPTER.validate_python(dict(kind="cluster", tokenizer="cl100k_base", size=size, piece_size=piece))


def test_chunks_follow_topic_changes_not_piece_counts():
    cats = "The cat and the kitten purr. A whisker on the cat. "
    space = "The rocket needs fuel to launch. The orbit is high. "
    # Blocks of unequal length, so fixed-size cuts would straddle the boundaries.
    text = (cats * 3 + "\n\n" + space * 5 + "\n\n" + cats * 2 + "\n\n" + space).strip()
    spec = _cluster()
    spans = build_chunker(spec, embed=_topic_embed).chunk(text)
    assert not violations(text, spans, spec)
    for sp in spans:
        words = set(text[sp.start : sp.end].lower().replace(".", " ").split())
        topics = {TOPICS[w] for w in words if w in TOPICS}
        assert len(topics) == 1, f"chunk mixes topics: {text[sp.start:sp.end]!r}"


def test_needs_embeddings_and_says_so():
    text = "One sentence here. " * 40
    with pytest.raises(EmbeddingsRequired, match="needs embeddings"):
        build_chunker(_cluster()).chunk(text)
    # One piece is its own chunk: nothing to cluster, so nothing to embed.
    assert len(build_chunker(_cluster()).chunk("short text")) == 1


def test_pieces_and_chunks_respect_their_sizes():
    spec = _cluster(size=40, piece=10)
    text = " ".join(f"word{i} is here." for i in range(200))
    ch = build_chunker(spec, embed=lambda ts: np.random.default_rng(len(ts)).normal(size=(len(ts), 4)))
    tok = get_tokenizer(spec.tokenizer)
    assert all(tok.count(text[p.start : p.end]) <= 10 for p in ch.pieces(text))
    spans = ch.chunk(text)
    assert not violations(text, spans, spec)
    assert len(spans) < len(ch.pieces(text)), "pieces were joined"


def test_schema_validation_names_the_problem():
    with pytest.raises(ValueError, match="no overlap"):
        _ADAPTER.validate_python(dict(kind="cluster", tokenizer="cl100k_base", size=200, overlap=10))
    with pytest.raises(ValueError, match="must not exceed size"):
        _ADAPTER.validate_python(dict(kind="cluster", tokenizer="cl100k_base", size=32, piece_size=50))


def test_chunk_fingerprint_includes_the_embedder_only_where_chunks_depend_on_it():
    reg = SchemaRegistry(PACKAGE_DIR)
    cluster, default = reg.get("cluster-200@1"), reg.get("default@1")
    assert cluster.needs_embeddings and not default.needs_embeddings
    a, b = cluster.chunk_fingerprint("model-a"), cluster.chunk_fingerprint("model-b")
    assert a != b and cluster.fingerprint() not in (a, b)
    assert default.chunk_fingerprint("model-a") == default.chunk_fingerprint("model-b") == default.fingerprint()
