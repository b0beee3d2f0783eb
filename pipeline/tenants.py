"""Tenants: validated names, their private directories, and their settings.

Every path under ``$RAGINDEX_HOME/tenants/<tenant>/`` is derived here, after the
name has been validated, so no other module ever joins an untrusted string into
a path.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ragindex.fsutil import atomic_write_text
from ragindex.schemas.registry import DEFAULT_SCHEMA

TENANT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class TenantError(ValueError):
    """A tenant name or tenant state that cannot be used."""


def validate_tenant(name: str) -> str:
    """Return ``name`` if it is a safe tenant name, else raise TenantError.

    Only ``[a-z0-9][a-z0-9_-]{0,62}`` (ASCII) is accepted, so separators, ``..``,
    absolute paths, control characters and unicode look-alikes never reach the
    filesystem.
    """
    if not isinstance(name, str) or not TENANT_RE.fullmatch(name):
        shown = repr(name)[:80]
        raise TenantError(
            f"invalid tenant name {shown}: use 1-63 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit (e.g. acme or team-42)"
        )
    return name


def home() -> Path:
    """``$RAGINDEX_HOME``, default ``.ragindex`` in the working directory."""
    return Path(os.environ.get("RAGINDEX_HOME") or ".ragindex").absolute()


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
    mode: str | None = None  # default search mode: dense | bm25 | hybrid (None: the default configuration's)


@dataclass(frozen=True)
class TenantPaths:
    """The files of one tenant (see DESIGN: per-tenant physical partitioning)."""

    name: str
    root: Path

    @property
    def segments(self) -> Path:
        return self.root / "segments"

    @property
    def deletions(self) -> Path:
        return self.root / "deletions"

    @property
    def cache(self) -> Path:
        return self.root / "cache" / "embeddings.duckdb"

    @property
    def generations(self) -> Path:
        return self.root / "generations"

    def manifest(self, gen_id: str) -> Path:
        return self.generations / f"{gen_id}.json"

    @property
    def current(self) -> Path:
        return self.root / "CURRENT"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def settings_file(self) -> Path:
        return self.root / "tenant.json"


class TenantStore:
    """All tenants under one root (``$RAGINDEX_HOME`` by default)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else home()
        self.tenants_dir = self.root / "tenants"

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

    def settings(self, tenant: str) -> TenantSettings:
        f = self.paths(tenant).settings_file
        if not f.exists():
            return TenantSettings()
        try:
            return TenantSettings(**json.loads(f.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise TenantError(f"{f}: unreadable tenant settings ({exc}); fix or delete it and run `ragindex tenants add` again") from exc

    def save_settings(self, tenant: str, settings: TenantSettings) -> None:
        p = self.create(tenant)
        atomic_write_text(p.settings_file, json.dumps(asdict(settings), indent=2) + "\n")
