"""Merging segments: the policy that keeps search fast, and the merge itself (its own atomic step).

Every incremental run adds one small segment and deletion sets. Left alone,
search would visit ever more segments and skip ever more deleted rows. The
policy, checked after each run that changed something (LSM trees and Lucene's
TieredMergePolicy are the model):

* **Deleted share.** A segment of at least ``FLOOR_ROWS`` rows whose deleted rows
  pass ``DELETED_SHARE`` (20%) is rewritten without them (smaller ones merge by tier). Milvus and Qdrant use 20%, LanceDB 10%. Deleted
  rows cost disk and, in an HNSW segment, search effort (filtered graph walks
  visit more nodes); rewriting a large segment costs a full copy of it. At 20%
  a corpus edited 1% a run rewrites its big segment about every 20 runs instead
  of every 10, and search stays within the target (benchmarks/incremental.py).
* **Tiers.** Segments are grouped by live rows in tiers of ``MERGE_FACTOR`` (10)
  times ``FLOOR_ROWS`` (1,000); ten segments in one tier are merged into one of
  the next tier, so the segment count grows with the logarithm of the corpus.
* **ANN fold.** Once the largest segment is an HNSW graph, the small segments
  beside it are scanned in full, and that scan soon costs more than the graph
  search itself (at 384 dimensions a flat scan of 5% of a 200k-row graph's rows
  costs about a fifth of the graph search; benchmarks/incremental.py measured
  1.6x the compacted latency with 4.5% beside it at a 10% threshold). When they
  hold more than ``FOLD_SHARE`` (5%) of its live rows they are folded into it:
  its graph is loaded and the new vectors are inserted (Lucene merges HNSW
  segments the same way, from the biggest graph), which costs a fraction of a
  rebuild. Its deleted rows stay deleted in the result.

A merge writes a new segment from the inputs' live rows and stored vectors
(nothing is embedded), then a manifest of ``kind: merge`` with the same content,
and moves CURRENT. Until CURRENT moves, the previous generation is complete and
live; a crash leaves an unnamed segment that gc removes. ``ragindex compact``
merges everything into one segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ragindex._faults import fault_point
from ragindex.store import segments as _segments
from ragindex.store.lexical import LexicalIndex
from ragindex.store.manifests import Manifest, SegmentRef, check_ref, new_generation_id, now_iso, promote, write_manifest
from ragindex.store.paths import TenantPaths
from ragindex.store.segments import Segment, build_index, load_segment, read_deletions, vectors_of, write_deletions, write_segment

DELETED_SHARE = 0.20
MERGE_FACTOR = 10
FLOOR_ROWS = 1_000
FOLD_SHARE = 0.05


@dataclass(frozen=True)
class MergeSpec:
    segments: tuple[str, ...]  # inputs, in manifest order
    reason: str
    fold_into: str | None = None  # an HNSW segment the others are inserted into


def _tier(live_rows: int, factor: int) -> int:
    return int(math.log(max(live_rows, FLOOR_ROWS) / FLOOR_ROWS, factor) + 1e-9)


def plan_merges(manifest: Manifest, factor: int = MERGE_FACTOR) -> list[MergeSpec]:
    """The merges the policy wants for ``manifest`` (at most one per segment), most urgent first.

    ``factor``: segments per tier before they merge (``$RAGINDEX_MERGE_FACTOR``, read and validated by
    ``store.maintenance.maintenance_settings`` when the writer starts)."""
    if factor < 2:
        raise ValueError(f"merge factor must be >= 2, got {factor}")
    refs = list(manifest.segments)
    if not refs:
        return []
    taken: set[str] = set()
    out: list[MergeSpec] = []
    largest = max(refs, key=lambda r: r.live_rows)
    others = [r for r in refs if r.id != largest.id]
    if largest.rows >= _segments.APPROX_THRESHOLD and others and sum(r.live_rows for r in others) > FOLD_SHARE * largest.live_rows \
            and largest.deleted_rows <= DELETED_SHARE * largest.rows:
        ids = tuple(r.id for r in refs)
        return [MergeSpec(ids, f"{len(others)} segments beside the HNSW segment hold "
                               f"{sum(r.live_rows for r in others):,} rows (> {FOLD_SHARE:.0%} of its {largest.live_rows:,})",
                          fold_into=largest.id)]
    for r in refs:
        # Small segments are merged by their tier anyway; rewriting one alone for its deletions would
        # write a merge generation for a handful of rows.
        if r.rows >= FLOOR_ROWS and r.deleted_rows > DELETED_SHARE * r.rows:
            out.append(MergeSpec((r.id,), f"{r.deleted_rows / r.rows:.0%} of its rows are deleted (> {DELETED_SHARE:.0%})"))
            taken.add(r.id)
    tiers: dict[int, list[SegmentRef]] = {}
    for r in refs:
        if r.id not in taken:
            tiers.setdefault(_tier(r.live_rows, factor), []).append(r)
    for tier, members in sorted(tiers.items()):
        if len(members) >= factor:
            picked = sorted(members, key=lambda r: r.live_rows)[:factor]
            ids = tuple(r.id for r in refs if r in picked)
            out.append(MergeSpec(ids, f"{len(picked)} segments in tier {tier} (up to {FLOOR_ROWS * factor ** (tier + 1):,} rows)"))
    return out


def _live(paths: TenantPaths, seg: Segment, ref: SegmentRef) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """A segment's live documents (first_row renumbered from 0), their rows, and the live row positions."""
    deleted = read_deletions(paths, ref.deletions, ref.deletions_sha256 or "") if ref.deletions else np.zeros(0, np.int64)
    keep = np.ones(seg.docs.num_rows, dtype=bool)
    keep[deleted] = False
    docs = seg.docs.filter(pa.array(keep))
    firsts = docs.column("first_row").to_numpy()
    counts = docs.column("n_rows").to_numpy()
    rows_idx = np.concatenate([np.arange(f, f + n) for f, n in zip(firsts, counts)]) if len(firsts) else np.zeros(0, np.int64)
    new_first = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, np.int64)
    docs = docs.set_column(docs.schema.get_field_index("first_row"), "first_row", pa.array(new_first, pa.int64()))
    return docs, seg.rows.take(pa.array(rows_idx, pa.int64())), rows_idx


