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
    ]
)
