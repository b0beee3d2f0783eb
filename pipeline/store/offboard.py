"""Removing a tenant: every file it has and its evaluation cache (the API also drops its Dagster partition).

The tenant's directory is first renamed to ``tenants/.removing-<tenant>-<ns>``
(atomic: from then on the tenant does not exist for any command), then deleted.
A crash between the two leaves that directory, and the next ``tenants remove``
of the same name finishes deleting it. Leftovers are matched by the exact name
(``.removing-<tenant>-<digits>``): tenant names may contain ``-``, so a prefix
glob for ``x`` would also take the leftovers of ``x-1``. The rename happens under the tenant's
writer lock, so a running reindex is waited for (``wait``) or refused.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from ragindex._faults import fault_point
from ragindex.store.paths import TenantError
from ragindex.store.tenants import TenantStore
from ragindex.store.writer import TenantWriter


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _leftovers(store: TenantStore, tenant: str) -> list[Path]:
    """The directories an interrupted removal of exactly ``tenant`` left (never those of ``tenant-1``)."""
    if not store.tenants_dir.is_dir():
        return []
    mine = re.compile(rf"\.removing-{re.escape(tenant)}-\d+")
    return sorted(d for d in store.tenants_dir.iterdir() if mine.fullmatch(d.name))


def remove_tenant(store: TenantStore, tenant: str, wait: float = 0.0) -> dict:
    """Delete every file of ``tenant``; finish an earlier removal that was interrupted. Returns what went."""
    paths = store.paths(tenant)  # validates the name before any path is built from it
    leftovers = _leftovers(store, tenant)
    if not paths.root.is_dir() and not leftovers:
        raise TenantError(f"no tenant {tenant!r} under {store.tenants_dir}; nothing to remove")
    out = {"tenant": tenant, "files_bytes": 0, "removed": []}
    if paths.root.is_dir():
        with TenantWriter(store, tenant, wait=wait):
            trash = store.tenants_dir / f".removing-{tenant}-{time.time_ns()}"
            os.replace(paths.root, trash)
        leftovers.append(trash)
        fault_point("tenant-removing")
    for d in leftovers:
        out["files_bytes"] += _size(d)
        shutil.rmtree(d)
        out["removed"].append(str(d.relative_to(store.root)))
    evals = store.root / "eval" / f"tenant-{tenant}"
    if evals.exists():
        out["files_bytes"] += _size(evals)
        shutil.rmtree(evals)
        out["removed"].append(str(evals.relative_to(store.root)))
    return out
