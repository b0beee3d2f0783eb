"""Fixtures for the Dagster tests: two tenants on small real corpora (chunking-set passages), an ephemeral instance."""

from __future__ import annotations

import dagster as dg
import pytest

from ragindex.store.tenants import TenantSettings
from tests.support.data import passage_docs, write_jsonl
from tests.support.postgres import local_postgres, require_postgres
from tests.support.tenants import register


@pytest.fixture
def tenants(store, hash_embedder, tmp_path):
    """acme: passages 0-29, globex: passages 20-49 (overlapping texts, separate tenants). Returns name -> source."""
    docs = passage_docs(50)
    sources = {}
    for name, part in (("acme", docs[:30]), ("globex", docs[20:50])):
        sources[name] = write_jsonl(tmp_path / f"{name}.jsonl", part)
        register(store, name, TenantSettings(source=str(sources[name])))
    return sources


@pytest.fixture
def instance(tenants):
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions("tenants", list(tenants))
    yield inst
    inst.dispose()


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of its own for the module's tests (skipped without Postgres binaries, failed under CI)."""
    require_postgres()
    with local_postgres() as pg:
        yield pg
