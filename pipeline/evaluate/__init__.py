"""Retrieval evaluation and the regression gate (DESIGN: the retrieval-regression gate).

Modules: ``datasets`` (BEIR, span and chunking-evaluation sets, presets),
``metrics`` (document and character-span metrics, bootstrap noise), ``vectors``
(embedding through a per-dataset cache), ``runner`` (chunk, embed, exact search,
score), ``tenant`` (a tenant generation on its eval set), ``gate`` (baselines,
record, diff) and ``report`` (text, JSON and markdown renderings).
"""

from __future__ import annotations


def tenant_quality(store, tenant, gen_id, embedder, k: int = 5):
    """See :func:`pipeline.evaluate.tenant.tenant_quality` (imported lazily: no FAISS at import)."""
    from ragindex.evaluate.tenant import tenant_quality as _tq

    return _tq(store, tenant, gen_id, embedder, k=k)


__all__ = ["tenant_quality"]
