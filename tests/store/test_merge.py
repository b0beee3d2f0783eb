"""The merge policy, merges and compaction as their own atomic steps, ANN segments and their recall."""

from __future__ import annotations

import os

import faiss
import numpy as np
import pytest

import ragindex.store.segments as segments
from ragindex.indexing.repair import verify
from ragindex.indexing.run import reindex
from ragindex.search.generation import load_generation
from ragindex.search.searcher import Searcher
from ragindex.store.maintenance import compact
from ragindex.store.manifests import Manifest, SegmentRef, current_id, list_generations, live_manifest, read_manifest
from ragindex.store.merge import DELETED_SHARE, FOLD_SHARE, plan_merges
from ragindex.store.writer import TenantWriter
from tests.support.data import passage_docs
from tests.support.folders import OLD, make_folder
from tests.support.tenants import writing

QUERIES = ["million dollars of debt", "gene expression", "the president and the congress", "a role-playing video game"]


def _manifest(refs: list[tuple[int, int]]) -> Manifest:
    """A manifest over segments of (rows, deleted rows); one document per row."""
    segs = [SegmentRef(id=f"seg-20260101T000000{i:06d}Z-0000000{i % 10}", rows=r, docs=r, deleted_rows=d, deleted_docs=d)
            for i, (r, d) in enumerate(refs)]
    return Manifest(generation="20260101T000000000000Z-00000000", tenant="t", created_at="", chunker="c", chunker_fp="f",
                    embedder="e", embedder_fp="g", dim=8, segments=segs, documents=0, chunks=0, docs_digest="0" * 64)


def test_policy_merges_a_full_tier_and_rewrites_heavily_deleted_segments():
    assert plan_merges(_manifest([(15000, 0)] + [(300, 0)] * 9)) == []  # nine small ones: below the merge factor
    specs = plan_merges(_manifest([(15000, 0)] + [(300, 0)] * 10))
    assert len(specs) == 1 and len(specs[0].segments) == 10 and "tier 0" in specs[0].reason
    heavy = int(5000 * DELETED_SHARE) + 1
    specs = plan_merges(_manifest([(5000, heavy), (300, 0)]))
    assert specs[0].segments == ("seg-20260101T000000000000Z-00000000",) and "deleted" in specs[0].reason
    assert plan_merges(_manifest([(5000, heavy - 2), (300, 0)])) == []
    assert plan_merges(_manifest([(5000, 0), (300, 200)])) == []  # a small segment waits for its tier


def test_policy_folds_small_segments_into_an_ann_segment():
    big = segments.APPROX_THRESHOLD
    assert plan_merges(_manifest([(big, 0), (int(big * FOLD_SHARE) - 10, 0)])) == []
    specs = plan_merges(_manifest([(big, 0), (int(big * FOLD_SHARE) + 10, 0)]))
    assert specs[0].fold_into == "seg-20260101T000000000000Z-00000000" and len(specs[0].segments) == 2


def _results(store, emb, tenant="acme"):
    s = Searcher(store, emb)
    return [[(h.doc_id, h.start, h.end, round(h.score, 6)) for h in s.search(tenant, q, k=10)] for q in QUERIES]


