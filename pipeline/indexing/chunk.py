"""Stage 2, chunks: the documents of a change set cut by a schema NAME@VERSION.

Only new and changed documents are chunked. A document whose content the
tenant already holds under the same schema (a rename, a copy, a metadata-only
edit, or every document when only the model changed) gets those chunks copied
from their segment instead: chunks are reused by (doc_hash, chunker_fp).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field, replace

import pyarrow as pa
from tqdm import tqdm

from ragindex.chunkers import build_chunker, needs_embeddings
from ragindex.chunkers.context import context_of, embed_text
from ragindex.fsutil import sha256_text
from ragindex.ingest.changeset import ChangeSet
from ragindex.ingest.convert import Layout
from ragindex.schemas.chunker import SchemaFile
from ragindex.schemas.tables import CHUNKS, SEGMENT_DOCS, SEGMENT_ROWS
from ragindex.store.paths import TenantPaths
from ragindex.store.segments import read_rows

_COPIED = ["start", "end", "token_count", "text_hash", "text", "heading_path", "page", "page_end"]


def chunk_id(tenant: str, doc_id: str, chunker_fp: str, start: int, end: int) -> str:
    """Content-addressed chunk identity (DESIGN: identities)."""
    return hashlib.sha256(f"{tenant}|{doc_id}|{chunker_fp}|{start}|{end}".encode("utf-8")).hexdigest()


@dataclass
class StagedChunks:
    """The new segment's content before it has vectors: its documents and rows, plus how they were made."""

    changes: ChangeSet
    docs: pa.Table  # SEGMENT_DOCS
    rows: pa.Table  # SEGMENT_ROWS
    docs_chunked: int = 0
    docs_reused: int = 0
    chunks_unchanged: int = 0  # rows whose chunk id the live generation already had (for changed documents)
    chunks_removed: int = 0  # live rows no longer there after this run
    seconds: float = 0.0
    stats: dict = field(default_factory=dict)
    # A schema that cuts on embeddings (``cluster``): the pieces it embeds first, as rows of their own,
    # and whether these rows are only the bound (each piece its own chunk) because piece vectors are missing.
    pieces: "StagedChunks | None" = None
    bound: bool = False
    # The schema embeds each chunk below its context (title > headings, kept in ``heading_path``):
    # what the model sees, and ``text_hash``, is then embed_texts(rows), not the rows' text.
    context_headers: bool = False

    @property
    def chunks_new(self) -> int:
        return self.rows.num_rows - self.chunks_unchanged

    @property
    def rows_after(self) -> int:
        """Live rows once this run is committed."""
        cs = self.changes
        return self.rows.num_rows if cs.rebuild else cs.base_chunks - cs.rows_replaced + self.rows.num_rows


def embed_texts(rows: pa.Table, context_headers: bool) -> list[str]:
    """What the model embeds for each row: its text, below its context header if the schema asks for one."""
    texts = rows.column("text").to_pylist()
    if not context_headers:
        return texts
    return [embed_text(t, h) for t, h in zip(texts, rows.column("heading_path").to_pylist())]


def cut_document(chunker, text: str, layout: Layout | None) -> list:
    """The chunker's spans of one document. A converted document's headings come from its layout: a
    chunker that cuts at headings is given them, and every span gets the heading path at its start."""
    if layout is None:
        return chunker.chunk(text)
    spans = chunker.chunk(text, headings=layout.headings) if getattr(chunker, "TAKES_HEADINGS", False) else chunker.chunk(text)
    return [s if s.heading_path else replace(s, heading_path=layout.heading_path_at(s.start)) for s in spans]


def _cut(text: str, spans, title: str | None, context_headers: bool, layout: Layout | None = None) -> dict[str, list]:
    """The row columns of one document's spans; with context headers the title leads each heading path."""
    texts = [text[s.start : s.end] for s in spans]
    heads = [context_of(title, s.heading_path) if context_headers else list(s.heading_path) for s in spans]
    sent = [embed_text(t, h) for t, h in zip(texts, heads)] if context_headers else texts
    pages = layout is not None and bool(layout.pages)
    return {"start": [s.start for s in spans], "end": [s.end for s in spans], "token_count": [s.token_count for s in spans],
            "text": texts, "text_hash": [sha256_text(t) for t in sent], "heading_path": heads,
            "page": [layout.page_at(s.start) if pages else None for s in spans],
            "page_end": [layout.page_at(max(s.start, s.end - 1)) if pages else None for s in spans]}


