"""Upkeep after a run that changed something: merges the policy asks for, then gc (each its own atomic step).

Its settings (``RAGINDEX_KEEP_GENERATIONS``, ``RAGINDEX_MERGE_FACTOR`` and the tenant's
``keep_generations``) are read and validated by :func:`check_settings` when a
``TenantWriter`` starts, before anything is written: an invalid value used to be found
by the upkeep after the promotion, with the new generation already live.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

from ragindex.errors import SettingsError  # noqa: F401  (raised here; defined with the rest)
from ragindex.store.generations import KEEP_GENERATIONS, gc
from ragindex.store.manifests import live_manifest
from ragindex.store.merge import MERGE_FACTOR, compact_spec, merge, run_policy
from ragindex.store.segments import read_info
from ragindex.store.tenants import TenantStore

# Each maintenance variable and its allowed range (the upper bounds only keep a typo from meaning "forever").
RANGES = {"RAGINDEX_KEEP_GENERATIONS": (1, 1_000_000), "RAGINDEX_MERGE_FACTOR": (2, 1_000_000)}


@dataclass(frozen=True)
class MaintenanceSettings:
    """The ``RAGINDEX_*`` maintenance settings of this process, validated."""

    keep_generations: int | None = None  # None: unset (the tenant's setting, else KEEP_GENERATIONS)
    merge_factor: int = MERGE_FACTOR  # segments per tier before they merge (Lucene's segsPerTier)


DEFAULTS = {"RAGINDEX_KEEP_GENERATIONS": KEEP_GENERATIONS, "RAGINDEX_MERGE_FACTOR": MERGE_FACTOR}


def _whole(name: str, value, where: str, fix: str) -> int:
    lo, hi = RANGES[name]
    number = isinstance(value, int) and not isinstance(value, bool)
    ok = number or (isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value))
    if not ok or not lo <= int(value) <= hi:
        raise SettingsError(f"{where} must be a whole number from {lo} to {hi:,}, got {value!r}; {fix}")
    return int(value)


def maintenance_settings() -> MaintenanceSettings:
    """Read and validate every ``RAGINDEX_*`` maintenance setting; SettingsError (one line: the variable and its
    allowed range) for the first that is out of range."""
    values = {name: _whole(name, os.environ[name], name, f"fix it or unset it (default {DEFAULTS[name]})")
              for name in RANGES if name in os.environ}
    return MaintenanceSettings(values.get("RAGINDEX_KEEP_GENERATIONS"), values.get("RAGINDEX_MERGE_FACTOR", MERGE_FACTOR))


def check_settings(store: TenantStore, tenant: str) -> MaintenanceSettings:
    """Validate every maintenance setting a writer of ``tenant`` may use: the variables and the tenant's own
    ``keep_generations``. Called when a ``TenantWriter`` starts, before anything is written."""
    settings = maintenance_settings()
    keep = store.stored_settings(tenant).keep_generations if store.exists(tenant) else None
    if keep is not None:
        _whole("RAGINDEX_KEEP_GENERATIONS", keep, f"keep_generations in {store.paths(tenant).settings_file}",
               f"fix the file or remove the key (default: $RAGINDEX_KEEP_GENERATIONS, else {KEEP_GENERATIONS})")
    return settings


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
    env = check_settings(store, tenant)
    setting = store.stored_settings(tenant).keep_generations if store.exists(tenant) else None
    if setting is not None:
        return setting
    return env.keep_generations or KEEP_GENERATIONS


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
        _record(store, tenant, run_policy(paths, live, maintenance_settings().merge_factor), out)
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
