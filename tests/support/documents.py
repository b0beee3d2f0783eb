"""A whole source read at once into a DOCUMENTS table.

The indexing pipeline never does this: it streams the source through
:mod:`pipeline.ingest.changes` and reads only what may have changed. This is for the
evaluation runner, benchmarks and tests, which want every document in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from ragindex.fsutil import sha256_text
from ragindex.ingest.sources import SourceReport, read_source
from ragindex.schemas.tables import DOCUMENTS


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
