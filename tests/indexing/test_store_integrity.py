"""Issue 23 (Hardening II), the consistency gate: a run never promotes a generation that names a damaged segment.

The gate used to check only the run's new segment; an older segment the new generation
shares by reference could be truncated and the run still promoted a generation nothing
could search.
"""

from __future__ import annotations

import json

from ragindex.indexing.checks import consistency_gate, verified_segments
from ragindex.indexing.repair import verify
from ragindex.search.searcher import Searcher
from ragindex.store.manifests import current_id, live_manifest
from tests.support.cli import ragindex
from tests.support.data import passage_docs
from tests.support.folders import make_folder
from tests.support.tenants import writing


def _add_a_document(folder):
    make_folder(folder, [dict(passage_docs(31)[30], _id="added-later")])


def test_a_truncated_older_segment_fails_the_run_and_stays_unpromoted(store, hash_embedder, indexed_folder):
    folder, first = indexed_folder
    paths = store.paths("acme")
    old = live_manifest(paths).segments[0].id
    f = paths.segments / old / "index.faiss"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    _add_a_document(folder)  # the run adds one small segment and shares the damaged one by reference
    res = ragindex("reindex", "-t", "acme", "--source", str(folder), "--chunker", "recursive-200@1", "--json")
    assert res.exit_code == 5, res.output
    err = json.loads(res.stdout)["error"]
    assert err["kind"] == "checks failed" and "index_consistency" in err["message"]
    assert old in err["message"] and "verify --tenant acme --repair" in err["message"]
    assert current_id(paths) == first.generation  # the previous generation stays live
    with writing(paths):
        assert verify(paths, repair=True)["status"] == "repaired"
    again = ragindex("reindex", "-t", "acme", "--source", str(folder), "--chunker", "recursive-200@1")
    assert again.exit_code == 0, again.output
    assert any(h.doc_id == "added-later.md" for h in Searcher(store, hash_embedder).search("acme", "cancer", k=200))


def test_the_gate_checks_every_segment_it_names_not_only_the_new_one(store, hash_embedder, indexed_folder):
    paths = store.paths("acme")
    live = live_manifest(paths)
    seg = live.segments[0].id
    ok = consistency_gate(paths, live, live.documents, live.chunks, None, 0)
    assert ok.passed, ok.summary
    f = paths.segments / seg / "lexical.npz"
    f.write_bytes(f.read_bytes()[:-10])
    bad = consistency_gate(paths, live, live.documents, live.chunks, None, 0)
    assert not bad.passed and seg in bad.summary and "lexical.npz" in bad.summary


def test_a_verified_segment_is_hashed_once_per_process_until_its_files_change(store, hash_embedder, indexed_folder):
    paths = store.paths("acme")
    seg = live_manifest(paths).segments[0].id
    verified_segments.clear()
    assert verified_segments.problems(paths, seg) == [] and verified_segments.hashed == 1
    assert verified_segments.problems(paths, seg) == [] and verified_segments.hashed == 1  # cached: same files
    f = paths.segments / seg / "rows.parquet"
    f.write_bytes(f.read_bytes()[:-1])
    assert verified_segments.problems(paths, seg) and verified_segments.hashed == 2  # a changed file is hashed again
