"""Issue 13, Dagster: the documents check refuses a mass deletion before anything is embedded or promoted."""

from __future__ import annotations

from ragindex.store.manifests import current_id
from tests.support.data import passage_docs, write_jsonl
from tests.support.tenants import register


def test_the_dagster_documents_check_refuses_a_mass_deletion(store, hash_embedder, tmp_path):
    import dagster as dg

    from ragindex.store.tenants import TenantSettings
    from tests.orchestration.helpers import checks, materialize

    src = write_jsonl(tmp_path / "a.jsonl", passage_docs(10))
    register(store, "acme", TenantSettings(source=str(src)))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tenants", ["acme"])
    materialize(store, instance, "acme")
    live = current_id(store.paths("acme"))
    src.write_text("")
    result = materialize(store, instance, "acme", raise_on_error=False)
    assert not result.success and checks(result) == {"deletions_within_limit": False}
    assert current_id(store.paths("acme")) == live and not result.asset_materializations_for_node("embeddings")
