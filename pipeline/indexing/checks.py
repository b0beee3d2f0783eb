"""The properties a run must have before its generation goes live (blocking asset checks in Dagster).

Each gate is one property with its number in the metadata: the plan is within
budget (checked before anything is written), the candidate generation is
consistent, and its retrieval quality on the tenant's eval set is not worse
than the live generation's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ragindex.errors import ChecksFailed, MassDeletion  # noqa: F401  (raised here; defined with the rest)
from ragindex.evaluate.tenant import tenant_quality
from ragindex.indexing.plan import Budget, Plan
from ragindex.ingest.changeset import ChangeSet
from ragindex.search.generation import LoadedGeneration
from ragindex.store.manifests import GenerationError, Manifest, load_live_state
from ragindex.store.paths import TenantPaths
from ragindex.store.segments import check_segment


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
    """The new segment matches its checksums and holds one vector per new chunk; the generation holds
    exactly the expected live documents, each once, and the expected live rows."""
    problems = check_segment(paths, new_segment) if new_segment else []
    if new_segment and not problems:
        ref = next(r for r in candidate.segments if r.id == new_segment)
        if ref.rows != new_rows:
            problems.append(f"new segment holds {ref.rows} rows, the run made {new_rows} chunks")
    try:
        live = load_live_state(paths, candidate)
        n_docs = sum(r.live_docs for r in candidate.segments)
        if len(live.docs) != n_docs:
            problems.append(f"{n_docs - len(live.docs)} documents are live in more than one segment")
    except GenerationError as exc:
        live = None
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


def quality_gate(store, tenant: str, candidate: LoadedGeneration | None, live_id: str | None, embedder,
                 tolerance: float = 0.0, mode: str | None = None, accept_regression: str | None = None) -> Gate:
    """Retrieval quality of the candidate is not worse than the live generation's on the tenant's eval set.

    Every metric is higher-is-better (recall, nDCG, IoU...); a drop larger than
    ``tolerance`` on any of them fails. Passes, saying why, when the tenant has
    no eval set or no live generation to compare with. ``candidate`` is None when
    the tenant has no eval set (nothing was loaded to score).
    """

    scores = tenant_quality(store, tenant, candidate, embedder, mode=mode) if candidate is not None else None
    if scores is None:
        return Gate("quality_not_worse", True, "no eval set", {"status": "no eval set"})
    meta: dict = {f"eval_{m}": float(v) for m, v in scores.items()}
    if live_id is None or live_id == candidate.gen_id:
        return Gate("quality_not_worse", True, "first generation: nothing to compare with", {"status": "no live generation", **meta})
    baseline = tenant_quality(store, tenant, live_id, embedder) or {}  # the live generation in its own mode
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
