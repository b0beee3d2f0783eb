"""Issue 23 (Hardening II), item 5: a segment is bound to its tenant; one copied in from another tenant is refused.

segment.json names the tenant, and each generation's (checksummed) manifest records, per
segment, its row and document counts and the sha256 of its identity (``SegmentRef.binding``).
A segment that does not match is refused by search and reported by verify as foreign; repair
never takes vectors from it.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from ragindex.indexing.repair import verify
from ragindex.indexing.run import reindex
from ragindex.search.searcher import Searcher
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import GenerationError, read_manifest, write_manifest
from ragindex.store.segments import ForeignSegment, read_info
from tests.support.cli import ragindex
from tests.support.data import passage_docs, write_jsonl
from tests.support.tenants import writing


@pytest.fixture
def two_tenants(store, hash_embedder, tmp_path):
    """acme and globex, each one generation of one segment, with different documents."""
    docs = passage_docs(40)
    for tenant, part in (("acme", docs[:20]), ("globex", docs[20:])):
        reindex(store, tenant, source=write_jsonl(tmp_path / f"{tenant}.jsonl", part), chunker="recursive-200@1",
                embedder=hash_embedder)
    return store.paths("acme"), store.paths("globex")


def _copy_in(acme, globex, *, forge_tenant: bool) -> str:
    """Replace acme's segment by globex's, its segment.json edited to carry acme's segment id (and tenant)."""
    mine = read_manifest(acme, (acme.current.read_text().strip())).segments[0].id
    theirs = read_manifest(globex, (globex.current.read_text().strip())).segments[0].id
    shutil.rmtree(acme.segments / mine)
    shutil.copytree(globex.segments / theirs, acme.segments / mine)
    f = acme.segments / mine / "segment.json"
    info = json.loads(f.read_text())
    info["segment"] = mine
    if forge_tenant:
        info["tenant"] = "acme"
    f.write_text(json.dumps(info))
    return mine


def _acme_text_hashes(store, paths) -> int:
    with EmbeddingCache(paths.cache, read_only=True) as c:
        return c.stats()["vectors"]


@pytest.mark.parametrize("forge_tenant", [False, True], ids=["tenant-kept", "tenant-forged"])
def test_a_segment_copied_from_another_tenant_is_refused_and_never_repaired_from(store, hash_embedder, two_tenants,
                                                                                  forge_tenant):
    acme, globex = two_tenants
    seg = _copy_in(acme, globex, forge_tenant=forge_tenant)
    vectors = _acme_text_hashes(store, acme)
    with pytest.raises(Exception, match="another tenant"):
        Searcher(store, hash_embedder).search("acme", "cancer")
    res = ragindex("search", "-t", "acme", "cancer")
    assert res.exit_code == 1 and "another tenant" in res.output and "globex" not in res.output
    report = verify(acme)
    assert report["status"] == "damaged" and report["foreign"] == [seg], report
    assert ragindex("verify", "-t", "acme").exit_code == 5
    fixed = ragindex("verify", "-t", "acme", "--repair", "--json")
    assert fixed.exit_code == 5, fixed.output
    out = json.loads(fixed.stdout)
    assert out["foreign"] == [seg] and not any("restored" in r for r in out["repairs"])
    assert _acme_text_hashes(store, acme) == vectors  # nothing of globex's copied into acme's cache
    assert any("no live generation" in p for p in out["after"]["problems"])  # its only generation was set aside
    with pytest.raises(GenerationError, match="no index yet"):
        Searcher(store, hash_embedder).search("acme", "cancer")  # nothing of globex's is served


def test_segment_json_names_its_tenant_and_the_manifest_binds_it(store, two_tenants):
    acme, _ = two_tenants
    m = read_manifest(acme, acme.current.read_text().strip())
    ref = m.segments[0]
    assert read_info(acme, ref.id).tenant == "acme" and ref.binding and len(ref.binding) == 64


def test_row_counts_are_checked_against_the_manifest(store, hash_embedder, two_tenants):
    acme, _ = two_tenants
    m = read_manifest(acme, acme.current.read_text().strip())
    ref = m.segments[0]
    forged = m.model_copy(update={"segments": [ref.model_copy(update={"rows": ref.rows + 1, "binding": None})], "sha256": ""})
    with writing(acme):
        write_manifest(acme, forged)
    with pytest.raises(Exception, match=f"{ref.rows} rows"):
        Searcher(store, hash_embedder).search("acme", "cancer")
    assert verify(acme)["foreign"] == [ref.id]


def _legacy(paths) -> None:
    """Make acme look written before the binding: no tenant in segment.json, no binding in the manifest, the
    manifest sealed the way the old writer sealed it (without the field)."""
    gen = paths.current.read_text().strip()
    f = paths.manifest(gen)
    body = json.loads(f.read_text())
    for s in body["segments"]:
        del s["binding"]
        info_f = paths.segments / s["id"] / "segment.json"
        info = json.loads(info_f.read_text())
        del info["tenant"]
        info_f.write_text(json.dumps(info))
    del body["sha256"]
    body["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    f.write_text(json.dumps(body))


def test_segments_written_before_the_binding_are_accepted_when_the_manifest_names_them(store, hash_embedder, two_tenants,
                                                                                         tmp_path):
    acme, _ = two_tenants
    _legacy(acme)
    assert Searcher(store, hash_embedder).search("acme", "cancer")
    assert verify(acme)["status"] == "ok"
    # The next generation binds its own new segment and keeps the old one as it was.
    res = reindex(store, "acme", source=write_jsonl(tmp_path / "more.jsonl", passage_docs(22)[:20] + passage_docs(45)[40:42]),
                  chunker="recursive-200@1", embedder=hash_embedder)
    refs = read_manifest(acme, res.generation).segments
    assert [r.binding is None for r in refs] == [True, False]
    assert verify(acme)["status"] == "ok"


def test_a_foreign_segment_is_its_own_error_type(store, two_tenants):
    acme, globex = two_tenants
    seg = _copy_in(acme, globex, forge_tenant=False)
    with pytest.raises(ForeignSegment, match="another tenant"):
        read_info(acme, seg)


def test_the_binding_travels_with_a_segment_into_later_generations(store, hash_embedder, two_tenants, tmp_path):
    """A run that deletes documents from an older segment, and a merge, keep every reference bound."""
    acme, _ = two_tenants
    docs = passage_docs(40)[:20]
    edited = [dict(d, text=d["text"] + " Edited.") if i < 3 else d for i, d in enumerate(docs)]
    res = reindex(store, "acme", source=write_jsonl(tmp_path / "edited.jsonl", edited), chunker="recursive-200@1",
                  embedder=hash_embedder)
    refs = read_manifest(acme, res.generation).segments
    assert len(refs) == 2 and refs[0].deleted_docs == 3 and all(r.binding for r in refs)
    done = ragindex("compact", "-t", "acme", "--json")
    assert done.exit_code == 0, done.output
    merged = read_manifest(acme, acme.current.read_text().strip())
    assert merged.kind == "merge" and all(r.binding for r in merged.segments)
    assert verify(acme)["status"] == "ok"
