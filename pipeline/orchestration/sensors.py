"""The sources sensor: a new tenant folder adds a partition and a run; a changed folder, a run for it only."""


import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import dagster as dg

from ragindex.orchestration.assets import tenants
from ragindex.orchestration.resources import SourcesResource, TenantStoreResource
from ragindex.store.paths import TENANT_RE
from ragindex.store.writer import TenantWriter


@dataclass
class Scan:
    fingerprints: dict[str, str] = field(default_factory=dict)  # tenant -> fingerprint of its folder
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (entry, reason)


def folder_fingerprint(folder: Path) -> str:
    """sha256 over (relative path, size, mtime_ns) of every file: cheap, and any edit changes it."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            f = Path(root) / name
            try:
                st = f.stat()
            except OSError:  # vanished while scanning: the next tick sees the new state
                continue
            h.update(f"{f.relative_to(folder).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def scan_sources(root: Path) -> Scan:
    """One entry per sub-folder of ``root`` named like a tenant; everything else is listed as rejected."""
    scan = Scan()
    if not root.is_dir():
        scan.rejected.append((str(root), "sources root does not exist"))
        return scan
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            scan.rejected.append((entry.name, "not a folder (one folder per tenant)"))
        elif not TENANT_RE.fullmatch(entry.name):
            scan.rejected.append((entry.name, "not a valid tenant name ([a-z0-9][a-z0-9_-]{0,62})"))
        else:
            scan.fingerprints[entry.name] = folder_fingerprint(entry)
    return scan


def sensor_interval() -> int:
    """Seconds between sensor ticks: RAGINDEX_SENSOR_INTERVAL_S, default 30 (each tick walks the whole sources root)."""
    raw = os.environ.get("RAGINDEX_SENSOR_INTERVAL_S", "30")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"RAGINDEX_SENSOR_INTERVAL_S must be a whole number of seconds >= 1, got {raw!r}")
    return int(raw)


def build_sensor(job) -> dg.SensorDefinition:
    @dg.sensor(job=job, minimum_interval_seconds=sensor_interval(), default_status=dg.DefaultSensorStatus.RUNNING,
               description="Watches the sources root: a new tenant folder adds the partition and a run; a changed one, a run.")
    def tenant_sources(context: dg.SensorEvaluationContext, sources: SourcesResource, store: TenantStoreResource):
        scan = scan_sources(sources.path())
        for entry, reason in scan.rejected:
            context.log.warning(f"sources: ignoring {entry}: {reason}")
        seen = json.loads(context.cursor) if context.cursor else None
        known = set(context.instance.get_dynamic_partitions(tenants.name))
        st = store.get()
        new = [t for t in scan.fingerprints if t not in known]
        # On the first tick, tenants already registered are a baseline, not a change.
        changed = [t for t in scan.fingerprints if t in known and seen is not None and seen.get(t) != scan.fingerprints[t]]
        for t in new:
            if not (st.exists(t) and st.settings(t).source):
                with TenantWriter(st, t, create=True) as w:
                    w.save_settings(replace(st.stored_settings(t), source=str((sources.path() / t).absolute())))
        requests = [dg.RunRequest(partition_key=t, run_key=f"{t}:{scan.fingerprints[t]}",
                                  tags={"ragindex/trigger": "new-tenant" if t in new else "sources-changed"})
                    for t in new + changed]
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[tenants.build_add_request(new)] if new else [],
            cursor=json.dumps(scan.fingerprints, sort_keys=True),
            skip_reason=None if requests else dg.SkipReason(
                f"no new or changed tenant folders under {sources.path()} ({len(scan.fingerprints)} watched, "
                f"{len(scan.rejected)} ignored)"),
        )

    return tenant_sources
