"""What a run resolves before it starts (source, schema) and what it hands back (IndexingResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ragindex.indexing.checks import Gate
from ragindex.indexing.chunk import StagedChunks
from ragindex.indexing.plan import Plan
from ragindex.ingest.documents import Skipped
from ragindex.schemas import SchemaRegistry
from ragindex.schemas.chunker import SchemaFile
from ragindex.schemas.registry import DEFAULT_SCHEMA
from ragindex.store.maintenance import Maintenance
from ragindex.store.paths import TenantError
from ragindex.store.tenants import TenantStore


def resolve_schema(store: TenantStore, tenant: str, chunker: str | None) -> SchemaFile:
    """The schema a run uses: the explicit ref, else the tenant's pinned one, else the default."""
    settings = store.settings(tenant) if store.exists(tenant) else None
    return SchemaRegistry().runnable(chunker or (settings.chunker if settings else None) or DEFAULT_SCHEMA)


def resolve(store: TenantStore, tenant: str, source: str | Path | None, chunker: str | None) -> tuple[Path, SchemaFile]:
    """The source folder/file and schema a run uses: explicit arguments, else the tenant's settings."""
    settings = store.settings(tenant) if store.exists(tenant) else None
    src = source or (settings.source if settings else None)
    if not src:
        raise TenantError(f"no source for tenant {tenant!r}: pass --source PATH or run `ragindex tenants add {tenant} --source PATH`")
    return Path(src), resolve_schema(store, tenant, chunker)


@dataclass
class Embedded:
    """What the embeddings stage hands to the commit: the staged chunks, their plan, the ledger, the budget verdict."""

    staged: StagedChunks
    plan: Plan
    ledger: dict
    budget: Gate


@dataclass
class IndexingResult:
    """What one run did (LangChain's ``IndexingResult``, plus tokens, money and the generation)."""

    tenant: str
    status: str  # promoted | unchanged
    generation: str | None  # live after the run
    previous: str | None  # live before it
    plan: Plan
    ledger: dict
    changes: dict
    segment: str | None = None  # the segment this run wrote, if any
    maintenance: Maintenance | None = None
    bytes_written: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def run_id(self) -> str | None:
        return self.ledger.get("run_id")

    def to_dict(self) -> dict:
        return {
            "tenant": self.tenant, "status": self.status, "generation": self.generation, "previous": self.previous,
            "run_id": self.run_id, "segment": self.segment, "changes": self.changes, "plan": self.plan.report(),
            "ledger": self.plan.ledger_report(self.ledger), "bytes_written": self.bytes_written,
            "maintenance": self.maintenance.to_dict() if self.maintenance else None,
            "checks": {g.name: g.summary for g in self.gates}, "versions": self.versions,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "skipped": [{"where": s.where, "reason": s.reason} for s in self.skipped],
        }
