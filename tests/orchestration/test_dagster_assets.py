"""The asset graph on two real tenants: checks, metadata, no re-embedding, gates that block promotion.

Bookkeeping tests use the hash embedder resource; test_real_model_eval_set uses
the real model on a tiny corpus with a real eval set.
"""

from __future__ import annotations

import json
import threading
import time

import dagster as dg
import pytest

from ragindex.orchestration.assets import build_assets
from ragindex.orchestration.versions import chunker_code_version
from ragindex.schemas.registry import DEFAULT_SCHEMA
from ragindex.search.generation import load_generation
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import current_id, list_generations
from ragindex.store.tenants import TenantSettings
from tests.orchestration.helpers import checks, fake_quality, materialize, metadata, resources, values
from tests.support import docgen
from tests.support.data import chroma_beir, passage_docs, write_beir, write_jsonl
from tests.support.tenants import register

ALL_CHECKS = {"deletions_within_limit", "budget_respected", "index_consistency", "quality_not_worse"}


def test_two_tenants_materialize_with_passing_checks_and_numeric_metadata(store, tenants, instance):
    for tenant in tenants:
        result = materialize(store, instance, tenant)
        assert result.success
        assert checks(result) == dict.fromkeys(ALL_CHECKS, True)
        docs, chunks, emb, idx = (values(result, a) for a in ("documents", "chunks", "embeddings", "tenant_index"))
        assert docs["documents"] == 30 and docs["docs_new"] == 30 and docs["docs_skipped"] == 0
        assert chunks["chunker"] == DEFAULT_SCHEMA
        # the plan is exact: what was embedded is what was planned, and the ledger agrees
        assert emb["tokens_embedded"] == emb["tokens_planned"] > 0
        assert emb["texts_embedded"] == emb["texts_planned"] == emb["unique_texts"] == chunks["unique_texts"]
        assert emb["ledger"]["tokens"] == emb["plan"]["tokens_to_embed"] == emb["tokens_planned"]
        assert emb["reused_pct"] == 0.0 and emb["vectors_missing"] == 0
        assert idx["promoted"] is True and idx["generation"] == current_id(store.paths(tenant)) == idx["candidate"]
        assert idx["vectors"] == chunks["chunks"]
        # numbers are numbers, so the UI plots them over time
        meta = metadata(result, "embeddings")
        assert isinstance(meta["tokens_embedded"], dg.IntMetadataValue)
        assert isinstance(meta["reused_pct"], dg.FloatMetadataValue)
        assert isinstance(meta["actual_cost_usd"], dg.FloatMetadataValue)
        assert isinstance(meta["summary"], dg.MarkdownMetadataValue) and "tokens embedded" in meta["summary"].value
        assert isinstance(metadata(result, "tenant_index")["promoted"], dg.BoolMetadataValue)
        check_meta = {e.check_name: e.metadata for e in result.get_asset_check_evaluations()}
        assert check_meta["index_consistency"]["vectors"].value == chunks["chunks"]
        assert check_meta["quality_not_worse"]["status"].value == "no eval set"
    # each tenant's files are its own: the generation holds only its documents
    for tenant, src in tenants.items():
        ids = {json.loads(line)["_id"] for line in src.read_text().splitlines()}
        gen = load_generation(store.paths(tenant), current_id(store.paths(tenant)))
        got = {d for v in gen.views for d in v.seg.rows.column("doc_id").to_pylist()}
        assert got == ids
        assert all(str(store.paths(tenant).root) in str(p) for p in store.paths(tenant).segments.iterdir())


def test_second_materialization_embeds_nothing_and_keeps_data_versions(store, tenants, instance):
    first = materialize(store, instance, "acme")
    second = materialize(store, instance, "acme")
    emb = values(second, "embeddings")
    assert emb["texts_embedded"] == emb["tokens_embedded"] == emb["texts_planned"] == 0
    assert emb["reused_pct"] == 100.0
    assert checks(second) == dict.fromkeys(ALL_CHECKS, True)
    for asset in ("documents", "chunks", "embeddings", "tenant_index"):
        v1 = first.asset_materializations_for_node(asset)[0].tags["dagster/data_version"]
        v2 = second.asset_materializations_for_node(asset)[0].tags["dagster/data_version"]
        assert v1 == v2, f"{asset}: unchanged content must keep its DataVersion"
    with EmbeddingCache(store.paths("acme").cache, read_only=True) as cache:
        runs = cache.runs()
    assert [r["texts"] for r in runs] == [values(first, "embeddings")["texts_embedded"]]  # no ledger row for nothing
    idx = values(second, "tenant_index")
    assert idx["status"] == "unchanged" and idx["bytes_written"] == 0 and idx["promoted"] is False
    assert idx["generation"] == values(first, "tenant_index")["generation"]
    assert len(list_generations(store.paths("acme"))) == 1  # a run that changed nothing wrote no generation


