"""Quality of one tenant generation on the tenant's own eval set (for promotion checks)."""

from __future__ import annotations

from ragindex.evaluate import datasets
from ragindex.evaluate.metrics import doc_scores, span_scores
from ragindex.evaluate.runner import DOC_DEPTH, summarize
from ragindex.evaluate.vectors import CachedEmbedder, eval_cache_path
from ragindex.search.generation import LoadedGeneration, load_generation
from ragindex.search.hybrid import params_for


def tenant_quality(store, tenant: str, generation: LoadedGeneration | str, embedder, k: int = 5,
                   mode: str | None = None, query_vectors=None) -> dict[str, float] | None:
    """Metrics of a generation of ``tenant`` on its eval set; None when it has none.

    ``generation`` is a loaded candidate (not yet written) or a generation id.
    The eval set (``TenantSettings.eval_set``: a preset name or a path) is a BEIR
    folder whose document ids are the tenant's, or a span dataset whose offsets
    are into the tenant's document texts. The generation itself is searched
    (every segment, deleted rows skipped); queries are embedded through the eval
    cache under the store root, or given by ``query_vectors(embedder, queries)``
    (a paid model's run: from the tenant's own cache, where its plan put them).
    """
    settings = store.settings(tenant)
    if settings.eval_set is None:
        return None
    ds = datasets.load(settings.eval_set)
    gen = load_generation(store.require(tenant), generation) if isinstance(generation, str) else generation
    if hasattr(embedder, "with_epoch"):  # a hosted model, in the generation's key space
        embedder = embedder.with_epoch(gen.manifest.embedder_epoch)
    if gen.manifest.embedder_fp != embedder.fingerprint:
        raise ValueError(f"generation {gen.gen_id} of tenant {tenant!r} was embedded with another model; evaluate it with that model")
    mode = mode or gen.manifest.search_mode
    if mode == "bm25":
        qvecs = None
    elif query_vectors is not None:
        qvecs = query_vectors(embedder, ds.queries)
    else:
        qvecs = CachedEmbedder(eval_cache_path(f"tenant-{tenant}", store.root), lambda: embedder,
                               label=f"eval-{tenant}").embed(ds.queries)
    # Deep enough that documents ranked by their best chunk are exact up to DOC_DEPTH for
    # typical chunk counts per document; for a span set only the top k matter.
    depth = min(gen.ntotal, max(k, DOC_DEPTH * 10) if ds.kind == "docs" else k)
    if not depth:
        hits = [[] for _ in ds.queries]
    elif mode == "dense":
        hits = gen.search(qvecs, depth)
    elif mode == "bm25":
        hits = [gen.search_lexical(q, depth) for q in ds.queries]
    else:
        hits = [gen.search_hybrid(q, v, depth, params_for(mode)) for q, v in zip(ds.queries, qvecs)]
    per_q = {}
    by_doc: dict[str, list[tuple[int, int]]] = {}
    located = [[_locate(gen, c) for c in row] for row in hits]
    if ds.kind != "docs":
        for view in gen.views:
            r = view.seg.rows
            cols = zip(r.column("doc_id").to_pylist(), r.column("start").to_pylist(), r.column("end").to_pylist())
            for i, (d, s, e) in enumerate(cols):
                if view.mask is None or view.mask[i]:
                    by_doc.setdefault(d, []).append((s, e))
    for qid, row in zip(ds.query_ids, located):
        if ds.kind == "docs":
            ranked = list(dict.fromkeys(d for d, _, _ in row))  # first hit = best chunk
            per_q[qid] = doc_scores(ranked, ds.qrels[qid])
        else:
            per_q[qid] = span_scores(row[:k], [(s.doc_id, s.start, s.end) for s in ds.spans[qid]], by_doc)
    means, _ = summarize(ds, per_q)
    return means


def _locate(gen: LoadedGeneration, c) -> tuple[str, int, int]:
    rows = gen.views[c.seg].seg.rows
    return rows.column("doc_id")[c.row].as_py(), rows.column("start")[c.row].as_py(), rows.column("end")[c.row].as_py()
