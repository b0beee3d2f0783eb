"""Stage 3, embeddings: exactly the plan's texts, into the tenant's cache, under one ledger run.

Vectors and the ledger's running totals are committed together every
``COMMIT_EVERY`` texts, so a crash loses at most the batch in flight and the
next run pays only for what was not committed. A run with nothing to embed
writes no ledger row.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time

from tqdm import tqdm

from pipeline.cache import EmbeddingCache
from pipeline.cost import Plan, Prices
from pipeline.faults import fault_point

COMMIT_EVERY = 256  # texts per cache transaction: a crash loses at most this many


def new_run_id() -> str:
    return f"run-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}-{os.getpid()}"


def no_ledger(plan: Plan) -> dict:
    """What a run that embedded nothing reports in place of a ledger row (none is written)."""
    return {"run_id": None, "status": "nothing to embed", "texts": 0, "tokens": 0, "tokens_cl100k": 0, "seconds": 0.0,
            "cost_usd": 0.0, "cache_hits": plan.vectors_reused, "planned_texts": 0, "planned_tokens": 0,
            "planned_cost_usd": 0.0}


def embed_plan(cache: EmbeddingCache, embedder, plan: Plan, prices: Prices, progress: bool = False,
               commit_every: int = COMMIT_EVERY) -> dict:
    """Embed the plan's texts into ``cache`` under a new ledger run and return its ledger row.

    The caller holds the tenant's lock. With nothing to embed, returns
    :func:`no_ledger` and writes nothing.
    """
    if not plan.texts_to_embed:
        return no_ledger(plan)
    run_id = new_run_id()
    cache.start_run(run_id, plan.tenant, plan.chunker, embedder.fingerprint, embedder.device, plan)
    embed_missing(cache, embedder, plan, run_id, prices, progress=progress, commit_every=commit_every)
    return cache.finish_run(run_id)


def embed_missing(cache: EmbeddingCache, embedder, plan: Plan, run_id: str, prices: Prices, progress: bool = False,
                  commit_every: int = COMMIT_EVERY) -> None:
    """Embed exactly the plan's texts, committing vectors and ledger totals every ``commit_every`` texts."""
    items = list(plan.to_embed.items())  # longest first
    bar = tqdm(total=len(items), desc=f"embed {plan.tenant}", unit="text", disable=not progress, file=sys.stderr)
    tokens_done = 0
    t_start = time.perf_counter()

    def on_batch(n_texts: int, n_tokens: int) -> None:
        nonlocal tokens_done
        tokens_done += n_tokens
        elapsed = max(time.perf_counter() - t_start, 1e-9)
        bar.update(n_texts)
        bar.set_postfix_str(f"{bar.n / elapsed:,.0f} texts/s, {tokens_done / elapsed:,.0f} tok/s")

    try:
        for i in range(0, len(items), commit_every):
            group = items[i : i + commit_every]
            hashes = [h for h, _ in group]
            texts = [t for _, t in group]
            tokens = [plan.to_embed_tokens[h][0] for h in hashes]
            t0 = time.perf_counter()
            vectors = embedder.embed(texts, on_batch=on_batch, lengths=tokens)
            seconds = time.perf_counter() - t0
            cache.commit_batch(run_id, embedder.fingerprint, hashes, vectors, tokens,
                               sum(plan.to_embed_tokens[h][1] for h in hashes), seconds,
                               prices.seconds_usd(seconds, embedder.device))
            fault_point("mid-embedding")
    finally:
        bar.close()
