"""Two indexed tenants (``acme``, ``globex``, hash embedder, documents with metadata) with a key each, and a live server."""

from __future__ import annotations

import pytest

from ragindex.indexing.run import reindex
from ragindex.store import keys
from ragindex.store.tenants import TenantSettings
from tests.support.data import passage_docs, write_jsonl
from tests.support.http import serving
from tests.support.tenants import register


@pytest.fixture
def tenants(store, hash_embedder, tmp_path):
    """{"docs", "sources", "keys"} for tenants acme (documents 0-39) and globex (20-59), indexed."""
    docs = passage_docs(60)
    for i, d in enumerate(docs):
        d["metadata"] = {"team": "bio" if i % 2 else "med", "year": 2000 + i}
    a = write_jsonl(tmp_path / "a.jsonl", docs[:40])
    b = write_jsonl(tmp_path / "b.jsonl", docs[20:60])
    for t, src in (("acme", a), ("globex", b)):
        register(store, t, TenantSettings(source=str(src), chunker="recursive-200@1"))
        reindex(store, t, embedder=hash_embedder)
    return {"docs": docs, "sources": {"acme": a, "globex": b},
            "keys": {t: keys.create(store, t, "test")[0] for t in ("acme", "globex")}}


@pytest.fixture
def server(store, tenants):
    """``ragindex serve`` over ``tenants`` as a real process: the tenants' dict plus "base" (URL) and "proc"."""
    with serving(store.root) as (base, proc):
        yield {"base": base, "proc": proc, **tenants}