def test_over_budget_blocks_the_run_and_keeps_the_live_generation(store, tenants, instance, tmp_path):
    materialize(store, instance, "acme")
    paths = store.paths("acme")
    live = current_id(paths)
    with EmbeddingCache(paths.cache, read_only=True) as cache:
        vectors = cache.stats()["vectors"]
    bigger = write_jsonl(tmp_path / "bigger.jsonl", passage_docs(80)[:30] + passage_docs(80)[50:80])
    register(store, "acme", TenantSettings(source=str(bigger)))
    result = materialize(store, instance, "acme", raise_on_error=False,
                         run_config={"ops": {"embeddings": {"config": {"budget_tokens": 10}}}})
    assert not result.success
    assert checks(result) == {"deletions_within_limit": True, "budget_respected": False}  # tenant_index never ran
    emb = values(result, "embeddings")
    assert emb["texts_embedded"] == 0 and emb["tokens_planned"] > 10
    assert not result.asset_materializations_for_node("tenant_index")
    assert current_id(paths) == live and len(list_generations(paths)) == 1
    with EmbeddingCache(paths.cache, read_only=True) as cache:
        assert cache.stats()["vectors"] == vectors  # nothing was paid for


def test_failed_quality_check_blocks_promotion(store, tenants, instance, monkeypatch, tmp_path):
    """A candidate scoring below the live generation is written but never promoted."""
    materialize(store, instance, "acme")
    paths = store.paths("acme")
    live = current_id(paths)
    edited = write_jsonl(tmp_path / "acme-edited.jsonl", passage_docs(31))  # one more document: a real candidate
    register(store, "acme", TenantSettings(source=str(edited), eval_set="chroma"))
    fake_quality(monkeypatch, live)
    result = materialize(store, instance, "acme", raise_on_error=False)
    assert not result.success
    assert checks(result) == {"deletions_within_limit": True, "budget_respected": True, "index_consistency": True,
                              "quality_not_worse": False}
    idx = values(result, "tenant_index")
    assert idx["promoted"] is False and idx["eval_ndcg@10"] == 0.5 and idx["live_ndcg@10"] == 0.9
    assert current_id(paths) == live != idx["candidate"]
    assert idx["candidate"] in list_generations(paths)  # kept for inspection


def test_the_run_takes_the_tenants_writer_once_and_holds_it_through_every_step(store, tenants, instance, monkeypatch):
    """One TenantWriter for the whole run, entered before the first step: each step runs under it, and
    any other writer (a probe from another open file, as another process would) is refused at every step."""
    from ragindex.indexing.run import TenantRun
    from ragindex.store import locking, writer

    lock = store.paths("acme").lock
    entered, seen = [], []
    enter = writer.TenantWriter.__enter__
    monkeypatch.setattr(writer.TenantWriter, "__enter__", lambda self: entered.append(self.tenant) or enter(self))

    def under_lock(stage):
        real = getattr(TenantRun, stage)

        def wrapped(self, *a, **kw):
            with pytest.raises(locking.TenantBusy):
                locking.probe_lock(lock)  # another writer, now: refused
            seen.append((stage, locking.held(lock), len(entered)))
            return real(self, *a, **kw)
        monkeypatch.setattr(TenantRun, stage, wrapped)

    for stage in ("detect", "chunk", "embed", "commit"):
        under_lock(stage)
    result = materialize(store, instance, "acme")
    assert result.success and values(result, "tenant_index")["promoted"] is True
    assert seen == [("detect", True, 1), ("chunk", True, 1), ("embed", True, 1), ("commit", True, 1)]
    assert entered == ["acme"] and not locking.held(lock)  # released when the run ended
    locking.probe_lock(lock)  # and free for the next writer


