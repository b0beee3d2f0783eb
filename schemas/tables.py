"""Arrow schemas of every table ragindex stores (Parquet files)."""

import pyarrow as pa

# What a source yields, before chunking (also the input of the evaluation runner).
DOCUMENTS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("doc_hash", pa.string(), nullable=False),  # sha256(normalised text)
        pa.field("source", pa.string(), nullable=False),  # file the document came from
        pa.field("metadata", pa.string()),  # JSON object, as given by the source
    ]
)

CHUNKS = pa.schema(
    [
        pa.field("chunk_id", pa.string(), nullable=False),  # sha256(tenant|doc_id|chunker_fp|start|end)
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("doc_hash", pa.string(), nullable=False),
        pa.field("chunker", pa.string(), nullable=False),  # NAME@VERSION
        pa.field("chunker_fp", pa.string(), nullable=False),
        pa.field("start", pa.int64(), nullable=False),  # character offsets: text == doc.text[start:end]
        pa.field("end", pa.int64(), nullable=False),
        pa.field("token_count", pa.int32(), nullable=False),  # in the schema's tokenizer
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("text_hash", pa.string(), nullable=False),  # sha256(text as sent to the model)
        pa.field("heading_path", pa.list_(pa.string())),
        pa.field("page", pa.int32()),  # first and last page of a converted file's chunk (SEGMENT_ROWS)
        pa.field("page_end", pa.int32()),
    ]
)

# segments/<seg_id>/rows.parquet: one row per vector of the segment's index.faiss, in
# row order, grouped by document (a document's rows are contiguous). The chunk text
# travels with the segment, so a rolled-back generation still serves the texts it
# was built from, a later run can reuse a document's chunks by (doc_hash,
# chunker_fp) without chunking it again, and the index can be rebuilt from the cache.
SEGMENT_ROWS = pa.schema(
    [
        pa.field("chunk_id", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("doc_hash", pa.string(), nullable=False),
        pa.field("start", pa.int64(), nullable=False),
        pa.field("end", pa.int64(), nullable=False),
        pa.field("token_count", pa.int32(), nullable=False),  # in the schema's tokenizer
        pa.field("text_hash", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("heading_path", pa.list_(pa.string())),
        pa.field("metadata", pa.string(), nullable=False),  # the document's metadata, JSON
        # Where the chunk is in a converted file (PDF pages, PPTX slides; 1-based): the page its
        # first character is on and the page of its last. Null for documents without pages.
        pa.field("page", pa.int32()),
        pa.field("page_end", pa.int32()),
    ]
)

# segments/<seg_id>/docs.parquet: one row per document the segment holds. The
# deletion sets of a generation name documents by their position in this table.
SEGMENT_DOCS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("doc_hash", pa.string(), nullable=False),
        pa.field("metadata", pa.string(), nullable=False),  # JSON object, canonical (sorted keys)
        pa.field("first_row", pa.int64(), nullable=False),
        pa.field("n_rows", pa.int32(), nullable=False),
        # The source file's stat when it was read (folder sources); -1 when unknown,
        # which makes the next run read the file again.
        pa.field("size", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64(), nullable=False),
        # A converted file (PDF, DOCX, PPTX, HTML): the sha256 of its bytes and the fingerprint of
        # the converter that made its text (ingest.convert). A converter upgrade reads the file
        # again even when its stat did not move. Null for text files and records.
        pa.field("source_sha256", pa.string()),
        pa.field("convert_fp", pa.string()),
    ]
)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with the nullable columns ``schema`` added since it was written filled with nulls.

    Segments are immutable: a segment written before a column existed is read as
    if the column were null throughout, never rewritten.
    """
    missing = [f for f in schema if f.name not in table.column_names]
    for f in missing:
        if not f.nullable:
            raise ValueError(f"table lacks the required column {f.name!r}")
        table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table
