"""One entry point for indexing a tenant: :func:`reindex`, and the stages it runs, in order.

    detect (documents) -> chunk (chunks) -> embed (embeddings) -> commit (tenant_index)

:class:`TenantRun` holds a run's configuration and exposes each stage; the CLI
and the tests call :func:`reindex` (all stages, one lock), and each Dagster asset
calls the stage it stands for, so both run the same code with the same budget
timing. Detect and chunk only read. The tenant's writer (``store.writer``) is
opened at the first write and held to the end of the run, or held by the caller
for longer (a Dagster run, across its steps); the budget is checked under it
before anything is written. A stage that finds the live generation moved since
detection (another writer came in between) detects again under the lock, so
nothing is paid twice and no newer generation is overwritten with an older view.

A run that finds no change writes nothing and reports ``status: unchanged``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

from ragindex.embedders.onnx import VARIANTS as ONNX_VARIANTS
from ragindex.fsutil import sha256_text
from ragindex.indexing.checks import ChecksFailed, Gate, MassDeletion, budget_gate, deletion_gate
from ragindex.indexing.chunk import StagedChunks, chunk_changes, piece_stage
from ragindex.indexing.commit import CommitResult, commit, content_versions, epoch_of
from ragindex.indexing.embed import Spend, embed_plan, no_ledger
from ragindex.indexing.options import RunOptions
from ragindex.indexing.plan import Budget, BudgetExceeded, Plan, Throughput, make_plan
from ragindex.indexing.prices import Prices
from ragindex.indexing.result import Embedded, IndexingResult, resolve, resolve_schema  # noqa: F401  (part of this API)
from ragindex.indexing.spending import cache_gap, eval_queries, spend_for
from ragindex.ingest.changes import detect_changes
from ragindex.ingest.changeset import ChangeSet, RunConfig
from ragindex.search.generation import SegmentCache
from ragindex.search.searcher import tenant_mode
from ragindex.store import conversions
from ragindex.store.cache import EmbeddingCache
from ragindex.store.manifests import GenerationError, LiveState, current_id, live_manifest, load_live_state, read_manifest
from ragindex.store.tenants import TenantSettings, TenantStore
from ragindex.store.writer import TenantWriter, probe_writer

__all__ = ["Budget", "BudgetExceeded", "ChecksFailed", "Embedded", "Gate", "IndexingResult", "MassDeletion", "TenantRun",
           "reindex", "resolve", "resolve_schema"]


class TenantRun:
    """One indexing run of one tenant. Use as a context manager; it releases the lock and cache on exit."""

    def __init__(self, store: TenantStore, tenant: str, *, embedder, options: RunOptions | None = None,
                 writer: TenantWriter | None = None, **overrides) -> None:
        """``options`` (a :class:`RunOptions`), with any of its fields overridden by keyword.

        ``writer``: the tenant's writer, already held by the caller for longer than this
        object (a Dagster run holds it across its steps); by default the run opens its
        own at its first write and holds it to the end.
        """
        self.options = o = replace(options or RunOptions(), **overrides)
        self.store, self.tenant = store, tenant
        self.paths = store.paths(tenant)
        self.embedder = self._in_key_space(embedder)
        # --accept-model-drift: planned (and budgeted) as what it costs when the probe finds a drift, a new key
        # space in which every text is embedded again; the probe is compared in the live epoch, once.
        self._accept_from = epoch_of(self.embedder) if o.accept_model_drift and self._hosted_live() else None
        if self._accept_from is not None:
            self.embedder = self.embedder.with_epoch(self._accept_from + 1)
        self._spend: Spend | None = None
        self._plan_now: Plan | None = None  # the latest plan, which a refusal mid-run reports
        embedder = self.embedder
        src, self.schema = resolve(store, tenant, o.source, o.chunker)
        self.config = RunConfig(tenant, str(Path(src).absolute()), self.schema.ref, self.schema.chunk_fingerprint(embedder.fingerprint), embedder.name,
                                embedder.fingerprint, self.schema.spec.tokenizer, epoch_of(embedder))
        self.prices = o.prices or Prices.load()
        settings = store.settings(tenant) if store.exists(tenant) else None
        self.allow_deletions = o.allow_deletions if o.allow_deletions is not None else bool(settings and settings.allow_deletions)
        # The mode the quality gate scores: the run's, else the tenant's, else (a new tenant) its schema's default.
        self.mode = o.mode or tenant_mode(settings if settings else TenantSettings(chunker=self.schema.ref))
        self.seconds: dict[str, float] = {}
        self._stack = contextlib.ExitStack()
        self._cache: EmbeddingCache | None = None
        self._writer: TenantWriter | None = None  # held from the first write to the end of the run
        self._held = writer  # a writer the caller holds (and releases)
        if writer is not None and writer.tenant != tenant:
            raise ValueError(f"the writer of tenant {writer.tenant!r} cannot write tenant {tenant!r}")
        self._pieces: tuple[Plan, dict] | None = None  # a clustering chunker's pieces this run embedded: (plan, ledger)

    def __enter__(self) -> "TenantRun":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self._cache = None

    # -- the stages ------------------------------------------------------------

    def live(self) -> LiveState:
        return load_live_state(self.paths, live_manifest(self.paths)) if self.paths.root.is_dir() else LiveState(None)

    def detect(self) -> ChangeSet:
        """Stage documents: the change set of the source against the live generation. Reads only."""
        t0 = time.perf_counter()
        cs = detect_changes(self.config, self.live(), rescan=self.options.rescan, rebuild=self.options.rebuild,
                            progress=self.options.progress, cached=lambda sha, fp: conversions.get(self.paths, sha, fp))
        cs.allow_deletions = self.allow_deletions
        self.seconds["detect"] = time.perf_counter() - t0
        return cs

    def chunk(self, changes: ChangeSet) -> StagedChunks:
        """Stage chunks: the new and changed documents chunked (or their chunks copied). Reads only.

        A schema that cuts on embeddings (``cluster``) needs its pieces' vectors. If
        the cache holds them all, the chunks are exact; if not, the staged rows are
        the bound (each piece its own chunk) and the embed stage embeds the pieces
        first, under the lock and the budget, then chunks again.
        """
        t0 = time.perf_counter()
        if not self.schema.needs_embeddings:
            staged = chunk_changes(self.paths, changes, self.schema, progress=self.options.progress)
        else:
            pieces = piece_stage(changes, self.schema)
            hashes = list(dict.fromkeys(pieces.rows.column("text_hash").to_pylist()))
            with self._reading_cache() as cache:
                have = self._cached(cache, hashes) if cache is not None and hashes else set()
                if len(have) < len(hashes):
                    staged = chunk_changes(self.paths, changes, self.schema, progress=self.options.progress, bound=True)
                else:
                    table = dict(zip(hashes, cache.vectors(self.embedder.fingerprint, hashes, self.embedder.dim))) if hashes else {}
                    staged = chunk_changes(self.paths, changes, self.schema, progress=self.options.progress,
                                           vectors=lambda ts: [table[sha256_text(t)] for t in ts])
            staged.pieces = pieces
        self.seconds["chunk"] = self.seconds.get("chunk", 0.0) + time.perf_counter() - t0
        return staged

    def plan(self, staged: StagedChunks) -> Plan:
        """The exact plan of ``staged`` against the tenant's cache (read-only unless the run holds the lock)."""
        t0 = time.perf_counter()
        queries = [] if staged.changes.is_noop else eval_queries(self._settings(), self.mode, self._live_manifest(), self.embedder)
        hashes = list(dict.fromkeys(staged.rows.column("text_hash").to_pylist() + [sha256_text(q) for q in queries]))
        with contextlib.ExitStack() as stack:
            cache = stack.enter_context(self._reading_cache()) if hashes else None  # nothing to look up: not opened
            gap = cache_gap(self.paths, self._live_manifest(), cache) if hashes and self._cache is None else None
            if gap is not None:  # (under the lock, _lock checked it)
                raise gap
            cached = self._cached(cache, hashes) if cache is not None else set()
        plan = make_plan(staged, cached, self.embedder, self.prices, self._throughput(), queries=queries)
        if staged.pieces is not None:
            pieces = self._pieces[0] if self._pieces is not None else self._piece_plan(staged)
            plan = plan.with_chunker_embeddings(pieces, exact=not staged.bound)
        self.seconds["plan"] = self.seconds.get("plan", 0.0) + time.perf_counter() - t0
        return plan

    def stage(self) -> tuple[StagedChunks, Plan]:
        """detect -> chunk -> plan: what `ragindex plan` shows. Writes nothing."""
        staged = self.chunk(self.detect())
        return staged, self.plan(staged)

    def embed(self, staged: StagedChunks, wait: float = 0.0) -> Embedded:
        """Stage embeddings: check the budget, then (holding the lock) embed exactly the plan's texts.

        With nothing changed, nothing is opened or written. A tenant that does not
        exist yet is planned before its directory is created, so over budget it
        leaves nothing behind; otherwise the lock is taken and the cache opened
        (once, read-write, writing nothing until the budget passes), the change set
        re-derived if another writer promoted meanwhile, and the plan made under
        the lock. The verdict travels in ``Embedded.budget``.
        """
        self.allow_deletions = self.allow_deletions or staged.changes.allow_deletions  # said at the documents stage
        self._adopt(staged)
        guard = deletion_gate(staged.changes, self.allow_deletions)
        if not guard.passed:
            raise MassDeletion(guard.summary)
        if self._cache is None:
            if staged.changes.is_noop and current_id(self.paths) == staged.changes.base:
                plan = self.plan(staged)
                return Embedded(staged, plan, no_ledger(plan), budget_gate(plan, self.options.budget))
            if not self.paths.root.is_dir():
                plan = self.plan(staged)
                gate = budget_gate(plan, self.options.budget)
                if not gate.passed:
                    return Embedded(staged, plan, no_ledger(plan), gate)
            self._lock(wait)
        staged = self._fresh(staged)
        if staged.bound:
            # A clustering chunker: budget the bound, embed the pieces, chunk for real, budget again.
            plan = self.plan(staged)
            gate = budget_gate(plan, self.options.budget)
            if not gate.passed:
                return Embedded(staged, plan, no_ledger(plan), gate)
            staged = self._embed_pieces(staged)
        plan = self.plan(staged)
        gate = budget_gate(plan, self.options.budget)
        if not gate.passed:  # refused for budget reasons: nothing was sent, not even the probe
            return Embedded(staged, plan, self._with_pieces(no_ledger(plan)), gate)
        ledger = self._embed_plan(plan)
        if ledger.get("replan"):  # --accept-model-drift, and the probe found no drift: the live epoch's plan
            return self.embed(staged)
        return Embedded(staged, plan, self._with_pieces(ledger), gate)

    def commit(self, embedded: Embedded, wait: float = 0.0) -> IndexingResult:
        """Stage tenant_index: a new segment and generation from cached vectors, checked, promoted; then
        merges and gc as their own atomic steps. Raises BudgetExceeded or ChecksFailed."""
        if not embedded.budget.passed:
            raise BudgetExceeded(embedded.plan, [embedded.budget.summary])
        self._adopt(embedded.staged)
        cs = embedded.staged.changes
        if self._cache is None and cs.is_noop and current_id(self.paths) == cs.base:
            return self._unchanged(embedded)
        self._lock(wait)
        if self._stale(embedded.staged):
            # Another writer promoted after this run detected its changes: do it again on top of theirs.
            paid = embedded.ledger
            embedded = self.embed(embedded.staged)
            if not embedded.budget.passed:
                raise BudgetExceeded(embedded.plan, [embedded.budget.summary])
            if paid.get("run_id") and not embedded.ledger.get("run_id"):
                embedded = replace(embedded, ledger=paid)  # what this run paid for in its embeddings step
            cs = embedded.staged.changes
        if cs.is_noop:
            return self._unchanged(embedded)
        t0 = time.perf_counter()
        done: CommitResult = commit(self.store, embedded.staged, embedded.plan, embedded.ledger, self._cache, self.embedder,
                                    quality_tolerance=self.options.quality_tolerance, segments=SegmentCache(), search_mode=self.mode,
                                    accept_regression=self.options.accept_regression)
        self.seconds["commit"] = time.perf_counter() - t0
        self._remember_model(cs.base)
        t0 = time.perf_counter()
        upkeep = self._writer.maintain()
        self.seconds["maintenance"] = time.perf_counter() - t0
        return IndexingResult(self.tenant, "promoted", current_id(self.paths), cs.base, embedded.plan, embedded.ledger,
                              cs.counts(), done.segment.segment if done.segment else None, upkeep,
                              done.bytes_written + upkeep.bytes_written, cs.skipped, [embedded.budget, *done.gates],
                              content_versions(cs.docs_digest, cs.config.chunker_fp, self.embedder.fingerprint), dict(self.seconds))

    def run(self, wait: float | None = None) -> IndexingResult:
        """All stages, in order; the lock is taken at the first write and held to the end.

        Fails at once (TenantBusy) if another writer holds the lock and ``wait`` (default:
        the options' ``wait``) is 0.
        """
        wait = self.options.wait if wait is None else wait
        with self:
            if self._held is None:
                probe_writer(self.store, self.tenant, wait)
            return self.commit(self.embed(self.chunk(self.detect()), wait), wait)

    def missing_vectors(self, staged: StagedChunks) -> int:
        """Texts of ``staged`` that still have no vector in the cache (0 after a successful embed stage)."""
        hashes = list(dict.fromkeys(staged.rows.column("text_hash").to_pylist()))
        with self._reading_cache() as cache:
            return len(hashes) - (len(self._cached(cache, hashes)) if cache is not None and hashes else 0)

    # -- helpers ------------------------------------------------------------

    @contextlib.contextmanager
    def _reading_cache(self):
        """The run's open cache, or the tenant's cache opened read-only, or None if there is none."""
        if self._cache is not None:
            yield self._cache
        elif self.paths.cache.exists():
            with EmbeddingCache(self.paths.cache, read_only=True) as cache:
                yield cache
        else:
            yield None

    def _piece_plan(self, staged: StagedChunks) -> Plan:
        """The exact plan of the pieces a clustering chunker embeds for ``staged``."""
        hashes = list(dict.fromkeys(staged.pieces.rows.column("text_hash").to_pylist()))
        with self._reading_cache() as cache:
            cached = self._cached(cache, hashes) if cache is not None and hashes else set()
        plan = make_plan(staged.pieces, cached, self.embedder, self.prices, self._throughput(), probe=False)
        return replace(plan, chunker=f"{plan.chunker} pieces")

    def _embed_pieces(self, staged: StagedChunks) -> StagedChunks:
        """Under the lock: embed a clustering chunker's missing pieces (own ledger row), then chunk exactly."""
        pieces = self._piece_plan(staged)
        ledger = self._embed_plan(pieces)
        if ledger.get("replan"):
            return self._fresh(staged)
        self._pieces = (pieces, ledger)
        return self.chunk(staged.changes)

    def _embed_plan(self, plan: Plan) -> dict:
        """Embed ``plan`` under the run's one :class:`Spend` (its budget's cap, its probe sent once)."""
        t0 = time.perf_counter()
        self._plan_now = plan
        if self._spend is None:
            self._spend = spend_for(self.options.budget, self.embedder, lambda: self._plan_now, self._accept_from)
        ledger = embed_plan(self._cache, self.embedder, plan, self.prices, progress=self.options.progress, spend=self._spend)
        if ledger.get("replan"):
            self._use_epoch(self._accept_from)
        elif ledger.get("run_id"):
            self._throughput().record(self.embedder, ledger["tokens"], ledger["seconds"])
        self.seconds["embed"] = self.seconds.get("embed", 0.0) + time.perf_counter() - t0
        return ledger

    def _with_pieces(self, ledger: dict) -> dict:
        """A run's ledger, with the ledger row of the pieces a clustering chunker embedded first, if any."""
        if self._pieces is None or not self._pieces[1].get("run_id"):
            return ledger
        return {**ledger, "chunker_embeddings": self._pieces[1]}

    def _in_key_space(self, embedder):
        """A hosted model at the epoch of the tenant's live generation (a local model is itself)."""
        with_epoch = getattr(embedder, "with_epoch", None)
        if with_epoch is None or not self.paths.root.is_dir():
            return embedder
        try:
            live = live_manifest(self.paths)
        except GenerationError:
            return embedder
        same_model = live is not None and live.embedder == embedder.name
        return with_epoch(live.embedder_epoch) if same_model else embedder

    def _hosted_live(self) -> bool:
        """A hosted model that made the live generation (what --accept-model-drift applies to)."""
        live = self._live_manifest()
        return hasattr(self.embedder, "check_probe") and live is not None and live.embedder == self.embedder.name

    def _live_manifest(self):
        return live_manifest(self.paths) if self.paths.root.is_dir() else None

    def _settings(self) -> TenantSettings | None:
        return self.store.settings(self.tenant) if self.store.exists(self.tenant) else None

    def _cached(self, cache: EmbeddingCache, hashes: list[str]) -> set[str]:
        """Which of ``hashes`` the cache holds for the run's model, at the size its answers have (if known)."""
        return cache.cached_hashes(self.embedder.fingerprint, hashes, getattr(self.embedder, "expected_dim", None))

    def _use_epoch(self, epoch: int) -> None:
        if epoch != epoch_of(self.embedder):
            self.embedder = self.embedder.with_epoch(epoch)
            self.config = replace(self.config, embedder_fp=self.embedder.fingerprint, embedder_epoch=epoch,
                                  chunker_fp=self.schema.chunk_fingerprint(self.embedder.fingerprint))

    def _adopt(self, staged: StagedChunks) -> None:
        """A step after the one that accepted a drift: continue in the key space that step chose (a step that
        accepts one and has not probed yet plans in the next epoch; once it has, its probe chose)."""
        if self._spend is not None and self._spend.probe is not None:
            return
        cfg = staged.changes.config
        if hasattr(self.embedder, "with_epoch") and cfg.embedder == self.embedder.name:
            self._use_epoch(cfg.embedder_epoch)
        if self._accept_from is not None:
            self._use_epoch(self._accept_from + 1)

    def _remember_model(self, base: str | None) -> None:
        """A first generation built with an ONNX variant (new tenants' default) keeps it; see embedders.registry."""
        if base is None and (st := self.store.stored_settings(self.tenant)).model is None and self.embedder.name in ONNX_VARIANTS:
            self._writer.save_settings(replace(st, model=self.embedder.name))

    def _throughput(self) -> Throughput:
        return Throughput(self.store.root)

    def _lock(self, wait: float) -> None:
        """Open the run's TenantWriter (held to the end of the run) and the cache, once."""
        if self._cache is not None:
            return
        self._writer = self._held or self._stack.enter_context(TenantWriter(self.store, self.tenant, wait=wait, create=True))
        paths = self._writer.paths
        stored = self.store.stored_settings(self.tenant)
        if stored.source is None:
            # A tenant made by its first reindex (or registered without a source) remembers where its documents are.
            self._writer.save_settings(replace(stored, source=self.config.source))
        live = live_manifest(paths)
        # A missing, empty or partial cache: every vector is still in the segments; refill, do not pay again.
        if not paths.cache.exists() and (gap := cache_gap(paths, live, None)) is not None:
            raise gap  # (before the cache is created)
        cache = self._stack.enter_context(EmbeddingCache(paths.cache))
        if (gap := cache_gap(paths, live, cache)) is not None:
            raise gap
        stored = cache.probe(self.embedder.identity, epoch_of(self.embedder)) if hasattr(self.embedder, "learn_dim") else None
        if stored is not None:
            self.embedder.learn_dim(stored.shape[1])  # a model of unknown size: no request just to learn it
        self._cache = cache

    def _stale(self, staged: StagedChunks) -> bool:
        return current_id(self.paths) != staged.changes.base or staged.changes.config != self.config

    def _fresh(self, staged: StagedChunks) -> StagedChunks:
        return self.chunk(self.detect()) if self._stale(staged) else staged

    def _unchanged(self, embedded: Embedded) -> IndexingResult:
        cs = embedded.staged.changes
        versions = read_manifest(self.paths, cs.base).versions if cs.base else {}
        return IndexingResult(self.tenant, "unchanged", cs.base, cs.base, embedded.plan, embedded.ledger, cs.counts(),
                              skipped=cs.skipped, gates=[embedded.budget], versions=versions, seconds=dict(self.seconds))


def reindex(store: TenantStore, tenant: str, *, embedder, options: RunOptions | None = None, **overrides) -> IndexingResult:
    """Index one tenant: whatever changed in its source since the live generation, and only that.

    ``options`` / keyword overrides: see :class:`RunOptions`. Raises BudgetExceeded or
    MassDeletion (nothing changed), ChecksFailed (candidate written, live generation
    unchanged), TenantBusy (another writer holds the lock).
    """
    run = TenantRun(store, tenant, embedder=embedder, options=options, **overrides)
    return run.run()
