"""Tenant names and the paths of a tenant's files.

Every path under ``$RAGINDEX_HOME/tenants/<tenant>/`` is derived here, after the
name has been validated, so no other module ever joins an untrusted string into
a path.
"""


from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ragindex.errors import TenantError  # noqa: F401  (raised here; defined with the rest)

TENANT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


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


def models_dir() -> Path:
    """Where exported models and model identities live: ``$RAGINDEX_MODELS``, default ``$RAGINDEX_HOME/models``
    (shared by every tenant of the home; point several homes, or a container image, at one folder)."""
    return Path(os.environ.get("RAGINDEX_MODELS") or home() / "models").absolute()


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
    def conversions(self) -> Path:
        """Converted text of PDF, DOCX, PPTX and HTML files (store.conversions)."""
        return self.root / "cache" / "conversions"

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
