"""What a run may send to a paid model and what it needs that is already paid for.

* :func:`spend_for` - the run's :class:`~ragindex.indexing.embed.Spend`: a meter whose
  cap is the budget (``--budget-tokens``, and ``--max-cost`` at the model's price) on
  everything the run sends, retries of lost answers included;
* :func:`eval_queries` - the tenant's eval-set queries its quality gate embeds, which a
  paid model's plan includes (so they are budgeted, ledgered and cached);
* :func:`cache_gap` - vectors the live generation's segments hold but the cache lacks
  (a missing, empty or partial cache): a run that went on would pay for them again.
"""

from __future__ import annotations

import math
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from ragindex.embedders.metering import Meter
from ragindex.errors import BudgetExceeded, CacheError
from ragindex.evaluate import datasets
from ragindex.indexing.embed import Spend
from ragindex.indexing.plan import Budget, Plan
from ragindex.indexing.prices import model_price
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import Manifest
from ragindex.store.paths import TenantPaths
from ragindex.store.segments import segment_dir


def token_cap(budget: Budget, embedder) -> int | None:
    """The most tokens a run may send: ``--budget-tokens``, and ``--max-cost`` at the model's price if known."""
    caps = [budget.tokens] if budget.tokens is not None else []
    if budget.cost_usd is not None and getattr(embedder, "device", "") == "api":
        price = model_price(embedder).usd_per_mtok
        if price:
            caps.append(math.floor(budget.cost_usd / price * 1e6 + 1e-6))
    return min(caps) if caps else None


def spend_for(budget: Budget, embedder, plan: Callable[[], Plan], accept_from: int | None = None) -> Spend:
    """A run's spend: a meter capped by its budget (refusing with BudgetExceeded on the run's latest ``plan()``)."""
    meter = Meter(cap=token_cap(budget, embedder), refuse=lambda reason: BudgetExceeded(plan(), [reason]))
    return Spend(meter=meter, accept_from=accept_from)


def eval_queries(settings, mode: str, live: Manifest | None, embedder) -> list[str]:
    """The eval-set queries a paid model's quality gate embeds for a run (none for a local model: they cost
    nothing and go through the evaluation cache), when the candidate or the live generation is searched densely."""
    if getattr(embedder, "device", "") != "api" or settings is None or settings.eval_set is None:
        return []
    if mode == "bm25" and (live is None or live.search_mode == "bm25"):
        return []
    return list(datasets.load(settings.eval_set).queries)


def cache_gap(paths: TenantPaths, live: Manifest | None, cache: EmbeddingCache | None) -> CacheError | None:
    """The refusal to give when the cache lacks vectors the live generation's segments hold, else None.

    A missing cache, an empty one (an interrupted repair leaves a valid file with no rows)
    and a partial one are the same case: every vector is still in the segments, and
    ``verify --repair`` puts them back; planning or reindexing on would pay for them again.
    """
    if live is None or not live.segments or not live.chunks:
        return None
    hashes = set()
    for ref in live.segments:
        try:
            table = pq.read_table(segment_dir(paths, ref.id) / "rows.parquet", columns=["text_hash"])
        except (OSError, pa.ArrowException):
            continue  # a damaged segment: verify reports it (and the commit's checks refuse it)
        hashes.update(table.column("text_hash").to_pylist())
    have = cache.cached_hashes(live.embedder_fp, list(hashes)) if cache is not None else set()
    missing = len(hashes) - len(have)
    if not missing:
        return None
    what = ("is missing" if cache is None else "holds none of them" if not have
            else f"lacks {missing:,} of {len(hashes):,} of them")
    return CacheError(f"generation {live.generation} holds the vectors of {len(hashes):,} texts, but the embedding cache "
                      f"{paths.cache} {what}; run `ragindex verify --tenant {paths.name} --repair` to refill the cache "
                      "from the segments (re-embedding would pay for every one of them again)")
