"""Stage 4, tenant_index: write what changed as one segment and deletion sets, check it, promote it.

Order of writes (STYLE 7): the new segment (complete, renamed into place), the
deletion files, then the manifest, then CURRENT. Nothing before the manifest is
named by any generation, and nothing before CURRENT is live, so a crash at any
point leaves the previous generation live; gc removes what a crash left.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ragindex._faults import fault_point
from ragindex.indexing.checks import ChecksFailed, Gate, consistency_gate, quality_gate
from ragindex.indexing.chunk import StagedChunks
from ragindex.indexing.plan import Plan
from ragindex.ingest.convert import Converted
from ragindex.search.generation import SegmentCache, open_generation
from ragindex.store import conversions
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import Manifest, SegmentRef, new_generation_id, now_iso, promote, read_manifest, write_manifest
from ragindex.store.segments import SegmentInfo, read_deletions, write_deletions, write_segment
from ragindex.store.tenants import TenantStore


def epoch_of(embedder) -> int:
    """A hosted model's key-space epoch (0 for local models)."""
    settings = getattr(embedder, "settings", None)
    return int(getattr(settings, "epoch", 0))


def content_versions(docs_digest: str, chunker_fp: str, embedder_fp: str) -> dict[str, str]:
    """Dagster DataVersions of each stage, from content only: the same documents under the same schema
    and model give the same versions, whatever run produced them."""
    chunks = hashlib.sha256(f"{docs_digest}|{chunker_fp}".encode()).hexdigest()
    index = hashlib.sha256(f"{chunks}|{embedder_fp}".encode()).hexdigest()
    return {"documents": docs_digest, "chunks": chunks, "embeddings": index, "tenant_index": index}


@dataclass
class CommitResult:
    manifest: Manifest
    promoted: bool
    segment: SegmentInfo | None
    gates: list[Gate] = field(default_factory=list)
    bytes_written: int = 0

    @property
    def generation(self) -> str:
        return self.manifest.generation


def commit(store: TenantStore, staged: StagedChunks, plan: Plan, ledger: dict, cache: EmbeddingCache, embedder, *,
           quality_tolerance: float = 0.0, segments: SegmentCache | None = None, search_mode: str = "dense",
           accept_regression: str | None = None) -> CommitResult:
    """Write the staged run as a candidate generation, run its gates, and promote it if they pass.

    The caller holds the tenant's lock, and ``staged`` was computed against the
    live generation (``staged.changes.base``). Vectors come from the cache only:
    this never embeds. Raises ChecksFailed (candidate written, live unchanged).
    """
    cs = staged.changes
    tenant = cs.config.tenant
    paths = store.paths(tenant)
    base = read_manifest(paths, cs.base) if cs.base else None
    written = _cache_conversions(paths, cs)
    seg = None
    if staged.docs.num_rows:
        vectors = cache.vectors(embedder.fingerprint, staged.rows.column("text_hash").to_pylist(), embedder.dim)
        seg = write_segment(paths, staged.docs, staged.rows, vectors, {
            "chunker": cs.config.chunker, "chunker_fp": cs.config.chunker_fp, "embedder": embedder.name,
            "embedder_fp": embedder.fingerprint, "dim": embedder.dim})
        written += seg.bytes
    refs, deletion_bytes = _apply_deletions(paths, base, staged)
    written += deletion_bytes
    if seg is not None:
        refs.append(SegmentRef.of(seg))
    manifest = Manifest(
        generation=new_generation_id(cs.docs_digest + (seg.segment if seg else "")), tenant=tenant, created_at=now_iso(),
        parent=cs.base, kind="index", chunker=cs.config.chunker, chunker_fp=cs.config.chunker_fp, embedder=embedder.name,
        embedder_fp=embedder.fingerprint, embedder_epoch=epoch_of(embedder), search_mode=search_mode, dim=embedder.dim,
        segments=refs,
        documents=sum(r.live_docs for r in refs), chunks=sum(r.live_rows for r in refs), source=cs.source,
        docs_digest=cs.docs_digest, versions=content_versions(cs.docs_digest, cs.config.chunker_fp, embedder.fingerprint),
        run={"run_id": ledger.get("run_id"), "changes": cs.counts(), "rebuild": cs.rebuild,
             **({"embedder_detail": plan.embedder_detail} if plan.embedder_detail else {}),
             "plan": {"texts_to_embed": plan.texts_to_embed, "tokens_to_embed": plan.tokens_to_embed,
                      "cost_usd": plan.usd(plan.cost_usd)},
             "ledger": {k: plan.ledger_report(ledger).get(k) for k in ("texts", "tokens", "tokens_cl100k", "seconds", "cost_usd")}},
    )
    gates = [consistency_gate(paths, manifest, cs.documents_after, staged.rows_after, seg.segment if seg else None,
                              staged.rows.num_rows)]
    candidate = None
    if store.settings(tenant).eval_set is not None and gates[0].passed:
        candidate = open_generation(paths, manifest, segments)
    gates.append(quality_gate(store, tenant, candidate, cs.base, embedder, tolerance=quality_tolerance, mode=search_mode,
                              accept_regression=accept_regression, cache=cache))
    evals = {k[5:]: v for k, v in gates[1].metadata.items() if k.startswith("eval_")}
    manifest = write_manifest(paths, manifest.model_copy(update={
        "gates": {g.name: g.to_dict() for g in gates}, "eval": evals or None}))
    written += paths.manifest(manifest.generation).stat().st_size
    fault_point("generation-built")
    result = CommitResult(manifest, False, seg, gates, written)
    if not all(g.passed for g in gates):
        raise ChecksFailed(manifest.generation, gates)
    promote(paths, manifest.generation)
    result.promoted = True
    return result


