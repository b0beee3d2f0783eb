"""Every error a user can cause or fix, and the exit code the CLI gives it.

Each module raises the types defined here (and re-exports the ones it is known
for, so ``from ragindex.store.locking import TenantBusy`` keeps working). Anything
else that escapes a command is a bug: the CLI reports it as one line naming its
type and shows the traceback with ``--debug``.

Exit codes: 0 ok, 1 error, 2 usage, 3 over budget (nothing changed), 4 tenant busy
(another writer holds its lock), 5 a check failed, 6 verify --repair found damage
and repaired it, 7 a run would delete more documents than allowed (nothing changed).
"""

from __future__ import annotations

from ragindex.schemas.chunker import SchemaError
from ragindex.schemas.location import ProjectError

EXIT_ERROR, EXIT_BUDGET, EXIT_BUSY, EXIT_CHECK, EXIT_REPAIRED, EXIT_DELETIONS = 1, 3, 4, 5, 6, 7


# -- tenants and their files ----------------------------------------------------------


class TenantError(ValueError):
    """A tenant name or tenant state that cannot be used."""


class TenantBusy(RuntimeError):
    """Another process is writing this tenant."""


class LockNotHeld(RuntimeError):
    """A write to a tenant without its writer lock: a bug in the caller (use ``TenantWriter``)."""


class GenerationError(RuntimeError):
    """A generation is missing, incomplete or does not match its manifest."""


class SegmentError(RuntimeError):
    """A segment or deletion file is missing, unreadable, or does not match its checksums."""


class ForeignSegment(SegmentError):
    """A segment that is not the one this tenant's generation recorded (e.g. copied in from another tenant).

    It is refused everywhere: never served, never merged, never used to repair or refill anything.
    """


class CacheError(RuntimeError):
    """The cache database is missing, locked or corrupt."""


class CacheBusy(CacheError):
    """Another process (a running reindex) holds the cache open for writing; retry when it has finished.

    DuckDB lets one process open a file for writing and then no other process
    may open it, even to read. Nothing is wrong with the file: readers say
    "busy, retry" (exit 4), never that the cache should be moved or rebuilt.
    """


# -- a run ----------------------------------------------------------------------------


class SettingsError(ValueError):
    """A setting (a ``RAGINDEX_*`` variable or the tenant's settings) outside its allowed range; nothing was written."""


class ChangeError(ValueError):
    """The change set cannot be computed as asked (the message says what to do)."""


class SourceError(ChangeError):
    """A source ragindex cannot read as a whole: of a kind it does not read (a .csv), or no longer what the
    live generation was built from (a folder now a file). Raised by ``ingest.sources.source_kind`` (the one
    check of a source, for ``tenants add`` and every run) and ``ingest.changes``; exit 1, kind "source"."""


class SourceMissing(SourceError, FileNotFoundError):
    """The source does not exist (a FileNotFoundError too, as callers caught before)."""


class MassDeletion(RuntimeError):
    """The run would delete more of the tenant's documents than allowed; nothing was changed."""


class BudgetExceeded(RuntimeError):
    """The plan is over --budget-tokens or --max-cost; nothing was changed."""

    def __init__(self, plan, reasons: list[str]) -> None:
        self.plan = plan  # ragindex.indexing.plan.Plan
        self.reasons = reasons
        super().__init__("; ".join(reasons))


class ChecksFailed(RuntimeError):
    """A gate failed on a candidate generation; it was written but not promoted (the live one is unchanged)."""

    def __init__(self, generation: str, gates: list) -> None:
        self.generation = generation
        self.gates = gates  # ragindex.indexing.checks.Gate
        failed = "; ".join(f"{g.name}: {g.summary}" for g in gates if not g.passed)
        super().__init__(f"candidate generation {generation} not promoted: {failed}")


class PriceTableError(ValueError):
    """The price table cannot be read or has the wrong shape."""


# -- embedders ----------------------------------------------------------------------------


class MissingExtra(ImportError):
    """A feature whose optional dependencies are not installed (the message names the extra)."""


class HostedError(RuntimeError):
    """The embedding API refused the work for a reason retrying cannot fix (the message says what to do)."""


class InputTooLong(HostedError):
    """A text is over the model's input limit; it is refused, not truncated."""


class QuotaExceeded(HostedError):
    """The account's quota is exhausted; what was billed before is saved."""


class ModelDrift(HostedError):
    """The provider's model behind this name now gives different vectors than the ones stored."""


class ModelDriftError(ModelDrift):
    """A search refused because the provider changed the model behind the tenant's model name.

    Raised on the query path (CLI and API search, ``ragindex serve``) until the tenant is re-embedded
    (``reindex --accept-model-drift``): the service is unavailable for that tenant, not the request wrong.
    """


class DimensionMismatch(HostedError):
    """The API answered vectors of another size than the model's known size or ``--dimensions``."""


# -- search, evaluation, the project ------------------------------------------------------


class ArgumentError(ValueError):
    """An argument that cannot be used: not a number, NaN, out of range, an empty or undecodable query, an unknown mode.

    Raised by ``ragindex.arguments``, the one check of each kind of argument for every
    way in (CLI, Python API, HTTP, Dagster config), before anything is read or written.
    """


class FilterError(ValueError):
    """A filter that is not valid JSON or does not follow the grammar (the message says where)."""


class ServeError(RuntimeError):
    """``ragindex serve`` cannot listen where it was told (a port in use, an address this machine does not have)."""


class DatasetError(ValueError):
    """A dataset that is missing or cannot be read."""


# What the CLI does with each: (exit code, the "kind" of its --json error object). Checked in
# order, so a subclass (CacheBusy) comes before its base (CacheError).
EXIT_CODES: list[tuple[type[BaseException], int, str]] = [
    (TenantBusy, EXIT_BUSY, "tenant busy"), (CacheBusy, EXIT_BUSY, "tenant busy"),
    (MassDeletion, EXIT_DELETIONS, "mass deletion refused"), (BudgetExceeded, EXIT_BUDGET, "over budget"),
    (ChecksFailed, EXIT_CHECK, "checks failed"),
    (TenantError, EXIT_ERROR, "tenant"), (SchemaError, EXIT_ERROR, "schema"), (GenerationError, EXIT_ERROR, "generation"),
    (SegmentError, EXIT_ERROR, "segment"), (CacheError, EXIT_ERROR, "cache"), (ChangeError, EXIT_ERROR, "source"),
    (SettingsError, EXIT_ERROR, "settings"),
    (PriceTableError, EXIT_ERROR, "prices"), (DatasetError, EXIT_ERROR, "dataset"), (HostedError, EXIT_ERROR, "embedding api"),
    (MissingExtra, EXIT_ERROR, "missing extra"), (FilterError, EXIT_ERROR, "filter"), (ProjectError, EXIT_ERROR, "project"),
    (ServeError, EXIT_ERROR, "serve"),
    (FileNotFoundError, EXIT_ERROR, "not found"), (ArgumentError, EXIT_ERROR, "argument"),
]
