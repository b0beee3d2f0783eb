"""The properties a run must have before its generation goes live (blocking asset checks in Dagster).

Each gate is one property with its number in the metadata: the plan is within
budget (checked before anything is written), the candidate generation is
consistent, and its retrieval quality on the tenant's eval set is not worse
than the live generation's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ragindex.errors import ChecksFailed, MassDeletion  # noqa: F401  (raised here; defined with the rest)
from ragindex.evaluate.tenant import tenant_quality
from ragindex.fsutil import sha256_text
from ragindex.indexing.plan import Budget, Plan
from ragindex.ingest.changeset import ChangeSet
from ragindex.search.generation import LoadedGeneration
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import GenerationError, Manifest, check_ref, load_live_state
from ragindex.store.paths import TenantPaths
from ragindex.store.segments import FILES, SegmentError, check_segment, checksum_problems, segment_dir


@dataclass(frozen=True)
class Gate:
    """One property a run must have before its generation goes live."""

    name: str
    passed: bool
    summary: str
    metadata: dict = field(default_factory=dict)  # numbers stay numbers, so Dagster can plot them

    def to_dict(self) -> dict:
        return {"passed": self.passed, "summary": self.summary, **{k: v for k, v in self.metadata.items() if k != "summary"}}


def budget_gate(plan: Plan, budget: Budget) -> Gate:
    """The plan is within --budget-tokens / --max-cost (checked before anything is written)."""
    reasons = budget.violations(plan)
    meta = {"planned_tokens": plan.total_tokens, "planned_cost_usd": plan.usd(float(plan.total_cost_usd)), "plan_exact": plan.exact}
    if budget.tokens is not None:
        meta["budget_tokens"] = budget.tokens
    if budget.cost_usd is not None:
        meta["max_cost_usd"] = float(budget.cost_usd)
    summary = "; ".join(reasons) if reasons else ("no budget set" if budget == Budget() else "plan within budget")
    return Gate("budget_respected", not reasons, summary, meta)


def consistency_gate(paths: TenantPaths, candidate: Manifest, expected_docs: int, expected_rows: int,
                     new_segment: str | None, new_rows: int) -> Gate:
    """Every segment the candidate names is intact and this tenant's; the new segment holds one vector per new
    chunk; the generation holds exactly the expected live documents, each once, and the expected live rows.

    The new segment gets verify's full check (checksums and counts). A segment the candidate shares with
    earlier generations is checked against its checksums (:data:`verified_segments`: hashed once per
    process while its files are unchanged) and against what the manifest recorded (``check_ref``), so a
    run never promotes a generation that names a damaged or foreign segment."""
    problems = _segment_problems(paths, candidate, new_segment)
    if new_segment and not problems:
        ref = next(r for r in candidate.segments if r.id == new_segment)
        if ref.rows != new_rows:
            problems.append(f"new segment holds {ref.rows} rows, the run made {new_rows} chunks")
    if not problems:  # the documents of a damaged segment cannot be counted
        try:
            live = load_live_state(paths, candidate)
            n_docs = sum(r.live_docs for r in candidate.segments)
            if len(live.docs) != n_docs:
                problems.append(f"{n_docs - len(live.docs)} documents are live in more than one segment")
        except GenerationError as exc:
            problems.append(str(exc))
    rows = sum(r.live_rows for r in candidate.segments)
    if candidate.documents != expected_docs:
        problems.append(f"{candidate.documents} live documents, expected {expected_docs}")
    if candidate.chunks != expected_rows or rows != expected_rows:
        problems.append(f"{rows} live rows, expected {expected_rows}")
    meta = {"vectors": rows, "chunks": expected_rows, "documents": candidate.documents, "segments": len(candidate.segments),
            "new_segment_rows": new_rows, "problems": len(problems)}
    summary = (f"{rows} vectors for {expected_rows} chunks of {candidate.documents} documents in "
               f"{len(candidate.segments)} segment(s)") if not problems else "; ".join(problems)
    return Gate("index_consistency", not problems, summary, meta)


def _segment_problems(paths: TenantPaths, candidate: Manifest, new_segment: str | None) -> list[str]:
    """What is wrong with the segments ``candidate`` names, ending with what to run; empty when all are sound."""
    problems = []
    for ref in candidate.segments:
        found = check_segment(paths, ref.id) if ref.id == new_segment else verified_segments.problems(paths, ref.id)
        if not found:
            try:
                check_ref(paths, ref, candidate.generation)
            except SegmentError as exc:
                found = [str(exc)]
        problems += found
    if problems:
        problems.append(f"run `ragindex verify --tenant {paths.name} --repair`, then run again")
    return problems


class VerifiedSegments:
    """Segments whose checksums matched, with their files' signatures (inode, size, mtime, ctime).

    A segment is shared by every generation that names it, so without this each run
    of a long-lived process (a Dagster code location, a benchmark loop) would hash
    the whole index again. A segment is hashed again as soon as one of its files
    changes; a new process hashes each segment once; ``verify`` always hashes; a
    verdict with problems is never remembered.
    """

    def __init__(self) -> None:
        self._clean: dict[tuple[str, str], tuple] = {}
        self.hashed = 0  # segments read and hashed by this process

    def clear(self) -> None:
        self._clean.clear()
        self.hashed = 0

    @staticmethod
    def _signature(paths: TenantPaths, seg_id: str) -> tuple | None:
        d = segment_dir(paths, seg_id)
        try:
            stats = [os.stat(d / n) for n in ("segment.json", *FILES)]
            return tuple((s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns) for s in stats)
        except OSError:
            return None

    def problems(self, paths: TenantPaths, seg_id: str) -> list[str]:
        key, sig = (str(paths.root), seg_id), self._signature(paths, seg_id)
        if sig is not None and self._clean.get(key) == sig:
            return []
        self.hashed += 1
        found = checksum_problems(paths, seg_id)
        if not found and sig is not None and self._signature(paths, seg_id) == sig:
            self._clean[key] = sig
        return found


verified_segments = VerifiedSegments()


def quality_gate(store, tenant: str, candidate: LoadedGeneration | None, live_id: str | None, embedder,
                 tolerance: float = 0.0, mode: str | None = None, accept_regression: str | None = None,
                 cache: EmbeddingCache | None = None) -> Gate:
    """Retrieval quality of the candidate is not worse than the live generation's on the tenant's eval set.

    Every metric is higher-is-better (recall, nDCG, IoU...); a drop larger than
    ``tolerance`` on any of them fails. Passes, saying why, when the tenant has
    no eval set or no live generation to compare with. ``candidate`` is None when
    the tenant has no eval set (nothing was loaded to score).

    A paid model's queries are never sent from here: the run's plan embedded them into
    the tenant's ``cache`` (budgeted and in the ledger), and they are read from it. When
    the live generation is in an older epoch (a drift was accepted) whose query vectors
    the cache does not hold, the provider no longer serves that model: not compared.
    """
    paid = cache is not None and getattr(embedder, "device", "") == "api"
    queries = {"query_vectors": _cached_queries(cache)} if paid else {}
    scores = tenant_quality(store, tenant, candidate, embedder, mode=mode, **queries) if candidate is not None else None
    if scores is None:
        return Gate("quality_not_worse", True, "no eval set", {"status": "no eval set"})
    meta: dict = {f"eval_{m}": float(v) for m, v in scores.items()}
    if live_id is None or live_id == candidate.gen_id:
        return Gate("quality_not_worse", True, "first generation: nothing to compare with", {"status": "no live generation", **meta})
    try:
        baseline = tenant_quality(store, tenant, live_id, embedder, **queries) or {}  # the live one in its own mode
    except KeyError:
        return Gate("quality_not_worse", True, f"not compared: live {live_id}'s model (an earlier epoch) is no longer served",
                    {"status": "live model gone", "live_generation": live_id, **meta})
    worse = []
    for m, v in scores.items():
        if m in baseline:
            meta[f"live_{m}"] = float(baseline[m])
            meta[f"delta_{m}"] = float(v - baseline[m])
            if v < baseline[m] - tolerance:
                worse.append(f"{m} {v:.4f} < live {baseline[m]:.4f}")
    summary = ("worse than live " + live_id + ": " + ", ".join(worse)) if worse else f"not worse than live {live_id}"
    if worse and accept_regression:
        return Gate("quality_not_worse", True, f"{summary}; accepted: {accept_regression}",
                    {"status": "accepted regression", "accepted_regression": accept_regression, "live_generation": live_id, **meta})
    return Gate("quality_not_worse", not worse, summary, {"status": "compared", "live_generation": live_id, **meta})


def _cached_queries(cache: EmbeddingCache):
    """Query vectors from the tenant's cache, by the same content-hash key as chunk texts (KeyError: not there)."""
    def vectors(embedder, queries: list[str]) -> np.ndarray:
        return cache.vectors(embedder.fingerprint, [sha256_text(q) for q in queries], embedder.dim)
    return vectors