def piece_stage(changes: ChangeSet, schema: SchemaFile) -> StagedChunks:
    """The pieces a schema that cuts on embeddings must embed before it can chunk: one row per piece of
    every document this run chunks (copied documents need none), as a StagedChunks the planner prices."""
    chunker = build_chunker(schema.spec)
    rows: dict[str, list] = {name: [] for name in SEGMENT_ROWS.names}
    for u in changes.upserts:
        if u.reuse is not None:
            continue
        spans = chunker.pieces(u.text)
        if len(spans) < 2:
            continue  # one piece is its own chunk: nothing to cluster
        for s in spans:
            t = u.text[s.start : s.end]
            rows["chunk_id"].append(f"piece:{u.doc_id}:{s.start}:{s.end}")
            rows["doc_id"].append(u.doc_id)
            rows["doc_hash"].append(u.doc_hash)
            rows["metadata"].append(u.metadata)
            rows["start"].append(s.start)
            rows["end"].append(s.end)
            rows["token_count"].append(s.token_count)
            rows["text_hash"].append(sha256_text(t))
            rows["text"].append(t)
            rows["heading_path"].append([])
            rows["page"].append(None)
            rows["page_end"].append(None)
    empty = pa.Table.from_pydict({name: [] for name in SEGMENT_DOCS.names}, schema=SEGMENT_DOCS)
    return StagedChunks(changes, empty, pa.Table.from_pydict(rows, schema=SEGMENT_ROWS))


def chunk_changes(paths: TenantPaths, changes: ChangeSet, schema: SchemaFile, progress: bool = False,
                  vectors=None, bound: bool = False) -> StagedChunks:
    """Chunk (or copy the chunks of) every document of ``changes.upserts``, in order. Writes nothing.

    A schema that cuts on embeddings needs ``vectors(texts) -> rows`` for its pieces
    (the tenant's cache), or ``bound=True``: then every piece stands for a chunk,
    the most texts and about the tokens the real chunks can have, which is what a
    plan made before the pieces are embedded must budget for.
    """
    import time

    t0 = time.perf_counter()
    tenant, fp = changes.config.tenant, changes.config.chunker_fp
    if fp != schema.chunk_fingerprint(changes.config.embedder_fp):
        raise ValueError(f"change set was computed for chunker {changes.config.chunker}, not {schema.ref}")
    if not schema.needs_embeddings:
        chunker = build_chunker(schema.spec)
    elif bound:
        chunker = _PiecesAsChunks(build_chunker(schema.spec))
    elif vectors is None:
        raise ValueError(f"chunker {schema.ref} cuts on embeddings: chunk_changes needs vectors= (or bound=True)")
    else:
        chunker = build_chunker(schema.spec, embed=vectors)
    # Copied chunks, read per segment in one pass: {segment: [(upsert index, first, n)]}.
    wanted: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    pieces: list[dict | None] = []
    chunked = 0
    ups = changes.upserts
    it = tqdm(ups, desc=f"chunk {schema.ref}", unit="doc", leave=False, disable=not progress)
    for i, u in enumerate(it):
        if u.reuse is not None:
            wanted[u.reuse.segment].append((i, u.reuse.first_row, u.reuse.n_rows))
            pieces.append(None)
            continue
        chunked += 1
        pieces.append(_cut(u.text, cut_document(chunker, u.text, u.layout), u.title, schema.spec.context_headers, u.layout))
    for seg, refs in wanted.items():
        table = read_rows(paths, seg, [(first, n) for _, first, n in refs], columns=_COPIED)
        cols = {c: table.column(c).to_pylist() for c in _COPIED}
        pos = 0
        for i, _, n in refs:
            pieces[i] = {c: cols[c][pos : pos + n] for c in _COPIED}
            pos += n
    rows: dict[str, list] = {name: [] for name in SEGMENT_ROWS.names}
    docs: dict[str, list] = {name: [] for name in SEGMENT_DOCS.names}
    for u, p in zip(ups, pieces):
        n = len(p["start"])
        docs["doc_id"].append(u.doc_id)
        docs["doc_hash"].append(u.doc_hash)
        docs["metadata"].append(u.metadata)
        docs["first_row"].append(len(rows["chunk_id"]))
        docs["n_rows"].append(n)
        docs["size"].append(u.size)
        docs["mtime_ns"].append(u.mtime_ns)
        docs["source_sha256"].append(u.source_sha256)
        docs["convert_fp"].append(u.convert_fp)
        rows["chunk_id"].extend(chunk_id(tenant, u.doc_id, fp, s, e) for s, e in zip(p["start"], p["end"]))
        rows["doc_id"].extend([u.doc_id] * n)
        rows["doc_hash"].extend([u.doc_hash] * n)
        rows["metadata"].extend([u.metadata] * n)
        for c in _COPIED:
            rows[c].extend(p[c])
    staged = StagedChunks(changes, pa.Table.from_pydict(docs, schema=SEGMENT_DOCS), pa.Table.from_pydict(rows, schema=SEGMENT_ROWS),
                          docs_chunked=chunked, docs_reused=len(ups) - chunked)
    staged.bound = bound and schema.needs_embeddings
    staged.context_headers = schema.spec.context_headers
    _count_against_live(paths, staged)
    staged.seconds = time.perf_counter() - t0
    return staged


