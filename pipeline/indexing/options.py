"""RunOptions: everything a caller can say about one indexing run, in one frozen value.

The CLI's flags, the Python API's keyword arguments, a migration and the Dagster
assets' config all become a ``RunOptions``; :class:`ragindex.indexing.run.TenantRun`
is the one thing that reads it. ``None`` means "the tenant's setting": its source,
its pinned schema (that of its live generation), its search mode, its deletion
policy.

A ``RunOptions`` is checked when it is made (and so is every copy: ``but`` and
``dataclasses.replace`` make a new one): ``wait`` and ``quality_tolerance`` are
finite numbers >= 0, ``mode`` one of the search modes, ``budget`` a
:class:`~ragindex.indexing.plan.Budget` (itself checked). A bad value raises
ArgumentError before the run reads anything, whichever way it came in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ragindex.arguments import choice, number, seconds
from ragindex.errors import ArgumentError
from ragindex.indexing.plan import Budget
from ragindex.indexing.prices import Prices
from ragindex.search.hybrid import MODES


@dataclass(frozen=True)
class RunOptions:
    source: str | Path | None = None  # folder, .jsonl or .parquet (None: the tenant's source)
    chunker: str | None = None  # schema NAME@VERSION (None: the tenant's pin, else the default)
    prices: Prices | None = None  # price table (None: the built-in one or $RAGINDEX_PRICES)
    budget: Budget = Budget()  # --budget-tokens / --max-cost, checked before anything is written
    rescan: bool = False  # read every file, whatever its stat says
    rebuild: bool = False  # chunk everything again into one new segment (vectors still come from the cache)
    allow_deletions: bool | None = None  # None: the tenant's setting (refuse deleting all, or over half)
    accept_model_drift: bool = False  # a hosted model changed behind its name: move to a new key space
    mode: str | None = None  # search mode the quality gate scores and the generation records (None: the tenant's)
    accept_regression: str | None = None  # promote although the eval set scored worse; the reason is recorded
    quality_tolerance: float = 0.0  # allowed drop of any eval metric against the live generation
    wait: float = 0.0  # seconds to queue behind another writer of the tenant (0: fail at once, TenantBusy)
    progress: bool = False  # progress bars on stderr

    def __post_init__(self) -> None:
        seconds(self.wait)
        number(self.quality_tolerance, "quality_tolerance")
        choice(self.mode, MODES, "mode")
        if not isinstance(self.budget, Budget):
            raise ArgumentError(f"budget={self.budget!r} is not a Budget(tokens, cost_usd)")

    def but(self, **changes) -> "RunOptions":
        """A copy with ``changes`` (e.g. ``options.but(chunker="recursive-200@1", rebuild=True)``)."""
        return replace(self, **changes)
