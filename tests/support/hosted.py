"""Fixtures for tests against the fake OpenAI-compatible server: the server itself with the client's environment
pointing at it, a small corpus, a hosted embedder, and how to read what was billed."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from ragindex.embedders.limits import PROBE_TEXTS
from ragindex.embedders.registry import EmbedderConfig
from ragindex.indexing.prices import Prices
from ragindex.indexing.run import TenantRun
from ragindex.store.cache import EmbeddingCache
from tests.support.data import passage_docs, write_jsonl
from tests.support.fake_openai import Behaviour, FakeOpenAI

KEY = "sk-test-0123456789abcdefSECRET"
MODEL = "openai:text-embedding-3-small"
PRICE = 0.02  # USD per million tokens, from the override file the `api` fixture writes


@pytest.fixture
def api(monkeypatch, tmp_path):
    with FakeOpenAI(Behaviour()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("RAGINDEX_API_TIMEOUT_S", "5")
        overrides = tmp_path / "price-overrides.toml"
        overrides.write_text(f'["{MODEL}"]\nusd_per_mtok = {PRICE}\nas_of = 2026-12-01\n')
        monkeypatch.setenv("RAGINDEX_PRICE_OVERRIDES", str(overrides))
        yield server


@pytest.fixture
def corpus(tmp_path):
    return write_jsonl(tmp_path / "c.jsonl", passage_docs(40))


def emb(dims: int | None = 64, model: str = MODEL):
    return EmbedderConfig(model, dimensions=dims).build()


def billed_once(server) -> Counter:
    """How often each non-probe text was billed."""
    return Counter(t for t in server.billed_texts() if t not in PROBE_TEXTS and t != "dimension probe")


def stage(store, tenant: str, embedder, **options):
    """What `ragindex plan` shows for ``tenant``: (staged chunks, plan); sends and writes nothing."""
    with TenantRun(store, tenant, embedder=embedder, prices=Prices.load(), **options) as run:
        return run.stage()


def ledger_runs(store, tenant: str) -> list[dict]:
    with EmbeddingCache(store.paths(tenant).cache, read_only=True) as cache:
        return cache.runs()


def cli_env(store, api, **extra) -> dict:
    env = {**os.environ, "RAGINDEX_HOME": str(store.root), "RAGINDEX_MODEL": MODEL, "RAGINDEX_DIMENSIONS": "64",
           "OPENAI_BASE_URL": api.base_url, "OPENAI_API_KEY": KEY, **extra}
    env.pop("DAGSTER_HOME", None)
    return env
