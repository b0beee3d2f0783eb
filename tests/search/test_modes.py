"""Retrieval modes over a tenant's segments: BM25 with generation-wide statistics, hybrid fusion, the tenant's
default mode, migration between schemas and modes, and rollback of a migration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ragindex.cli import main
from ragindex.indexing.run import reindex
from ragindex.search.hybrid import HybridParams, fuse
from ragindex.search.searcher import Searcher
from ragindex.store.lexical import LexicalIndex, collection_stats, query_terms, score
from ragindex.store.manifests import current_id, live_manifest
from ragindex.store.tenants import TenantSettings
from tests.support.data import passage_docs, write_jsonl
from tests.support.folders import make_folder
from tests.support.tenants import register, writing


def test_bm25_prefers_the_rare_term_and_matches_a_hand_computed_score():
    texts = ["the cat sat on the mat", "the dog chased the cat", "quantum chromodynamics of gluons", "cats and dogs"]
    lex = LexicalIndex.build(texts)
    terms = query_terms("gluons cat")
    stats = collection_stats([(lex, None)], terms)
    s = score(lex, None, terms, stats)
    assert int(np.argmax(s)) == 2  # the rare term outweighs the common one
    # By hand, for text 2 ("quantum chromodynamics of gluons": 3 terms after stop words), term "gluon" (df 1 of 4)
    idf = np.log1p((4 - 1 + 0.5) / (1 + 0.5))
    dl, avgdl = lex.doc_len[2], lex.doc_len.mean()
    assert s[2] == pytest.approx(idf * 1 * 2.2 / (1 + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl)), rel=1e-5)
    mask = np.array([True, True, False, True])
    assert np.isneginf(score(lex, mask, terms, collection_stats([(lex, mask)], terms))[2])  # a deleted row never scores


def test_fusion_methods_behave_as_documented():
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
    lexical = [("c", 12.0), ("d", 6.0), ("a", 1.0)]
    d_of = {"a": 0.9, "b": 0.8, "c": 0.1, "d": 0.05}
    l_of = {"a": 1.0, "b": 0.0, "c": 12.0, "d": 6.0}
    rrf = dict(fuse(dense, lexical, d_of, l_of, HybridParams("rrf", k_rrf=60)))
    assert rrf["a"] == pytest.approx(1 / 61 + 1 / 63) and rrf["b"] == pytest.approx(1 / 62)
    w = fuse(dense, lexical, d_of, l_of, HybridParams("weighted", alpha=0.5))
    assert [k for k, _ in w] == ["a", "c", "b", "d"]  # min-max over the union, then 0.5 / 0.5
    r = fuse(dense, lexical, d_of, l_of, HybridParams("rescore", alpha=1.0))
    assert [k for k, _ in r] == ["a", "c", "d"]  # BM25's candidates only, ordered by dense


def test_every_mode_searches_the_live_rows_only(store, hash_embedder, tmp_path):
    folder = make_folder(tmp_path / "docs", passage_docs(40))
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    gone = sorted(folder.iterdir())[5]
    words = gone.read_text().split()[3:9]
    gone.unlink()
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    s = Searcher(store, hash_embedder)
    for mode in ("dense", "bm25", "hybrid"):
        hits = s.search("acme", " ".join(words), k=10, mode=mode)
        assert hits and gone.name not in {h.doc_id for h in hits} and len(hits) <= 10


def test_the_tenant_mode_is_the_default_and_bm25_needs_no_model(store, hash_embedder, tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", passage_docs(30))
    register(store, "acme", TenantSettings(source=str(src), chunker="recursive-200@1", mode="bm25"))
    reindex(store, "acme", embedder=hash_embedder)
    title = passage_docs(30)[7]["title"]
    assert Searcher(store, hash_embedder).search("acme", title, k=1)[0].doc_id == passage_docs(30)[7]["_id"]
    # No model is built for bm25: a model that does not exist is never loaded.
    res = CliRunner().invoke(main, ["--model", "/no/such/model", "search", "-t", "acme", title, "--mode", "bm25", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["doc_id"] == passage_docs(30)[7]["_id"]


def test_tenants_add_mode_sets_the_default_search_mode_of_the_tenant(store, hash_embedder, tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", passage_docs(30))
    run = CliRunner()
    res = run.invoke(main, ["tenants", "add", "acme", "--source", str(src), "--chunker", "recursive-200@1", "--mode", "bm25"])
    assert res.exit_code == 0 and "search mode bm25" in res.output, res.output
    assert store.settings("acme").mode == "bm25"
    reindex(store, "acme", embedder=hash_embedder)
    title = passage_docs(30)[7]["title"]
    # Without --mode the tenant's bm25 is used: no model is needed, so a missing one is never loaded.
    res = run.invoke(main, ["--model", "/no/such/model", "search", "-t", "acme", title, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["doc_id"] == passage_docs(30)[7]["_id"]
    bad = run.invoke(main, ["tenants", "add", "acme", "--source", str(src), "--mode", "fuzzy"])
    assert bad.exit_code == 2 and "fuzzy" in bad.output


def test_a_damaged_lexical_file_is_rebuilt(store, hash_embedder, tmp_path):
    from ragindex.indexing.repair import verify

    src = write_jsonl(tmp_path / "a.jsonl", passage_docs(30))
    reindex(store, "acme", source=src, chunker="recursive-200@1", embedder=hash_embedder)
    paths = store.paths("acme")
    before = [(h.chunk_id, round(h.score, 5)) for h in Searcher(store, hash_embedder).search("acme", "cancer cells", 5, "bm25")]
    f = paths.segments / live_manifest(paths).segments[0].id / "lexical.npz"
    f.write_bytes(f.read_bytes()[:64])
    assert verify(paths)["status"] == "damaged"
    with writing(paths):
        assert verify(paths, repair=True)["status"] == "repaired"
    after = [(h.chunk_id, round(h.score, 5)) for h in Searcher(store, hash_embedder).search("acme", "cancer cells", 5, "bm25")]
    assert after == before


@pytest.fixture
def tenant_with_eval(store, hash_embedder, tmp_path):
    """A tenant on passage records with an eval set of its own (one query per document title)."""
    docs = passage_docs(40)
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    ev = tmp_path / "eval"
    (ev / "qrels").mkdir(parents=True)
    write_jsonl(ev / "corpus.jsonl", docs)
    write_jsonl(ev / "queries.jsonl", [{"_id": f"q{i}", "text": d["title"]} for i, d in enumerate(docs)])
    (ev / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\t{d['_id']}\t1\n" for i, d in enumerate(docs)))
    register(store, "acme", TenantSettings(source=str(src), chunker="recursive-200@1", eval_set=str(ev)))
    first = reindex(store, "acme", embedder=hash_embedder)
    return first


def test_migrate_then_rollback_restores_schema_mode_and_generation(store, hash_embedder, tenant_with_eval):
    from ragindex.indexing.migrate import migrate
    from ragindex.store.writer import TenantWriter

    paths = store.paths("acme")
    res = migrate(store, "acme", "recursive-250@1", embedder=hash_embedder, mode="bm25")
    m = live_manifest(paths)
    assert (m.chunker, m.search_mode) == ("recursive-250@1", "bm25") and res.status == "promoted"
    s = store.settings("acme")
    assert (s.chunker, s.mode) == ("recursive-250@1", "bm25")
    assert m.gates["quality_not_worse"]["passed"]
    with TenantWriter(store, "acme") as w:
        back = w.rollback()
    assert (back["to"], back["chunker"], back["mode"]) == (tenant_with_eval.generation, "recursive-200@1", "dense")
    assert (store.settings("acme").chunker, store.settings("acme").mode) == ("recursive-200@1", "dense")


def test_a_migration_that_scores_worse_is_not_promoted(store, hash_embedder, tenant_with_eval, monkeypatch):
    import ragindex.indexing.checks as checks

    live = current_id(store.paths("acme"))
    monkeypatch.setattr(checks, "tenant_quality",  # the quality gate's scorer
                        lambda store, tenant, gen, embedder, k=5, mode=None: {"ndcg@10": 0.9 if gen == live else 0.4})
    res = CliRunner().invoke(main, ["--model", "hash", "migrate", "-t", "acme", "--to", "recursive-250@1", "--json"])
    assert res.exit_code == 5 and "worse than live" in json.loads(res.stdout)["error"]["message"]
    assert current_id(store.paths("acme")) == live and store.settings("acme").chunker == "recursive-200@1"
    ok = CliRunner().invoke(main, ["--model", "hash", "migrate", "-t", "acme", "--to", "recursive-250@1",
                                   "--accept-regression", "shorter chunks for the new UI", "--json"])
    assert ok.exit_code == 0, ok.output
    m = live_manifest(store.paths("acme"))
    assert m.chunker == "recursive-250@1" and "shorter chunks" in m.gates["quality_not_worse"]["summary"]
    assert store.settings("acme").chunker == "recursive-250@1"


def test_a_tenant_pinned_to_the_old_default_keeps_its_schema_and_mode_new_tenants_get_the_new_default(store, hash_embedder, tmp_path):
    from ragindex.api import Ragindex
    from ragindex.schemas.registry import DEFAULT_SCHEMA
    from ragindex.search.searcher import DEFAULT_MODE, tenant_mode

    assert (DEFAULT_SCHEMA, DEFAULT_MODE) == ("default@3", "hybrid-ctx")
    src = write_jsonl(tmp_path / "a.jsonl", passage_docs(20))
    # Registered before default@2 and before default@3: the settings name their schema and no mode.
    for name, schema, mode in (("oldest", "default@1", "dense"), ("old", "default@2", "hybrid")):
        register(store, name, TenantSettings(source=str(src), chunker=schema))
        assert tenant_mode(store.settings(name)) == mode  # before its first build, from tenant.json
        reindex(store, name, embedder=hash_embedder)
        assert (live_manifest(store.paths(name)).chunker, live_manifest(store.paths(name)).search_mode) == (schema, mode)
        assert tenant_mode(store.settings(name)) == mode
    rx = Ragindex(home=store.root, model="hash")
    rx.tenant("new").add(source=src)
    assert store.settings("new").chunker == "default@3" and tenant_mode(store.settings("new")) == "hybrid-ctx"
    rx.tenant("new").reindex()
    assert live_manifest(store.paths("new")).search_mode == "hybrid-ctx"
    # moving the old default's tenant to the new default without --mode gives it the new default's mode
    rx.tenant("old").migrate("default@3")
    assert (live_manifest(store.paths("old")).chunker, live_manifest(store.paths("old")).search_mode) == ("default@3", "hybrid-ctx")
    # ... and so does migrating a tenant that was registered on default@2 but never built; a tenant with a
    # mode of its own (not its schema's default one) keeps it
    register(store, "unbuilt", TenantSettings(source=str(src), chunker="default@2"))
    rx.tenant("unbuilt").migrate("default@3")
    assert live_manifest(store.paths("unbuilt")).search_mode == "hybrid-ctx"
    register(store, "own", TenantSettings(source=str(src), chunker="default@2", mode="bm25"))
    reindex(store, "own", embedder=hash_embedder)
    rx.tenant("own").migrate("default@3")
    assert live_manifest(store.paths("own")).search_mode == "bm25"
