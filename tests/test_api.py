"""The Python API (pipeline.api): everything a user does, through one import, on real data."""

from __future__ import annotations

import pytest

from ragindex.api import Ragindex
from ragindex.search.filters import FilterError, parse
from ragindex.store.manifests import live_manifest
from tests.support.data import passage_docs, write_jsonl
from tests.support.folders import make_folder


def test_the_documented_session(store, hash_embedder, tmp_path):
    docs = passage_docs(40)
    for i, d in enumerate(docs):
        d["metadata"] = {"team": "security" if i < 10 else "search", "year": 2010 + i % 10, "tags": {"lang": "en"}}
    src = write_jsonl(tmp_path / "acme.jsonl", docs)
    rx = Ragindex(home=store.root, model="hash")
    acme = rx.tenant("acme")
    acme.add(source=src, chunker="recursive-200@1", mode="hybrid")
    assert rx.tenants() == ["acme"] and acme.settings.mode == "hybrid"
    plan = acme.plan()
    assert plan.texts_to_embed > 0 and plan.docs_new == 40
    result = acme.reindex(max_cost=1.0)
    assert result.status == "promoted" and result.ledger["texts"] == plan.texts_to_embed
    assert acme.reindex().status == "unchanged"
    hits = acme.search("how do I rotate keys?", k=5, filter={"team": "security"})
    assert len(hits) == 5 and {h.doc_id for h in hits} <= {d["_id"] for d in docs[:10]}
    nested = acme.search("million", k=3, mode="bm25", filter={"tags.lang": "en", "year": {">=": 2015}})
    assert nested and all(docs[[d["_id"] for d in docs].index(h.doc_id)]["metadata"]["year"] >= 2015 for h in nested)
    batch = acme.search_many(["million", "development"], k=2, mode="bm25")  # words of 10 and 9 of the 40
    assert [len(b) for b in batch] == [2, 2] and batch[0][0].generation == result.generation
    status = acme.status()
    assert status["generation"] == result.generation and status["ledger"]["texts"] == result.ledger["texts"]
    assert [g["generation"] for g in acme.generations()] == [result.generation]
    assert acme.verify()["status"] == "ok"
    moved = acme.migrate("recursive-250@1")
    assert moved.status == "promoted" and live_manifest(store.paths("acme")).chunker == "recursive-250@1"
    assert acme.rollback() == result.generation and acme.settings.chunker == "recursive-200@1"
    assert acme.remove()["removed"] and not acme.exists


def test_folder_paths_filter_by_prefix_and_glob(store, hash_embedder, tmp_path):
    root = tmp_path / "docs"
    make_folder(root / "guides", passage_docs(10))
    make_folder(root / "ops" / "runbooks", passage_docs(20)[10:])
    rx = Ragindex(home=store.root, model="hash")
    t = rx.tenant("acme")
    t.add(source=root, chunker="recursive-200@1")
    t.reindex()
    hits = t.search("cells", k=10, filter={"path": {"prefix": "ops/"}})
    assert len(hits) == 10 and all(h.doc_id.startswith("ops/runbooks/") for h in hits)
    assert all(h.doc_id.startswith("guides/") for h in t.search("cells", k=5, filter={"path": {"glob": "guides/*.md"}}))
    assert t.search("cells", k=5, filter={"not": {"path": {"prefix": "ops/"}}})[0].doc_id.startswith("guides/")
    assert t.search("cells", k=5, filter={"path": {"prefix": "nowhere/"}}) == []


@pytest.mark.parametrize("bad", ["{", [], {}, {"and": []}, {"x": {"~=": 1}}, {"x": {"in": 3}}, {"path": {"prefix": 3}},
                                 {"or": [{"a": 1}] * 70}])
def test_bad_filters_are_refused_with_a_reason(bad):
    with pytest.raises(FilterError):
        parse(bad)
