"""Arrow schemas of every table ragindex stores (Parquet files)."""

import pyarrow as pa

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

# One row per vector of a generation's index.faiss, in row order. The chunk text
# travels with the generation so that a rolled-back generation still serves the
# texts it was built from, and so it can be rebuilt from the embedding cache.
GENERATION_IDS = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),
        pa.field("chunk_id", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("doc_hash", pa.string(), nullable=False),
        pa.field("start", pa.int64(), nullable=False),
        pa.field("end", pa.int64(), nullable=False),
        pa.field("text_hash", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("heading_path", pa.list_(pa.string())),
    ]
)