def _cache_conversions(paths, cs) -> int:
    """Store the conversions this run made, so these bytes are never converted again (store.conversions).

    Written before the segment that refers to them; an entry a crash leaves behind
    is content-addressed and harmless, and gc drops it once nothing refers to it.
    """
    written = 0
    for u in cs.upserts:
        if u.convert_fp is not None and u.text is not None and u.layout is not None:
            written += conversions.put(paths, u.source_sha256, u.convert_fp, Converted(u.text, u.layout, len(u.layout.pages)))
    return written


def _apply_deletions(paths, base: Manifest | None, staged: StagedChunks) -> tuple[list[SegmentRef], int]:
    """The base's segment list with this run's deletions applied (new deletion files written).

    A rebuild keeps none of the base's segments; a segment with no live document
    left is dropped from the list (gc deletes it once no generation names it).
    """
    cs = staged.changes
    if base is None or cs.rebuild:
        return [], 0
    gone: dict[str, dict[int, int]] = defaultdict(dict)  # segment -> {position: rows}
    for u in cs.upserts:
        if u.old is not None:
            gone[u.old.segment][u.old.ordinal] = u.old.n_rows
    for d in cs.deletes:
        gone[d.ref.segment][d.ref.ordinal] = d.ref.n_rows
    refs, written = [], 0
    for ref in base.segments:
        if ref.id not in gone:
            refs.append(ref)
            continue
        before = read_deletions(paths, ref.deletions, ref.deletions_sha256 or "") if ref.deletions else np.zeros(0, np.int64)
        new = {o: n for o, n in gone[ref.id].items() if o not in set(before.tolist())}
        ordinals = np.union1d(before, np.fromiter(new, dtype=np.int64, count=len(new)))
        if len(ordinals) >= ref.docs:
            continue  # nothing of it is live any more
        name, digest = write_deletions(paths, ref.id, ordinals)
        written += 4 * len(ordinals)
        refs.append(ref.model_copy(update={"deleted_docs": len(ordinals), "deleted_rows": ref.deleted_rows + sum(new.values()),
                                           "deletions": name, "deletions_sha256": digest}))  # keeps its binding
    return refs, written