def test_a_run_for_a_tenant_being_written_fails_at_once_or_waits_with_lock_wait_s(store, tenants, instance):
    from ragindex.store.writer import TenantWriter

    paths = store.paths("acme")
    with TenantWriter(store, "acme"):  # another writer (a CLI reindex, say) holds the tenant
        result = materialize(store, instance, "acme", raise_on_error=False)
    assert not result.success
    assert not result.get_asset_materialization_events() and not result.get_asset_check_evaluations()  # no step ran
    failure = next(e for e in result.all_events if e.event_type_value == "RUN_FAILURE" or e.is_failure)
    assert "being written by another process" in str(failure.event_specific_data)
    assert current_id(paths) is None and not paths.cache.exists()  # nothing written

    # lock_wait_s (the run-level `resources.writer.config.lock_wait_s`): the run queues behind the writer.
    other = TenantWriter(store, "acme").__enter__()
    threading.Timer(1.0, other.__exit__, (None, None, None)).start()
    t0 = time.monotonic()
    result = dg.materialize(build_assets(chunker_code_version(store)), partition_key="acme", instance=instance,
                            resources=resources(store, lock_wait_s=60.0))
    assert result.success and time.monotonic() - t0 >= 1.0
    assert current_id(paths) == values(result, "tenant_index")["generation"]


def test_a_new_tenant_over_budget_leaves_nothing_behind_and_one_within_budget_stays(store, instance, hash_embedder,
                                                                                    tmp_path):
    """Taking the lock at run start creates the tenant's directory; a first run that writes nothing removes it."""
    src = write_jsonl(tmp_path / "newco.jsonl", passage_docs(20))
    instance.add_dynamic_partitions("tenants", ["newco"])
    paths = store.paths("newco")
    config = {"ops": {"documents": {"config": {"source": str(src)}}, "embeddings": {"config": {"budget_tokens": 10}}}}
    result = materialize(store, instance, "newco", raise_on_error=False, run_config=config)
    assert not result.success and checks(result) == {"deletions_within_limit": True, "budget_respected": False}
    assert not paths.root.exists()
    assert not list(store.tenants_dir.glob(".removing-*"))  # moved aside under the lock, then deleted
    assert "newco" not in store.names()

    config["ops"]["embeddings"]["config"]["budget_tokens"] = 1_000_000
    result = materialize(store, instance, "newco", run_config=config)
    assert result.success and current_id(paths) == values(result, "tenant_index")["generation"]
    assert store.settings("newco").source == str(src.absolute())


def test_a_new_tenants_run_that_paid_and_then_failed_keeps_what_it_paid_for(store, instance, hash_embedder, tmp_path,
                                                                            monkeypatch):
    import ragindex.indexing.run

    src = write_jsonl(tmp_path / "newco.jsonl", passage_docs(20))
    instance.add_dynamic_partitions("tenants", ["newco"])

    def crash(*a, **kw):
        raise OSError("disk full")
    monkeypatch.setattr(ragindex.indexing.run, "commit", crash)
    result = materialize(store, instance, "newco", raise_on_error=False,
                         run_config={"ops": {"documents": {"config": {"source": str(src)}}}})
    assert not result.success and values(result, "embeddings")["texts_embedded"] > 0
    paths = store.paths("newco")
    with EmbeddingCache(paths.cache, read_only=True) as cache:  # kept: the next run reuses every vector
        assert cache.stats()["vectors"] == values(result, "embeddings")["texts_embedded"]
    assert current_id(paths) is None


def test_the_writer_is_not_taken_again_when_dagster_rebuilds_resources_after_the_run(store, tenants):
    """execute_job (`dagster job execute`) builds the resources once more after the run: no lock then."""
    import types

    from ragindex.orchestration.resources import TenantStoreResource, TenantWriterResource
    from ragindex.store.writer import TenantWriter

    res = TenantWriterResource(store=TenantStoreResource(root=str(store.root)))
    done = types.SimpleNamespace(dagster_run=dg.DagsterRun(job_name="reindex_tenant", status=dg.DagsterRunStatus.SUCCESS,
                                                           tags={"dagster/partition": "acme"}))
    # e.g. a queued CLI reindex took the lock as soon as the run released it
    with TenantWriter(store, "acme"), res.yield_for_execution(done) as value:
        assert value is res
    running = types.SimpleNamespace(dagster_run=dg.DagsterRun(job_name="reindex_tenant", tags={}))
    with pytest.raises(dg.DagsterInvariantViolationError, match="one tenant partition per run"), \
            res.yield_for_execution(running):
        pass


