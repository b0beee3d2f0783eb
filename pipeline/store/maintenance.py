"""Upkeep after a run that changed something: merges the policy asks for, then gc (each its own atomic step)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ragindex.store.generations import KEEP_GENERATIONS, gc
from ragindex.store.manifests import live_manifest
from ragindex.store.merge import compact_spec, merge, run_policy
from ragindex.store.segments import read_info
from ragindex.store.tenants import TenantStore


@dataclass
class Maintenance:
    merges: list[dict] = field(default_factory=list)  # {generation, segment, inputs, reason}
    removed: list[str] = field(default_factory=list)  # manifests, segments and deletion files gc deleted
    bytes_written: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"merges": self.merges, "removed": len(self.removed), "bytes_written": self.bytes_written,
                "seconds": round(self.seconds, 3)}


def keep_generations(store: TenantStore, tenant: str) -> int:
    """How many recent generations gc keeps: the tenant's setting, else $RAGINDEX_KEEP_GENERATIONS, else 5."""
    setting = store.settings(tenant).keep_generations if store.exists(tenant) else None
    if setting is not None:
        return setting
    raw = os.environ.get("RAGINDEX_KEEP_GENERATIONS")
    if raw is not None:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"RAGINDEX_KEEP_GENERATIONS must be a whole number >= 1, got {raw!r}")
        return int(raw)
    return KEEP_GENERATIONS


def _record(store: TenantStore, tenant: str, merged, out: Maintenance) -> None:
    paths = store.paths(tenant)
    for m in merged:
        seg = read_info(paths, m.run["into"])
        out.merges.append({"generation": m.generation, "segment": seg.segment, "rows": seg.rows,
                           "inputs": m.run["merged"], "reason": m.run["reason"]})
        out.bytes_written += seg.bytes + paths.manifest(m.generation).stat().st_size


def maintain(store: TenantStore, tenant: str, embedder=None, cache=None) -> Maintenance:
    """Apply the merge policy to the live generation, then gc with the tenant's retention. Caller holds the lock."""
    t0 = time.perf_counter()
    out = Maintenance()
    paths = store.paths(tenant)
    live = live_manifest(paths)
    if live is not None:
        _record(store, tenant, run_policy(paths, live), out)
    out.removed = gc(paths, keep_generations(store, tenant))
    out.seconds = time.perf_counter() - t0
    return out


def compact(store: TenantStore, tenant: str) -> Maintenance:
    """Merge every segment of the live generation into one, without deleted rows; then gc. Caller holds the lock."""
    t0 = time.perf_counter()
    out = Maintenance()
    paths = store.paths(tenant)
    live = live_manifest(paths)
    spec = compact_spec(live) if live is not None else None
    if spec is not None:
        _record(store, tenant, [merge(paths, live, spec)], out)
    out.removed = gc(paths, keep_generations(store, tenant))
    out.seconds = time.perf_counter() - t0
    return out
