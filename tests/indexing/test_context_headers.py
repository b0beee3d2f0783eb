"""Context headers: a schema with ``context_headers = true`` embeds each chunk below its title and headings.

What the model sees changes; the chunk (its span, its text, what search returns)
does not. Real records with titles (passages of the chunking-evaluation corpora), the
hash embedder recording the texts it is given.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from ragindex.chunkers.context import context_of, embed_text
from ragindex.embedders.local import HashEmbedder
from ragindex.evaluate.datasets import Dataset
from ragindex.evaluate.runner import chunk_dataset
from ragindex.fsutil import sha256_text
from ragindex.indexing.run import reindex
from ragindex.schemas import SchemaRegistry
from ragindex.schemas.chunker import SchemaFile
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import live_manifest
from ragindex.store.segments import segment_dir
from tests.support.data import passage_docs, write_jsonl
from tests.support.tenants import register, writing

CTX = "recursive-200-ctx@1"
PLAIN = "recursive-200@1"


class RecordingEmbedder(HashEmbedder):
    """The hash embedder, keeping every text it was asked to embed."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__(dim=dim)
        self.texts: list[str] = []

    def embed(self, texts, on_batch=None, **kw):
        self.texts.extend(texts)
        return super().embed(texts, on_batch=on_batch, **kw)


@pytest.fixture
def emb(store):
    from ragindex.indexing.plan import Throughput

    e = RecordingEmbedder()
    Throughput(store.root).record(e, tokens=100_000, seconds=1.0)
    return e


@pytest.fixture
def corpus(tmp_path):
    docs = [d for d in passage_docs(40) if d["title"]]
    return docs, write_jsonl(tmp_path / "corpus.jsonl", docs)


def live_rows(store, tenant):
    paths = store.paths(tenant)
    m = live_manifest(paths)
    return [r for seg in m.segments for r in pq.read_table(segment_dir(paths, seg.id) / "rows.parquet").to_pylist()]


def test_the_schema_flag_is_fingerprinted_and_absent_flags_keep_old_fingerprints():
    reg = SchemaRegistry()
    plain, ctx = reg.get(PLAIN), reg.get(CTX)
    assert "context_headers" not in json.loads(plain.canonical_json())["spec"]  # published fingerprints stay as they were
    assert json.loads(ctx.canonical_json())["context_format"] == embed_text("chunk", ["Title", "Section"])
    flipped = SchemaFile(name="x", version=1, spec=plain.spec.model_copy(update={"context_headers": True}))
    same = SchemaFile(name="x", version=1, spec=plain.spec)
    assert flipped.fingerprint() != same.fingerprint()


def test_each_chunk_is_embedded_below_its_title_and_keeps_its_span(store, emb, corpus):
    docs, src = corpus
    res = reindex(store, "acme", source=src, chunker=CTX, embedder=emb)
    rows = live_rows(store, "acme")
    by_id = {d["_id"]: d for d in docs}
    assert len(rows) == res.plan.chunks_total and len(rows) > len(docs)  # documents of several chunks
    sent = set(emb.texts)
    for r in rows:
        title = " ".join(by_id[r["doc_id"]]["title"].split())
        assert r["heading_path"] == [title]
        full = f"{by_id[r['doc_id']]['title']}\n\n{by_id[r['doc_id']]['text']}"  # the document as the source gives it
        assert r["text"] == full[r["start"] : r["end"]]  # the span is the chunk itself, no header in it
        header = f"{title}\n\n{r['text']}"
        assert r["text_hash"] == sha256_text(header) and header in sent
    assert not sent & {r["text"] for r in rows if r["start"] > 0}  # no later chunk was embedded bare
    # The plan priced exactly what was sent (headers included), and the ledger agrees.
    assert res.plan.texts_to_embed == len(set(emb.texts))
    assert res.plan.tokens_to_embed == sum(emb.token_counts(list(dict.fromkeys(emb.texts))))
    assert res.ledger["tokens"] == res.plan.tokens_to_embed
    # Search returns the chunk's own text; the header only shaped its vector.
    from ragindex.search.searcher import Searcher

    hit = Searcher(store, embedder=emb).search("acme", rows[3]["heading_path"][0], k=1, mode="dense")[0]
    assert hit.text == next(r["text"] for r in rows if r["chunk_id"] == hit.chunk_id)


