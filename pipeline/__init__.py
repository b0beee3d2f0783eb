"""ragindex: a RAG indexing pipeline with versioned chunker schemas, embedding cost control and
per-tenant FAISS generations.

The public API is one import (see ``docs/api.md``)::

    from ragindex import Ragindex

One subpackage per stage or concern: ``ingest`` (sources, change detection),
``indexing`` (the one run entry point and its stages), ``embedders``, ``store`` (a
tenant's files and ``TenantWriter``, the one owner of writes), ``search``, ``serve``
and ``evaluate``. ``ragindex.api`` is the Python API; ``ragindex.cli`` and
``ragindex.orchestration`` (the Dagster code location) are thin layers over it and
over ``indexing``. ``ragindex.chunkers`` and ``ragindex.schemas`` hold the chunker
kinds and the versioned schemas. docs/architecture.md has the map.
"""

from __future__ import annotations

__all__ = ["Ragindex", "Tenant", "Hit", "Budget", "BudgetExceeded", "IndexingResult", "Plan", "RunOptions"]

_EXPORTS = {"Ragindex": "ragindex.api", "Tenant": "ragindex.api", "Hit": "ragindex.search.searcher", "Budget": "ragindex.indexing.plan",
            "BudgetExceeded": "ragindex.errors", "IndexingResult": "ragindex.indexing.run", "Plan": "ragindex.indexing.plan", "RunOptions": "ragindex.indexing.options"}


def __getattr__(name: str):
    # Lazy, so `import ragindex.chunkers` (or the CLI's --help) does not load FAISS, torch and pyarrow.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ragindex' has no attribute {name!r}")