def test_ten_small_runs_merge_into_one_segment_with_the_same_results(store, hash_embedder, tmp_path):
    folder = make_folder(tmp_path / "docs", passage_docs(40))
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    merged_at = None
    for i in range(10):
        f = sorted(folder.iterdir())[i]
        f.write_text(f.read_text() + f"\nRevision {i}.\n")
        os.utime(f, (OLD + 10 + i, OLD + 10 + i))  # an edit made a while ago (not racily clean: read once)
        res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
        if res.maintenance.merges:
            merged_at = i
            break
    assert merged_at == 8  # the first segment plus nine small ones: ten in tier 0
    paths = store.paths("acme")
    m = live_manifest(paths)
    assert m.kind == "merge" and len(m.segments) == 1 and m.segments[0].deleted_rows == 0
    parent = read_manifest(paths, m.parent)
    assert len(parent.segments) == 10 and (parent.documents, parent.chunks, parent.docs_digest) == (m.documents, m.chunks, m.docs_digest)
    fresh_store = type(store)(tmp_path / "fresh")
    reindex(fresh_store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert _results(store, hash_embedder) == _results(fresh_store, hash_embedder)
    assert verify(paths)["ok"]


def test_compact_keeps_results_and_rollback_goes_to_the_content_before(store, hash_embedder, tmp_path):
    folder = make_folder(tmp_path / "docs", passage_docs(40))
    first = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    sorted(folder.iterdir())[0].unlink()
    f = sorted(folder.iterdir())[1]
    f.write_text(f.read_text() + "\nChanged.\n")
    second = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    paths = store.paths("acme")
    before = _results(store, hash_embedder)
    with TenantWriter(store, "acme"):
        done = compact(store, "acme")
    m = live_manifest(paths)
    assert len(done.merges) == 1 and len(m.segments) == 1 and m.segments[0].deleted_rows == 0
    assert _results(store, hash_embedder) == before
    with TenantWriter(store, "acme"):
        assert compact(store, "acme").merges == []  # already compact: nothing to do
    from ragindex.store.generations import rollback

    with writing(paths):
        assert rollback(paths) == first.generation  # the content before the second run, not the pre-merge copy of it
    assert current_id(paths) == first.generation and second.generation in list_generations(paths)


def test_heavily_deleted_segment_is_rewritten_and_gc_frees_it(store, hash_embedder, tmp_path, monkeypatch):
    monkeypatch.setenv("RAGINDEX_KEEP_GENERATIONS", "1")
    folder = make_folder(tmp_path / "docs", passage_docs(500))
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    paths = store.paths("acme")
    old_seg = live_manifest(paths).segments[0].id
    assert live_manifest(paths).chunks >= 1000  # big enough for the deleted-share rule (small ones merge by tier)
    for f in sorted(folder.iterdir())[:150]:  # 30% of the documents
        f.unlink()
    res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.maintenance.merges and "deleted" in res.maintenance.merges[0]["reason"]
    m = live_manifest(paths)
    assert len(m.segments) == 1 and m.segments[0].deleted_rows == 0 and m.documents == 350
    # keep 1: the live merge generation, and its content's parent (the first run) for rollback
    assert old_seg in {d.name for d in paths.segments.iterdir()}
    g = sorted(folder.iterdir())[0]
    g.write_text(g.read_text() + "\nOne more run.\n")
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert old_seg not in {d.name for d in paths.segments.iterdir()}  # no kept generation names it any more
    assert verify(paths)["ok"]


def _exact_recall(gen, queries: np.ndarray, k: int = 10) -> float:
    """recall@k of the generation's search against exact search over the same live vectors."""
    live_vecs, keys = [], []
    for s, v in enumerate(gen.views):
        vecs = segments.vectors_of(v.seg.index)
        mask = v.mask if v.mask is not None else np.ones(len(vecs), bool)
        live_vecs.append(vecs[mask])
        keys += [(s, int(r)) for r in np.nonzero(mask)[0]]
    flat = faiss.IndexFlatIP(queries.shape[1])
    flat.add(np.concatenate(live_vecs))
    _, exact = flat.search(queries, k)
    got = gen.search(queries, k)
    hits = sum(len({keys[i] for i in exact[q]} & {(c.seg, c.row) for c in got[q]}) for q in range(len(queries)))
    return hits / (k * len(queries))


def test_ann_segments_keep_recall_with_deletions_and_after_a_fold(store, tmp_path, monkeypatch):
    """HNSW segments (threshold lowered so a small corpus gets one): recall@10 against exact search >= 0.95,
    with deleted rows filtered inside the graph search and after small segments are folded into the graph."""
    from ragindex.embedders.local import HashEmbedder

    monkeypatch.setattr(segments, "APPROX_THRESHOLD", 300)
    emb = HashEmbedder(dim=64)
    from ragindex.indexing.plan import Throughput

    Throughput(store.root).record(emb, 100_000, 1.0)
    folder = make_folder(tmp_path / "docs", passage_docs(400))
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=emb)
    paths = store.paths("acme")
    assert segments.read_info(paths, live_manifest(paths).segments[0].id).index_type.startswith("hnsw")
    rng = np.random.default_rng(0)
    files = sorted(folder.iterdir())
    for f in files[:30]:
        f.unlink()
    folded = False
    for i, f in enumerate(files[30:130]):
        f.write_text(f.read_text() + f"\nAddendum {i}.\n")
        if i % 20 == 19:
            res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=emb)
            folded |= any(m["inputs"] and "HNSW" in m["reason"] for m in res.maintenance.merges)
    assert folded
    for f in files[130:135]:  # a few deletions after the last fold (too few for a rewrite): the graph keeps them
        f.unlink()
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=emb)
    gen = load_generation(paths, current_id(paths))
    assert any(v.mask is not None for v in gen.views)  # the graph carries deleted rows, filtered at search time
    queries = emb.embed([f"query {i} {w}" for i, w in enumerate(rng.choice(["cell", "gene", "tumor", "drug"], 50))])
    assert _exact_recall(gen, queries) >= 0.95
    assert verify(paths)["ok"]


@pytest.mark.parametrize("k", [1, 7, 50])
def test_search_over_segments_returns_k_live_hits(store, hash_embedder, tmp_path, k):
    folder = make_folder(tmp_path / "docs", passage_docs(30))
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    for f in sorted(folder.iterdir())[:5]:
        f.write_text(f.read_text() + "\nMore.\n")
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    hits = Searcher(store, hash_embedder).search("acme", "cancer", k=k)
    assert len(hits) == k and [h.rank for h in hits] == list(range(1, k + 1))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
