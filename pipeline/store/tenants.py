"""Tenants: the store of every tenant's directory, and each tenant's settings.

A tenant's *pin* (its chunker schema and search mode) is what its live generation
was made with: :meth:`TenantStore.settings` reads it from the live manifest, so
the pin changes in the same atomic step as the promotion (the CURRENT rename)
that needs it, and a crash can never leave them apart. ``tenant.json`` holds the
rest (source, model, eval set, retention) and the pin of a tenant that has no
generation yet; it is rewritten by :class:`ragindex.store.writer.TenantWriter` only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ragindex.fsutil import atomic_write_text
from ragindex.schemas.registry import DEFAULT_SCHEMA
from ragindex.store.locking import require_held
from ragindex.store.manifests import GenerationError, current_id, read_manifest
from ragindex.store.paths import TENANT_RE, TenantError, TenantPaths, home, validate_tenant

__all__ = ["TENANT_RE", "TenantError", "TenantPaths", "TenantSettings", "TenantStore", "home", "validate_tenant"]


@dataclass(frozen=True)
class TenantSettings:
    """What `ragindex tenants add` records: where the tenant's documents come from."""

    source: str | None = None
    chunker: str = DEFAULT_SCHEMA
    eval_set: str | None = None  # dataset (preset name or path) scored before each promotion
    keep_generations: int | None = None  # how many recent generations gc keeps (default 5)
    allow_deletions: bool = False  # let a run delete every live document, or more than half of them
    model: str | None = None  # embedding model (default, a directory, or openai:MODEL); None: the bundled default
    dimensions: int | None = None  # a hosted model's output dimensions
    mode: str | None = None  # default search mode: dense | bm25 | hybrid | hybrid-ctx (None: its schema's, searcher.tenant_mode)


class TenantStore:
    """All tenants under one root (``$RAGINDEX_HOME`` by default)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else home()
        self.tenants_dir = self.root / "tenants"
        self._pins: dict[str, tuple[tuple, tuple[str, str]]] = {}  # tenant -> (manifest key, live pin)

    def paths(self, tenant: str) -> TenantPaths:
        return TenantPaths(validate_tenant(tenant), self.tenants_dir / tenant)

    def create(self, tenant: str) -> TenantPaths:
        """Create the tenant's directories, readable by the owner only."""
        p = self.paths(tenant)
        for d in (self.root, self.tenants_dir):
            d.mkdir(parents=True, exist_ok=True)
        for d in (p.root, p.segments, p.deletions, p.cache.parent, p.generations):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)
        return p

    def exists(self, tenant: str) -> bool:
        return self.paths(tenant).root.is_dir()

    def require(self, tenant: str) -> TenantPaths:
        p = self.paths(tenant)
        if not p.root.is_dir():
            raise TenantError(f"no tenant {tenant!r} under {self.tenants_dir}; create it with `ragindex tenants add {tenant} --source PATH`")
        return p

    def names(self) -> list[str]:
        if not self.tenants_dir.is_dir():
            return []
        return sorted(d.name for d in self.tenants_dir.iterdir() if d.is_dir() and TENANT_RE.fullmatch(d.name))

    def stored_settings(self, tenant: str) -> TenantSettings:
        """``tenant.json`` as written (its pin may lag the live generation after a crash; see :meth:`settings`)."""
        f = self.paths(tenant).settings_file
        if not f.exists():
            return TenantSettings()
        try:
            return TenantSettings(**json.loads(f.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise TenantError(f"{f}: unreadable tenant settings ({exc}); fix or delete it and run `ragindex tenants add` again") from exc

    def settings(self, tenant: str) -> TenantSettings:
        """The tenant's settings, pinned to its live generation: the schema and search mode are the live
        manifest's. ``tenant.json`` pins a tenant that has no (readable) generation yet."""
        stored = self.stored_settings(tenant)
        paths = self.paths(tenant)
        if not paths.root.is_dir():
            return stored
        try:
            pin = self._live_pin(paths)
        except GenerationError:
            return stored  # verify --repair fixes CURRENT; until then the last recorded pin stands
        if pin is None:
            return stored
        return replace(stored, chunker=pin[0], mode=pin[1])

    def _live_pin(self, paths: TenantPaths) -> tuple[str, str] | None:
        """(schema, mode) of the live generation. A manifest never changes once written (a new generation
        has a new id), so it is read and checked once per (id, size, mtime) and not on every search."""
        gen = current_id(paths)
        if gen is None:
            return None
        try:
            st = paths.manifest(gen).stat()
            key = (gen, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            key = None  # read_manifest below says what is missing
        cached = self._pins.get(paths.name)
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        m = read_manifest(paths, gen)
        self._pins[paths.name] = (key, (m.chunker, m.search_mode))
        return m.chunker, m.search_mode

    def save_settings(self, tenant: str, settings: TenantSettings) -> None:
        """Write ``tenant.json``; the caller holds the tenant's writer lock (``TenantWriter.save_settings``)."""
        p = self.paths(tenant)
        require_held(p.lock, f"writing the settings of tenant {tenant!r}")
        atomic_write_text(p.settings_file, json.dumps(asdict(settings), indent=2) + "\n")