# -- guards against silent data loss ----------------------------------------

# Guards against silent data loss: a run that would delete most of a tenant's documents is refused.
#
# An unmounted network share looks exactly like an empty folder, and a folder
# whose files all fail to decode looks like one whose documents were all deleted.
# Indexing that would empty the index with exit 0. So a run that would delete
# every live document, or more than ``max_delete_share`` of them (default 50%),
# is refused before anything is written, unless the run says ``--allow-deletions``
# or the tenant's settings allow it.

MAX_DELETE_SHARE = 0.5


def deletion_gate(changes: ChangeSet, allow: bool = False, max_share: float = MAX_DELETE_SHARE) -> Gate:
    """Whether the change set's deletions are within the limit (or allowed anyway)."""
    live, deleted = changes.base_documents, len(changes.deletes)
    share = deleted / live if live else 0.0
    meta = {"live_documents": live, "documents_to_delete": deleted, "share": round(share, 4), "max_share": max_share,
            "allowed": allow}
    too_many = live > 0 and (deleted == live or share > max_share)
    if not too_many:
        return Gate("deletions_within_limit", True, f"{deleted} of {live} live documents deleted", meta)
    what = "every one" if deleted == live else f"{share:.0%}"
    if allow:
        return Gate("deletions_within_limit", True, f"{deleted} of {live} live documents deleted ({what}); allowed", meta)
    summary = (f"the run would delete {deleted} of {live} live documents ({what}) of tenant {changes.config.tenant}. "
               f"If the source {changes.config.source} is unmounted, empty by mistake or unreadable, fix it and run "
               "again; nothing was changed. If these documents really are gone, rerun with --allow-deletions "
               "(or set allow_deletions in the tenant's settings)")
    return Gate("deletions_within_limit", False, summary, meta)
