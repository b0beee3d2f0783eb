"""Stage 1, documents: a source becomes the tenant's ``documents.parquet``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.fsutil import atomic_write_parquet, sha256_text
from pipeline.sources import SourceReport, read_source
from schemas.tables import DOCUMENTS


def documents_table(report: SourceReport) -> pa.Table:
    """The documents of a source report as a DOCUMENTS table (doc_hash computed here)."""
    docs = report.documents
    return pa.Table.from_pydict(
        {
            "doc_id": [d.doc_id for d in docs],
            "title": [d.title for d in docs],
            "text": [d.text for d in docs],
            "doc_hash": [sha256_text(d.text) for d in docs],
            "source": [d.source for d in docs],
            "metadata": [json.dumps(d.metadata, sort_keys=True, ensure_ascii=False) for d in docs],
        },
        schema=DOCUMENTS,
    )


def load_documents(source: Path) -> tuple[pa.Table, SourceReport]:
    """Read ``source`` into a DOCUMENTS table plus the report of what was skipped."""
    report = read_source(source)
    return documents_table(report), report


def write_documents(path: Path, table: pa.Table) -> None:
    atomic_write_parquet(path, table)


def read_documents(path: Path) -> pa.Table:
    """Read a DOCUMENTS table; a corrupt or wrong-shaped file raises ValueError naming it."""
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise ValueError(f"{path}: corrupt documents file ({exc}); rerun `ragindex reindex` to rewrite it") from exc
    if not DOCUMENTS.remove_metadata().equals(table.schema.remove_metadata()):
        raise ValueError(f"{path}: unexpected columns {table.column_names}; rerun `ragindex reindex` to rewrite it")
    return table
