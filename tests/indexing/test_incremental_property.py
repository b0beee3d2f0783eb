"""Property: any sequence of edits, deletes, adds, renames, touches, schema changes and compactions,
indexed run by run, searches exactly like a fresh full build of the final corpus (exact indexes), in every
mode: BM25 statistics are the whole generation's, so segment boundaries never change a score.

Copies make identical chunks, hence equal scores: results must not depend on which segment a tied chunk
sits in, so search breaks ties by chunk id and asks a segment for more when a tie straddles the cut."""

from __future__ import annotations

import os
import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragindex.embedders.local import HashEmbedder
from ragindex.indexing.repair import verify
from ragindex.indexing.run import reindex
from ragindex.search.searcher import Searcher
from ragindex.store.manifests import live_manifest
from ragindex.store.tenants import TenantStore
from ragindex.store.writer import TenantWriter
from tests.support.data import passage_docs
from tests.support.folders import OLD, make_folder

POOL = passage_docs(60)
QUERIES = ["net operating loss carry-forwards", "gene expression of the parasite", "the president and congress",
           "game development", "the", POOL[3]["title"], POOL[41]["title"]]
SCHEMAS = ("recursive-200@1", "recursive-250@1")

ops = st.lists(st.tuples(st.sampled_from(["edit", "delete", "add", "copy", "rename", "touch", "schema", "compact", "noop"]),
                         st.integers(0, 10_000)), min_size=1, max_size=7)


def _apply(folder, op: str, n: int, state: dict) -> None:
    files = sorted(folder.iterdir())
    f = files[n % len(files)] if files else None
    if op == "edit" and f:
        f.write_text(f.read_text() + f"\nEdit {n}: results were revised.\n")
        os.utime(f, (OLD + n, OLD + n))
    elif op == "delete" and f and len(files) > 1:
        f.unlink()
    elif op == "add":
        d = POOL[30 + n % 30]
        g = folder / f"added-{n}.md"
        g.write_text(f"# {d['title']}\n\n{d['text']}\n")
        os.utime(g, (OLD, OLD))
    elif op == "copy" and f:  # identical chunks in another document: equal scores, so ties at the cut
        g = folder / f"copy-{n}-{f.name}"
        g.write_text(f.read_text())
        os.utime(g, (OLD, OLD))
    elif op == "rename" and f:
        f.rename(folder / f"moved-{n}-{f.name}")
    elif op == "touch" and f:
        os.utime(f, (OLD + 7 + n, OLD + 7 + n))
    elif op == "schema":
        state["schema"] = SCHEMAS[(SCHEMAS.index(state["schema"]) + 1) % 2]


def _results(store: TenantStore, emb) -> list:
    """Every mode: dense (FAISS per segment), bm25 (generation-wide statistics), hybrid (both, fused) and
    hybrid-ctx (BM25 over windows, whose statistics are the whole generation's too)."""
    s = Searcher(store, emb)
    return [[(h.doc_id, h.start, h.end, h.text, round(h.score, 5)) for h in s.search("acme", q, k=15, mode=mode)]
            for q in QUERIES for mode in ("dense", "bm25", "hybrid", "hybrid-ctx")]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequence=ops, start=st.integers(5, 25))
def test_incremental_equals_full_rebuild(tmp_path_factory, monkeypatch, sequence, start):
    monkeypatch.setenv("RAGINDEX_MERGE_FACTOR", "3")  # merges happen within a handful of runs
    work = tmp_path_factory.mktemp("prop")
    folder = make_folder(work / "docs", POOL[:start])
    emb = HashEmbedder()
    inc = TenantStore(work / "incremental")
    state = {"schema": SCHEMAS[0]}
    reindex(inc, "acme", source=folder, chunker=state["schema"], embedder=emb)
    for op, n in sequence:
        _apply(folder, op, n, state)
        if op == "compact":
            with TenantWriter(inc, "acme") as w:
                w.compact()
        else:
            reindex(inc, "acme", source=folder, chunker=state["schema"], embedder=emb)
    fresh = TenantStore(work / "fresh")
    reindex(fresh, "acme", source=folder, chunker=state["schema"], embedder=emb)
    assert _results(inc, emb) == _results(fresh, emb)
    a, b = live_manifest(inc.paths("acme")), live_manifest(fresh.paths("acme"))
    assert (a.documents, a.chunks, a.docs_digest, a.versions) == (b.documents, b.chunks, b.docs_digest, b.versions)
    assert verify(inc.paths("acme"))["ok"]
    shutil.rmtree(work, ignore_errors=True)