def _shift(docs: pa.Table, offset: int) -> pa.Table:
    i = docs.schema.get_field_index("first_row")
    return docs.set_column(i, "first_row", pc.add(docs.column("first_row"), pa.scalar(offset, pa.int64())))


def merge(paths: TenantPaths, manifest: Manifest, spec: MergeSpec) -> Manifest:
    """Write the merged segment and a ``merge`` generation with the same content; promote it. Caller holds the lock."""
    refs = {r.id: r for r in manifest.segments}
    order = list(spec.segments)
    if spec.fold_into:  # the graph's documents first, so its rows and deleted positions keep their numbers
        order.remove(spec.fold_into)
        order.insert(0, spec.fold_into)
    parts: list[tuple[pa.Table, pa.Table]] = []
    lexical: list[LexicalIndex] = []
    added: list[np.ndarray] = []
    index = index_type = info = None
    born_deleted = np.zeros(0, np.int64)
    for sid in order:
        seg = load_segment(paths, sid)  # a private copy: a fold inserts into its index
        check_ref(paths, refs[sid], manifest.generation, seg.info)  # never fold a replaced (foreign) segment in
        info = info or seg.info
        if sid == spec.fold_into:
            index, index_type = seg.index, seg.info.index_type
            ref = refs[sid]
            if ref.deletions:
                born_deleted = read_deletions(paths, ref.deletions, ref.deletions_sha256 or "")
            parts.append((seg.docs, seg.rows))
            lexical.append(seg.lexical)
        else:
            docs, rows, idx = _live(paths, seg, refs[sid])
            parts.append((docs, rows))
            lexical.append(seg.lexical.take(idx))
            added.append(vectors_of(seg.index)[idx] if len(idx) else np.zeros((0, manifest.dim), np.float32))
    offset, docs_out, rows_out = 0, [], []
    for docs, rows in parts:
        docs_out.append(_shift(docs, offset))
        rows_out.append(rows)
        offset += rows.num_rows
    new_vectors = np.concatenate(added) if added else np.zeros((0, manifest.dim), np.float32)
    if index is not None:
        if len(new_vectors):
            index.add(np.ascontiguousarray(new_vectors, dtype=np.float32))
        vectors = None
    else:
        vectors = new_vectors
        index, index_type = build_index(vectors, manifest.dim)
    seg_info = write_segment(paths, pa.concat_tables(docs_out), pa.concat_tables(rows_out), vectors, {
        "chunker": info.chunker, "chunker_fp": info.chunker_fp, "embedder": info.embedder, "embedder_fp": info.embedder_fp,
        "dim": manifest.dim}, index=index, index_type=index_type, lexical=LexicalIndex.stack(lexical))
    new_ref = SegmentRef.of(seg_info)
    if len(born_deleted):
        name, digest = write_deletions(paths, seg_info.segment, born_deleted)
        new_ref = new_ref.model_copy(update={"deleted_docs": len(born_deleted), "deleted_rows": refs[spec.fold_into].deleted_rows,
                                             "deletions": name, "deletions_sha256": digest})
    kept = [r for r in manifest.segments if r.id not in spec.segments]
    merged = manifest.model_copy(update={
        "generation": new_generation_id(manifest.generation + seg_info.segment), "created_at": now_iso(),
        "parent": manifest.generation, "kind": "merge", "segments": [*kept, new_ref], "gates": {}, "sha256": "",
        "run": {"merged": list(spec.segments), "into": seg_info.segment, "reason": spec.reason, "fold": spec.fold_into is not None},
    })
    if sum(r.live_rows for r in merged.segments) != manifest.chunks:
        raise AssertionError(f"merge of {spec.segments} would change the live rows ({manifest.chunks} before)")
    merged = write_manifest(paths, merged)
    fault_point("merge-written")
    promote(paths, merged.generation)
    return merged


def compact_spec(manifest: Manifest) -> MergeSpec | None:
    """Everything into one segment, deleted rows dropped (``ragindex compact``); None if already compact."""
    refs = manifest.segments
    if len(refs) <= 1 and not any(r.deleted_rows for r in refs):
        return None
    return MergeSpec(tuple(r.id for r in refs), "compaction requested")


def run_policy(paths: TenantPaths, manifest: Manifest, factor: int = MERGE_FACTOR, limit: int = 8) -> list[Manifest]:
    """Apply the policy until it is satisfied (at most ``limit`` merges); return the merge generations."""
    out = []
    for _ in range(limit):
        specs = plan_merges(manifest, factor)
        if not specs:
            break
        manifest = merge(paths, manifest, specs[0])
        out.append(manifest)
    return out