def _tiny_eval_set(tmp_path):
    """Twelve labelled questions whose relevant passages are among the first 400, those passages, and 10 others."""
    docs = {d["_id"]: d for d in passage_docs(400)}
    queries, qrels = chroma_beir(list(docs.values()))
    qids = list(qrels)[:12]
    relevant = list(dict.fromkeys(d for q in qids for d in qrels[q]))
    keep = relevant + [d for d in docs if d not in relevant][:10]
    return write_beir(tmp_path / "tiny-eval", [docs[d] for d in keep], {q: queries[q] for q in qids}, {q: qrels[q] for q in qids})


@pytest.mark.slow
def test_real_model_eval_set(store, tmp_path, model):
    """The real model on a tiny tenant with a real eval set: metrics recorded, second run compared and passed."""
    from ragindex.indexing.plan import Throughput

    Throughput(store.root).record(model, tokens=100_000, seconds=20.0)  # no calibration run
    root = _tiny_eval_set(tmp_path)
    register(store, "lab", TenantSettings(source=str(root / "corpus.jsonl"), eval_set=str(root)))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tenants", ["lab"])
    first = materialize(store, instance, "lab", model="default")
    assert checks(first) == dict.fromkeys(ALL_CHECKS, True)
    idx = values(first, "tenant_index")
    assert idx["embedder"] == "all-MiniLM-L6-v2" and idx["eval_status"] == "no live generation"
    evals = {k: v for k, v in idx.items() if k.startswith("eval_") and k != "eval_status"}
    assert evals and all(0.0 <= v <= 1.0 for v in evals.values())
    assert max(evals.values()) > 0.3  # the relevant documents are in the index: retrieval finds some
    emb = values(first, "embeddings")
    assert emb["tokens_embedded"] == emb["tokens_planned"] > 0
    # A metadata-only edit of every record: a new segment with the same chunks and vectors, so it is
    # compared against the live generation and must score exactly the same.
    tagged = tmp_path / "tagged.jsonl"
    write_jsonl(tagged, [dict(json.loads(line), metadata={"lab": "b"}) for line in (root / "corpus.jsonl").read_text().splitlines()])
    register(store, "lab", TenantSettings(source=str(tagged), eval_set=str(root)))
    second = materialize(store, instance, "lab", model="default")
    idx2 = values(second, "tenant_index")
    assert idx2["eval_status"] == "compared" and idx2["promoted"] is True
    assert all(idx2[f"delta_{k[5:]}"] == 0.0 for k in evals)  # same content, same quality
    assert values(second, "embeddings")["texts_embedded"] == 0
    assert values(second, "chunks")["docs_chunked"] == 0  # chunks copied by (doc_hash, chunker_fp)
    third = materialize(store, instance, "lab", model="default")
    assert values(third, "tenant_index")["status"] == "unchanged"


def test_a_folder_of_documents_materializes_with_its_conversions_shown(store, instance, tmp_path):
    folder = tmp_path / "handbooks"
    folder.mkdir()
    truth = docgen.make_pdf(folder / "guide.pdf")
    docgen.make_docx(folder / "policy.docx")
    register(store, "docs", TenantSettings(source=str(folder)))
    instance.add_dynamic_partitions("tenants", ["docs"])
    result = materialize(store, instance, "docs")
    assert result.success
    conv = values(result, "documents")["conversions"]
    assert conv["files_converted"] == 2 and conv["pages_converted"] == len(truth.pages) and conv["files_failed"] == 0
    assert "files converted (pages, seconds)" in metadata(result, "documents")["summary"].value
    gen = load_generation(store.paths("docs"), current_id(store.paths("docs")))
    pages = {p for v in gen.views for d, p in zip(v.seg.rows.column("doc_id").to_pylist(), v.seg.rows.column("page").to_pylist())
             if d == "guide.pdf"}
    assert pages == set(range(1, len(truth.pages) + 1))
