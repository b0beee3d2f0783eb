"""Stage 2, chunks: documents are cut by a schema NAME@VERSION into a CHUNKS table."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from chunkers import build_chunker
from pipeline.fsutil import atomic_write_parquet, sha256_text
from schemas.chunker import SchemaFile
from schemas.tables import CHUNKS


def chunk_id(tenant: str, doc_id: str, chunker_fp: str, start: int, end: int) -> str:
    """Content-addressed chunk identity (DESIGN: identities)."""
    return hashlib.sha256(f"{tenant}|{doc_id}|{chunker_fp}|{start}|{end}".encode("utf-8")).hexdigest()


def chunk_documents(tenant: str, documents: pa.Table, schema: SchemaFile, progress: bool = False) -> pa.Table:
    """Chunk every document; the result satisfies ``doc.text[start:end] == chunk.text``."""
    chunker = build_chunker(schema.spec)
    fp = schema.fingerprint()
    cols: dict[str, list] = {name: [] for name in CHUNKS.names}
    ids = documents.column("doc_id").to_pylist()
    hashes = documents.column("doc_hash").to_pylist()
    texts = documents.column("text").to_pylist()
    it = zip(ids, hashes, texts)
    if progress:
        it = tqdm(it, total=len(ids), desc=f"chunk {schema.ref}", unit="doc", leave=False)
    for doc_id, doc_hash, text in it:
        for span in chunker.chunk(text):
            piece = text[span.start : span.end]
            cols["chunk_id"].append(chunk_id(tenant, doc_id, fp, span.start, span.end))
            cols["doc_id"].append(doc_id)
            cols["doc_hash"].append(doc_hash)
            cols["chunker"].append(schema.ref)
            cols["chunker_fp"].append(fp)
            cols["start"].append(span.start)
            cols["end"].append(span.end)
            cols["token_count"].append(span.token_count)
            cols["text"].append(piece)
            cols["text_hash"].append(sha256_text(piece))
            cols["heading_path"].append(list(span.heading_path))
    return pa.Table.from_pydict(cols, schema=CHUNKS)


def write_chunks(path: Path, table: pa.Table) -> None:
    atomic_write_parquet(path, table)
