"""Fixtures for the Dagster tests: two tenants on small real SciFact corpora, an ephemeral instance."""

from __future__ import annotations

import dagster as dg
import pytest

from ragindex.tenants import TenantSettings
from tests.conftest import scifact_docs, write_jsonl


@pytest.fixture
def tenants(store, hash_embedder, tmp_path):
    """acme: SciFact docs 0-29, globex: docs 20-49 (overlapping texts, separate tenants). Returns name -> source."""
    docs = scifact_docs(50)
    sources = {}
    for name, part in (("acme", docs[:30]), ("globex", docs[20:50])):
        sources[name] = write_jsonl(tmp_path / f"{name}.jsonl", part)
        store.save_settings(name, TenantSettings(source=str(sources[name])))
    return sources


@pytest.fixture
def instance(tenants):
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions("tenants", list(tenants))
    yield inst
    inst.dispose()