class _PiecesAsChunks:
    """The bound of a clustering chunker: each piece its own chunk.

    No clustering makes more chunks than there are pieces, and the chunks' tokens
    are the pieces' tokens give or take the whitespace where runs join them.
    """

    def __init__(self, chunker) -> None:
        self.chunker = chunker

    def chunk(self, text: str):
        return self.chunker.pieces(text)


def _count_against_live(paths: TenantPaths, staged: StagedChunks) -> None:
    """How many new rows the live generation already had (same chunk id), and how many live rows go away."""
    cs = staged.changes
    replaced = [u for u in cs.upserts if u.old is not None and u.kind != "kept"]
    kept = sum(u.old.n_rows for u in cs.upserts if u.kind == "kept")
    staged.chunks_removed = sum(d.ref.n_rows for d in cs.deletes)
    staged.chunks_unchanged = kept if cs.config.chunker_fp == cs.base_chunker_fp else 0
    staged.chunks_removed += 0 if staged.chunks_unchanged else kept
    if not replaced:
        return
    by_seg: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for u in replaced:
        by_seg[u.old.segment].append((u.old.first_row, u.old.n_rows))
    # A chunk is unchanged when its id (document, offsets) and its text are: a same-length edit
    # keeps the offsets, and must still count as a new chunk.
    old_ids: set[tuple[str, str]] = set()
    for seg, ranges in by_seg.items():
        t = read_rows(paths, seg, ranges, columns=["chunk_id", "text_hash"])
        old_ids.update(zip(t.column("chunk_id").to_pylist(), t.column("text_hash").to_pylist()))
    replaced_docs = {u.doc_id for u in replaced}
    rows = staged.rows
    new_ids = [(c, h) for c, h, d in zip(rows.column("chunk_id").to_pylist(), rows.column("text_hash").to_pylist(),
                                          rows.column("doc_id").to_pylist()) if d in replaced_docs]
    same = sum(1 for c in new_ids if c in old_ids)
    staged.chunks_unchanged += same
    staged.chunks_removed += len(old_ids) - same


def piece_texts(schema: SchemaFile, texts) -> list[str]:
    """The distinct piece texts a kind that needs embeddings will ask vectors for, for all ``texts``."""
    chunker = build_chunker(schema.spec)
    out: dict[str, None] = {}
    for text in texts:
        pieces = chunker.pieces(text)
        if len(pieces) > 1:  # a single piece is the chunk: nothing to cluster
            out.update((text[p.start : p.end], None) for p in pieces)
    return list(out)


def build_with_vectors(schema: SchemaFile, texts, embed) -> object:
    """A chunker for ``schema``; one that needs embeddings gets those of every piece of ``texts``, fetched
    with a single ``embed`` call up front (so a cache sees one batch, not one call per document)."""
    if not needs_embeddings(schema.spec):
        return build_chunker(schema.spec)
    if embed is None:
        raise ValueError(f"chunker {schema.ref} ({schema.spec.kind}) needs embeddings; pass embed=")
    wanted = piece_texts(schema, texts)
    vecs = embed(wanted) if wanted else []
    table = dict(zip(wanted, vecs))
    return build_chunker(schema.spec, embed=lambda ts: [table[t] for t in ts])


def chunk_documents(tenant: str, documents: pa.Table, schema: SchemaFile, progress: bool = False, embed=None,
                    chunker_fp: str | None = None) -> pa.Table:
    """Chunk every document of a table (doc_id, doc_hash, text) into a CHUNKS table (the evaluation runner's path).

    ``embed(texts) -> vectors`` feeds kinds that need embeddings (``cluster``), whose
    chunks then carry ``chunker_fp`` (the schema's fingerprint combined with the embedder's).
    """
    chunker = build_with_vectors(schema, documents.column("text").to_pylist(), embed)
    fp = chunker_fp or schema.fingerprint()
    cols: dict[str, list] = {name: [] for name in CHUNKS.names}
    ids = documents.column("doc_id").to_pylist()
    hashes = documents.column("doc_hash").to_pylist()
    texts = documents.column("text").to_pylist()
    titles = documents.column("title").to_pylist() if "title" in documents.column_names else [None] * len(ids)
    it = zip(ids, hashes, texts, titles)
    if progress:
        it = tqdm(it, total=len(ids), desc=f"chunk {schema.ref}", unit="doc", leave=False)
    for doc_id, doc_hash, text, title in it:
        cut = _cut(text, chunker.chunk(text), title, schema.spec.context_headers)
        n = len(cut["start"])
        cols["chunk_id"].extend(chunk_id(tenant, doc_id, fp, s, e) for s, e in zip(cut["start"], cut["end"]))
        cols["doc_id"].extend([doc_id] * n)
        cols["doc_hash"].extend([doc_hash] * n)
        cols["chunker"].extend([schema.ref] * n)
        cols["chunker_fp"].extend([fp] * n)
        for c, values in cut.items():
            cols[c].extend(values)
    return pa.Table.from_pydict(cols, schema=CHUNKS)
