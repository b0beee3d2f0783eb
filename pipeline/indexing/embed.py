"""Stage 3, embeddings: exactly the plan's texts, into the tenant's cache, under one ledger run.

Vectors and the ledger's running totals are committed together every
``COMMIT_EVERY`` texts, so a crash loses at most the batch in flight and the
next run pays only for what was not committed. A run with nothing to embed
writes no ledger row.

A paid model's run sends everything through one :class:`Spend`: its meter (the
budget's cap on everything sent, retries included, and the record of lost answers)
and its drift probe, sent once, before any text, and recorded in the ledger row
of the step that sends it whatever its outcome (drift refused, wrong vector size).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from ragindex._faults import fault_point
from ragindex.embedders.metering import Meter
from ragindex.errors import BudgetExceeded, ModelDrift
from ragindex.indexing.commit import epoch_of
from ragindex.indexing.plan import Plan
from ragindex.indexing.prices import Prices
from ragindex.store.cache import EmbeddingCache

COMMIT_EVERY = 256  # texts per cache transaction: a crash loses at most this many


def new_run_id() -> str:
    return f"run-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}-{os.getpid()}"


def no_ledger(plan: Plan) -> dict:
    """What a run that embedded nothing reports in place of a ledger row (none is written)."""
    return {"run_id": None, "status": "nothing to embed", "texts": 0, "tokens": 0, "tokens_cl100k": 0, "seconds": 0.0,
            "cost_usd": 0.0, "cache_hits": plan.vectors_reused, "planned_texts": 0, "planned_tokens": 0,
            "planned_cost_usd": 0.0, "tokens_billed": 0, "tokens_possibly_billed": 0, "probe_tokens": 0}


@dataclass
class Spend:
    """What one run sends to a paid model: its meter, and its drift probe (sent at most once per run).

    ``accept_from``: with --accept-model-drift, the epoch the probe is compared in (the
    live one); the run's embedder is then in the next epoch, as its plan assumed.
    """

    meter: Meter = field(default_factory=Meter)
    accept_from: int | None = None
    probe: dict | None = None  # the probe's outcome, once sent


def embed_plan(cache: EmbeddingCache, embedder, plan: Plan, prices: Prices, progress: bool = False,
               commit_every: int = COMMIT_EVERY, spend: Spend | None = None) -> dict:
    """Embed the plan's texts into ``cache`` under a new ledger run and return its ledger row.

    The caller holds the tenant's lock. With nothing to embed, returns
    :func:`no_ledger` and writes nothing. A hosted model's drift probe runs first,
    unless ``spend`` says this run sent it already (ModelDrift refuses the run before
    any text is sent). With ``spend.accept_from``, a probe that finds no drift ends the
    row there: the ledger says ``"replan": True`` (the plan assumed a new epoch).
    """
    if not plan.to_embed:
        return no_ledger(plan)
    run_id = new_run_id()
    cache.start_run(run_id, plan.tenant, plan.chunker, embedder.fingerprint, embedder.device, plan)
    hosted = hasattr(embedder, "requests")
    spend = spend or Spend()
    try:
        if hosted:
            spend.meter.on_lost = lambda tokens, request_id: cache.add_lost(run_id, tokens, request_id)
            if spend.probe is None:
                _probe(cache, embedder, run_id, prices, spend)
                if spend.probe["epoch"] != epoch_of(embedder):  # accepted, but nothing moved: plan in the live epoch
                    return {**cache.finish_run(run_id), "probe": spend.probe, "replan": True}
            embed_requests(cache, embedder, plan, run_id, prices, progress=progress, meter=spend.meter)
        else:
            embed_missing(cache, embedder, plan, run_id, prices, progress=progress, commit_every=commit_every)
    except BaseException as exc:
        with contextlib.suppress(Exception):  # keep the original error
            cache.finish_run(run_id, "refused" if isinstance(exc, ModelDrift) else
                             "over budget" if isinstance(exc, BudgetExceeded) else "interrupted")
        raise
    ledger = cache.finish_run(run_id)
    if hosted:
        ledger["probe"] = spend.probe
    ledger["billed_vs_planned"] = _billed_vs_planned(ledger)
    return ledger


def _probe(cache: EmbeddingCache, embedder, run_id: str, prices: Prices, spend: Spend) -> None:
    """Send the run's drift probe, recording what it billed (or may have) in ``run_id``'s row whatever happens."""
    meter = spend.meter
    billed, answers = meter.billed, meter.answers
    probing = embedder.with_epoch(spend.accept_from) if spend.accept_from is not None else embedder
    try:
        spend.probe = probing.check_probe(cache, accept_drift=spend.accept_from is not None, meter=meter)
    finally:
        billed, answers = meter.billed - billed, meter.answers - answers
        cache.add_probe_cost(run_id, billed, embedder.probe_tokens if answers else 0, answers,
                             prices.run_usd(embedder, billed, 0.0))


def _billed_vs_planned(ledger: dict) -> dict | None:
    """For an API: the tokens it billed next to the tokens planned (texts, queries, probe), and whether they differ."""
    if not ledger.get("requests"):
        return None
    planned = int(ledger["tokens"]) + int(ledger.get("probe_tokens") or 0)
    billed = int(ledger.get("tokens_billed") or 0)
    return {"planned": planned, "billed": billed, "difference": billed - planned, "differs": billed != planned}


def embed_requests(cache: EmbeddingCache, embedder, plan: Plan, run_id: str, prices: Prices, progress: bool = False,
                   meter: Meter | None = None) -> None:
    """A hosted API: commit each request's vectors and billed tokens as it completes, before taking the next.

    If anything stops the run (a fatal API error, Ctrl-C, an error here), the
    requests already in flight are waited for and committed too: what the API
    billed is never lost, and the next run sends none of it again.
    """
    items = [(h, t, plan.to_embed_tokens[h][0]) for h, t in plan.to_embed.items()]
    pool = embedder.requests(items, meter)
    bar = tqdm(total=len(items), desc=f"embed {plan.tenant}", unit="text", disable=not progress, file=sys.stderr)

    def save(res) -> None:
        cl100k = sum(plan.to_embed_tokens[h][1] for h in res.hashes)
        cache.commit_batch(run_id, embedder.fingerprint, res.hashes, res.vectors, res.tokens, cl100k, res.seconds,
                           prices.run_usd(embedder, res.billed_tokens, res.seconds), billed_tokens=res.billed_tokens)
        bar.update(len(res.hashes))

    current = None  # the result being saved when something stopped the run (Ctrl-C can land mid-commit)
    try:
        for res in pool:
            current = res
            save(res)
            current = None
            fault_point("mid-embedding")
    except BaseException:
        leftovers = pool.drain()
        if current is not None and len(cache.cached_hashes(embedder.fingerprint, current.hashes)) < len(current.hashes):
            leftovers.insert(0, current)  # its transaction was rolled back: save it again
        for res in leftovers:
            with contextlib.suppress(Exception):  # keep the original error; save what can be saved
                save(res)
        raise
    finally:
        bar.close()


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
