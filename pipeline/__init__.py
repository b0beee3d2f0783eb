"""ragindex: a RAG indexing pipeline with versioned chunker schemas, embedding cost control and
per-tenant FAISS generations.

The public API is one import (see ``docs/api.md``)::

    from ragindex import Ragindex

The stages (sources, changes, chunking, embedding, index, search, cost, evaluation)
are plain modules of this package; ``ragindex.cli`` and ``ragindex.orchestration``
(the Dagster code location) are thin layers over them. ``ragindex.chunkers`` and
``ragindex.schemas`` hold the chunker kinds and the versioned schemas.
"""

from __future__ import annotations

__all__ = ["Ragindex", "Tenant", "Hit", "Budget", "BudgetExceeded", "IndexingResult", "Plan"]

_EXPORTS = {"Ragindex": "ragindex.api", "Tenant": "ragindex.api", "Hit": "ragindex.search", "Budget": "ragindex.cost",
            "BudgetExceeded": "ragindex.cost", "IndexingResult": "ragindex.reindex", "Plan": "ragindex.cost"}


def __getattr__(name: str):
    # Lazy, so `import ragindex.chunkers` (or the CLI's --help) does not load FAISS, torch and pyarrow.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ragindex' has no attribute {name!r}")