def test_the_same_chunks_without_headers_are_other_texts_in_the_cache(store, emb, corpus):
    _, src = corpus
    reindex(store, "plain", source=src, chunker=PLAIN, embedder=emb)
    plain = {str((r["doc_id"], r["start"], r["end"])): r["text_hash"] for r in live_rows(store, "plain")}
    reindex(store, "ctx", source=src, chunker=CTX, embedder=emb)
    ctx = {str((r["doc_id"], r["start"], r["end"])): r["text_hash"] for r in live_rows(store, "ctx")}
    assert plain.keys() == ctx.keys()  # same spans
    assert not set(plain.values()) & set(ctx.values())  # every vector is of another text


def test_copied_chunks_get_their_headers_when_only_the_model_changes(store, emb, corpus):
    _, src = corpus
    reindex(store, "acme", source=src, chunker=CTX, embedder=emb)
    other = RecordingEmbedder(dim=48)
    from ragindex.indexing.plan import Throughput

    Throughput(store.root).record(other, tokens=100_000, seconds=1.0)
    res = reindex(store, "acme", source=src, chunker=CTX, embedder=other)
    assert res.plan.docs_chunked == 0  # chunks copied by (doc_hash, chunker_fp), not cut again
    rows = live_rows(store, "acme")
    assert set(other.texts) == {embed_text(r["text"], r["heading_path"]) for r in rows}
    with EmbeddingCache(store.paths("acme").cache, read_only=True) as cache:
        assert len(cache.cached_hashes(other.fingerprint, [r["text_hash"] for r in rows])) == len({r["text_hash"] for r in rows})


def test_a_markdown_heading_path_is_the_header_and_a_title_heading_is_not_repeated():
    assert context_of("Keys", ["Keys", "Rotation"]) == ["Keys", "Rotation"]
    assert context_of("A  title\n", []) == ["A title"]
    assert context_of(None, ["Setup"]) == ["Setup"]
    assert embed_text("body", []) == "body"
    assert embed_text("body", ["T", "S"]) == "T > S\n\nbody"


def test_the_evaluation_embeds_what_the_pipeline_embeds(corpus):
    docs, _ = corpus
    texts = [f"{d['title']}\n\n{d['text']}" for d in docs]
    ds = Dataset(name="t", path=None, kind="docs", doc_ids=[d["_id"] for d in docs], texts=texts, query_ids=[], queries=[],
                 titles=[d["title"] for d in docs])
    reg = SchemaRegistry()
    ctx, plain = chunk_dataset(ds, reg.get(CTX)), chunk_dataset(ds, reg.get(PLAIN))
    assert (ctx.doc_ids, ctx.starts, ctx.ends, ctx.texts) == (plain.doc_ids, plain.starts, plain.ends, plain.texts)
    assert plain.embedded == plain.texts
    titles = {d["_id"]: " ".join(d["title"].split()) for d in docs}
    assert ctx.embedded == [f"{titles[d]}\n\n{t}" for d, t in zip(ctx.doc_ids, ctx.texts)]
    assert ctx.lexical == [f"{titles[d]} {t}" for d, t in zip(ctx.doc_ids, ctx.texts)]


def test_repair_cuts_damaged_rows_again_with_their_titles(store, emb, corpus):
    from ragindex.indexing.repair import verify
    from ragindex.store.tenants import TenantSettings

    _, src = corpus
    register(store, "acme", TenantSettings(source=str(src), chunker=CTX))
    reindex(store, "acme", embedder=emb)
    paths = store.paths("acme")
    before = live_rows(store, "acme")
    f = segment_dir(paths, live_manifest(paths).segments[0].id) / "rows.parquet"
    f.write_bytes(f.read_bytes()[:200])
    with writing(paths):
        fixed = verify(paths, repair=True)
    assert fixed["status"] == "repaired", fixed["repairs"]
    assert live_rows(store, "acme") == before  # the same headers, so the same text hashes as the vectors'
    sent = len(emb.texts)
    assert reindex(store, "acme", embedder=emb).ledger["texts"] == 0 and len(emb.texts) == sent
