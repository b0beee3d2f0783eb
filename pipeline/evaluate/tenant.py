"""Quality of one tenant generation on the tenant's own eval set (for promotion checks)."""

from __future__ import annotations

import numpy as np

from pipeline.evaluate import datasets
from pipeline.evaluate.metrics import doc_scores, span_scores
from pipeline.evaluate.runner import DOC_DEPTH, Chunks, summarize
from pipeline.evaluate.vectors import CachedEmbedder, eval_cache_path
from pipeline.index import load_generation


def tenant_quality(store, tenant: str, gen_id: str, embedder, k: int = 5) -> dict[str, float] | None:
    """Metrics of generation ``gen_id`` of ``tenant`` on its eval set; None when it has none.

    The eval set (``TenantSettings.eval_set``: a preset name or a path) is a BEIR
    folder whose document ids are the tenant's, or a span dataset whose offsets
    are into the tenant's document texts. The generation's own FAISS index is
    searched; queries are embedded through the eval cache under the store root.
    """
    settings = store.settings(tenant)
    if settings.eval_set is None:
        return None
    ds = datasets.load(settings.eval_set)
    gen = load_generation(store.require(tenant), gen_id)
    if gen.manifest.get("embedder_fp") not in (None, embedder.fingerprint):
        raise ValueError(f"generation {gen_id} of tenant {tenant!r} was embedded with another model; evaluate it with that model")
    rows = gen.rows
    chunks = Chunks(rows.column("doc_id").to_pylist(), rows.column("start").to_pylist(), rows.column("end").to_pylist(), [])
    qvecs = CachedEmbedder(eval_cache_path(f"tenant-{tenant}", store.root), lambda: embedder, label=f"eval-{tenant}").embed(ds.queries)
    n = gen.index.ntotal
    # Deep enough that documents ranked by their best chunk are exact up to DOC_DEPTH for
    # typical chunk counts per document; for a span set only the top k matter.
    depth = min(n, max(k, DOC_DEPTH * 10) if ds.kind == "docs" else k)
    if depth == 0:
        idx = np.zeros((len(ds.queries), 0), dtype=np.int64)
    else:
        _, idx = gen.index.search(np.ascontiguousarray(qvecs, dtype=np.float32), depth)
    means, _ = summarize(ds, _score_hits(ds, chunks, idx, k))
    return means


def _score_hits(ds, chunks: Chunks, idx: np.ndarray, k: int) -> dict[str, dict[str, float]]:
    per_q = {}
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for d, s, e in zip(chunks.doc_ids, chunks.starts, chunks.ends):
        by_doc.setdefault(d, []).append((s, e))
    for qid, row in zip(ds.query_ids, idx):
        hits = [int(i) for i in row if i >= 0]
        if ds.kind == "docs":
            ranked = list(dict.fromkeys(chunks.doc_ids[i] for i in hits))  # first hit = best chunk
            per_q[qid] = doc_scores(ranked, ds.qrels[qid])
        else:
            retrieved = [(chunks.doc_ids[i], chunks.starts[i], chunks.ends[i]) for i in hits[:k]]
            per_q[qid] = span_scores(retrieved, [(s.doc_id, s.start, s.end) for s in ds.spans[qid]], by_doc)
    return per_q
