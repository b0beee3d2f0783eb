"""Issue 23 (Hardening II) item 14: an empty or partial embedding cache is treated like a missing one.

An interrupted repair can leave a valid DuckDB file with no rows, or some rows. The live generation's
segments still hold every vector, so neither `plan` nor `reindex` may count those texts as texts to pay
for: both refuse, pointing at `verify --repair`, which refills the cache from the segments.
"""

from __future__ import annotations

import json

import pytest

from ragindex.indexing.repair import verify
from ragindex.indexing.run import reindex
from ragindex.store.cache import EmbeddingCache
from tests.support.cli import ragindex
from tests.support.tenants import writing

CHUNKER = "recursive-200@1"


def _leave_empty(paths) -> None:
    paths.cache.unlink()
    with EmbeddingCache(paths.cache):
        pass  # what an interrupted repair leaves behind: a valid file with no rows


def _leave_half(paths) -> None:
    with EmbeddingCache(paths.cache) as c:
        c.con.execute("DELETE FROM embeddings WHERE text_hash IN (SELECT text_hash FROM embeddings ORDER BY text_hash "
                      "LIMIT (SELECT count(*) // 2 FROM embeddings))")


@pytest.mark.parametrize("damage", [_leave_empty, _leave_half], ids=["empty", "partial"])
def test_an_empty_or_partial_cache_is_refilled_from_the_segments_not_paid_again(store, hash_embedder, indexed_folder, damage):
    folder, _ = indexed_folder
    paths = store.paths("acme")
    damage(paths)
    with EmbeddingCache(paths.cache, read_only=True) as c:
        runs_before = len(c.runs())
    planned = ragindex("plan", "-t", "acme", "--rebuild", "--json")
    assert planned.exit_code == 1 and "verify --tenant acme --repair" in planned.output, planned.output
    assert json.loads(planned.stdout)["error"]["kind"] == "cache"
    f = sorted(folder.iterdir())[0]
    f.write_text(f.read_text() + "\nA change that needs a run.\n")
    res = ragindex("reindex", "-t", "acme", "--source", str(folder), "--chunker", CHUNKER)
    assert res.exit_code == 1 and "verify --tenant acme --repair" in res.output and "bug" not in res.output
    with EmbeddingCache(paths.cache, read_only=True) as c:
        assert len(c.runs()) == runs_before  # nothing was embedded
    with writing(paths):
        assert verify(paths, repair=True)["status"] == "repaired"
    rebuilt = ragindex("plan", "-t", "acme", "--rebuild", "--json")
    assert rebuilt.exit_code == 0 and json.loads(rebuilt.stdout)["texts_to_embed"] <= 2  # only the edit's chunks
    done = reindex(store, "acme", source=folder, chunker=CHUNKER, embedder=hash_embedder)
    assert done.status == "promoted" and done.ledger["texts"] == done.plan.texts_to_embed <= done.plan.chunks_new
