"""The ``ragindex`` command line: short functions over the library.

Exit codes: 0 ok, 1 error (message on stderr; a JSON error object on stdout with
--json), 2 usage, 3 over budget (nothing changed), 4 tenant busy (another writer
holds its lock), 5 a check failed, 6 verify --repair found damage and repaired it,
7 a run would delete more documents than allowed (nothing changed).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

EXIT_ERROR, EXIT_BUDGET, EXIT_BUSY, EXIT_CHECK, EXIT_REPAIRED, EXIT_DELETIONS = 1, 3, 4, 5, 6, 7

# Commands that write a tenant: a failed write there leaves the live generation as it was.
WRITERS = {"reindex", "rollback", "gc", "compact", "verify", "tenants_remove", "migrate"}


def _emit(obj, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
    else:
        human(obj)


def fail(message: str, code: int, kind: str, as_json: bool) -> None:
    """Print an error (a JSON object on stdout with --json, a line on stderr always) and exit with ``code``."""
    if as_json:
        click.echo(json.dumps({"error": {"kind": kind, "message": message, "exit_code": code}}, indent=2, ensure_ascii=False))
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _expected() -> dict[type, tuple[int, str]]:
    """The errors a user can cause or fix, with their exit code and kind; anything else is a bug."""
    from pipeline.cache import CacheError
    from pipeline.changes import ChangeError
    from pipeline.cost import PriceTableError
    from pipeline.evaluate.datasets import DatasetError
    from pipeline.filters import FilterError
    from pipeline.embedder import MissingExtra
    from pipeline.guards import MassDeletion
    from pipeline.hosted import HostedError
    from pipeline.index import GenerationError
    from pipeline.locking import TenantBusy
    from pipeline.segments import SegmentError
    from pipeline.tenants import TenantError
    from schemas import SchemaError

    return {TenantBusy: (EXIT_BUSY, "tenant busy"), MassDeletion: (EXIT_DELETIONS, "mass deletion refused"),
            TenantError: (EXIT_ERROR, "tenant"), SchemaError: (EXIT_ERROR, "schema"),
            GenerationError: (EXIT_ERROR, "generation"), SegmentError: (EXIT_ERROR, "segment"),
            CacheError: (EXIT_ERROR, "cache"), ChangeError: (EXIT_ERROR, "source"), PriceTableError: (EXIT_ERROR, "prices"),
            DatasetError: (EXIT_ERROR, "dataset"), HostedError: (EXIT_ERROR, "embedding api"),
            MissingExtra: (EXIT_ERROR, "missing extra"), FilterError: (EXIT_ERROR, "filter"),
            FileNotFoundError: (EXIT_ERROR, "not found")}


def _errors(fn):
    """Expected errors become one readable line (and a JSON object with --json) and their exit code.

    An unexpected exception is a bug: it is reported as one line naming its type,
    with a hint to rerun with --debug, which shows the full traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        as_json = bool(kwargs.get("as_json"))
        ctx = click.get_current_context(silent=True)
        debug = bool(getattr(ctx.find_object(Ctx), "debug", False)) if ctx else False
        try:
            return fn(*args, **kwargs)
        except SystemExit:
            raise
        except Exception as exc:  # noqa: BLE001 - sorted into expected and unexpected below
            if debug:
                raise
            for cls, (code, kind) in _expected().items():
                if isinstance(exc, cls):
                    fail(str(exc), code, kind, as_json)
            if isinstance(exc, OSError):  # disk full, file too large, permissions
                tail = (" nothing was promoted, the live generation is untouched. Free space or fix permissions, then rerun."
                        if fn.__name__ in WRITERS else "")
                fail(f"a file operation failed ({exc});{tail}", EXIT_ERROR, "io", as_json)
            fail(f"unexpected {type(exc).__name__}: {exc} (this is a bug; rerun with --debug for the traceback "
                 "and report it)", EXIT_ERROR, "bug", as_json)

    return wrapper


class FiniteFloat(click.ParamType):
    """A float that must be finite (no nan, no inf) and not below ``minimum``."""

    name = "number"

    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def convert(self, value, param, ctx):
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if number < self.minimum:
            self.fail(f"{value!r} is below {self.minimum}", param, ctx)
        return number


class Ctx:
    def __init__(self, home: str | None, model: str | None, debug: bool = False, dimensions: int | None = None) -> None:
        if home:
            os.environ["RAGINDEX_HOME"] = home
        self.model = model  # None: the tenant's setting, else the bundled default
        self.dimensions = dimensions
        self.debug = debug
        self._embedders: dict = {}

    @property
    def store(self):
        from pipeline.tenants import TenantStore

        return TenantStore()

    def model_for(self, tenant: str | None = None) -> tuple[str, int | None]:
        """--model / $RAGINDEX_MODEL, else the tenant's setting, else the bundled default (and its dimensions)."""
        if self.model:
            return self.model, self.dimensions
        store = self.store
        if tenant and store.exists(tenant):
            s = store.settings(tenant)
            if s.model:
                return s.model, self.dimensions or s.dimensions
        return "default", self.dimensions

    @property
    def api(self):
        """The Python API over the same state directory and model choice (pipeline.api)."""
        from pipeline.api import Ragindex

        return Ragindex(model=self.model, dimensions=self.dimensions)

    def embedder_for(self, tenant: str | None = None):
        key = self.model_for(tenant)
        if key not in self._embedders:
            from pipeline.embedder import EmbedderConfig

            self._embedders[key] = EmbedderConfig(key[0], dimensions=key[1]).build()
        return self._embedders[key]

    @property
    def embedder(self):
        return self.embedder_for(None)


pass_ctx = click.make_pass_decorator(Ctx)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of text.")
wait_option = click.option("--wait", type=FiniteFloat(0), default=0, show_default=True,
                           help="Seconds to wait for another writer of the tenant (default: fail at once, exit 4).")
tenant_option = click.option("--tenant", "-t", required=True, help="Tenant name: a-z, 0-9, '_' and '-', at most 63 characters.")


class RagindexGroup(click.Group):
    """With --json anywhere on the command line, a usage error is a JSON error object too (exit 2)."""

    def main(self, args=None, *a, **kw):
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv:
            return super().main(args, *a, **kw)
        try:
            return super().main(args, *a, standalone_mode=False, **kw)
        except click.exceptions.Abort:
            fail("aborted", EXIT_ERROR, "aborted", True)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code, "usage", True)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)


@click.group(cls=RagindexGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--home", envvar="RAGINDEX_HOME", help="State directory (default: $RAGINDEX_HOME or ./.ragindex).")
@click.option("--model", envvar="RAGINDEX_MODEL", default=None,
              help="Embedding model: 'default' (bundled all-MiniLM-L6-v2), a local sentence-transformers directory, or "
                   "openai:MODEL for an OpenAI-compatible API ($OPENAI_API_KEY, $OPENAI_BASE_URL). Default: the "
                   "tenant's setting, else 'default'.")
@click.option("--dimensions", envvar="RAGINDEX_DIMENSIONS", type=click.IntRange(min=1), default=None,
              help="Output dimensions for a hosted model that supports them (the API's `dimensions`).")
@click.option("--debug", is_flag=True, envvar="RAGINDEX_DEBUG", help="Show the full traceback of an unexpected error.")
@click.pass_context
def main(ctx, home, model, dimensions, debug):
    """ragindex: a RAG indexing pipeline with versioned chunker schemas and embedding cost control.

    \b
    Typical session:
      ragindex tenants add acme --source ./docs
      ragindex plan --tenant acme          # what would be embedded, and what it costs
      ragindex reindex --tenant acme --max-cost 0.50
      ragindex search --tenant acme "how do I rotate keys?"
    """
    ctx.obj = Ctx(home, model, debug, dimensions)


# ---------------------------------------------------------------- schemas


@main.group()
def schemas():
    """Versioned chunker schemas (schemas/chunkers/NAME.vVERSION.toml) and their lock file."""


@schemas.command("list")
@json_option
@_errors
def schemas_list(as_json):
    """List schemas with kind, size, overlap, fingerprint and whether they are published.

    Example: ragindex schemas list --json
    """
    from schemas import SchemaRegistry

    reg = SchemaRegistry()
    locked = reg.lock()
    rows = [
        {"ref": ref, "kind": sf.spec.kind, "tokenizer": sf.spec.tokenizer, "size": sf.spec.size, "overlap": sf.spec.overlap,
         "fingerprint": sf.fingerprint(), "published": ref in locked, "description": sf.spec.description}
        for ref, sf in reg.files().items()
    ]

    def human(rows):
        for r in rows:
            click.echo(f"{r['ref']:<20} {r['kind']:<10} {r['tokenizer']:<17} {r['size']:>5}/{r['overlap']:<4} "
                       f"{r['fingerprint'][:12]} {'published' if r['published'] else 'NOT LOCKED'}")

    _emit(rows, as_json, human)


@schemas.command("lock")
@_errors
def schemas_lock():
    """Publish new schema versions into chunkers.lock; refuses if a published one changed.

    Example: ragindex schemas lock
    """
    from schemas import SchemaRegistry

    new = SchemaRegistry().publish()
    click.echo("published: " + ", ".join(new) if new else "nothing new to publish")


@schemas.command("check")
@json_option
@_errors
def schemas_check(as_json):
    """CI check: published schemas unchanged (file and implementation), all schemas published.

    Exits 5 naming each offending schema.

    Example: ragindex schemas check
    """
    from schemas import SchemaRegistry

    problems = SchemaRegistry().check()
    _emit([p.__dict__ for p in problems], as_json,
          lambda ps: click.echo("\n".join(f"FAIL {p['ref']}: {p['problem']}\n     fix: {p['fix']}" for p in ps) or "ok: all schemas published and unchanged"))
    if problems:
        sys.exit(EXIT_CHECK)


@main.command()
@click.option("--schema", "schema_ref", default="default@1", show_default=True, help="Schema NAME@VERSION.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@_errors
def chunk(schema_ref, file, as_json):
    """Preview what a schema does to FILE: each chunk with offsets and token count.

    Example: ragindex chunk --schema markdown@1 README.md
    """
    from chunkers import build_chunker
    from pipeline.sources import normalise
    from schemas import SchemaRegistry

    sf = SchemaRegistry().get(schema_ref)
    text = normalise(file.read_text(encoding="utf-8"))
    spans = build_chunker(sf.spec).chunk(text)
    rows = [{"i": i, "start": s.start, "end": s.end, "tokens": s.token_count, "heading_path": list(s.heading_path),
             "text": text[s.start : s.end]} for i, s in enumerate(spans)]

    def human(rows):
        click.echo(f"{sf.ref} ({sf.spec.kind}, {sf.spec.size}/{sf.spec.overlap} {sf.spec.tokenizer} tokens): {len(rows)} chunks")
        for r in rows:
            preview = r["text"][:70].replace("\n", "⏎")
            click.echo(f"#{r['i']:<4} [{r['start']:>7}:{r['end']:<7}] {r['tokens']:>4} tok  {preview}")

    _emit({"schema": sf.ref, "fingerprint": sf.fingerprint(), "chunks": rows} if as_json else rows, as_json, human)


# ---------------------------------------------------------------- tenants


@main.group()
def tenants():
    """Register tenants (one directory, cache and index each)."""


@tenants.command("add")
@click.argument("tenant")
@click.option("--source", required=True, type=click.Path(exists=True, path_type=Path), help="Folder, .jsonl or .parquet file.")
@click.option("--chunker", default="default@1", show_default=True, help="Schema NAME@VERSION the tenant is pinned to.")
@click.option("--eval-set", help="Eval set (preset name or path) scored before each promotion; none by default.")
@click.option("--model", "tenant_model", help="The tenant's embedding model (e.g. openai:text-embedding-3-small); "
                                             "default: the bundled all-MiniLM-L6-v2.")
@click.option("--dimensions", "tenant_dimensions", type=click.IntRange(min=1), help="Output dimensions of a hosted model.")
@pass_ctx
@_errors
def tenants_add(ctx, tenant, source, chunker, eval_set, tenant_model, tenant_dimensions):
    """Register TENANT with its source and chunker schema (and, with $DAGSTER_HOME set, as a Dagster partition).

    Example: ragindex tenants add acme --source ./acme-docs --chunker markdown@1
    """
    from pipeline.tenants import TenantSettings
    from schemas import SchemaRegistry

    SchemaRegistry().runnable(chunker)
    if tenant_dimensions and not (tenant_model or "").startswith("openai:"):
        raise click.UsageError("--dimensions applies to a hosted model (--model openai:MODEL)")
    ctx.store.save_settings(tenant, TenantSettings(source=str(source.resolve()), chunker=chunker, eval_set=eval_set,
                                                   model=tenant_model, dimensions=tenant_dimensions))
    from pipeline.orchestration.instance import register_partition

    registered = register_partition(tenant)
    click.echo(f"tenant {tenant}: source {source.resolve()}, chunker {chunker}"
               + (f", model {tenant_model}" if tenant_model else "")
               + (f", eval set {eval_set}" if eval_set else "")
               + (f"; partition registered in {os.environ['DAGSTER_HOME']}" if registered else ""))


@tenants.command("list")
@json_option
@pass_ctx
@_errors
def tenants_list(ctx, as_json):
    """List tenants with source, chunker and live generation.

    Example: ragindex tenants list --json
    """
    from pipeline.index import current_id

    from pipeline.index import GenerationError
    from pipeline.tenants import TenantError

    store = ctx.store
    rows = []
    for name in store.names():
        row = {"tenant": name, "source": None, "chunker": None, "generation": None, "error": None}
        try:  # one tenant's broken state must not hide the others
            s = store.settings(name)
            row.update(source=s.source, chunker=s.chunker, generation=current_id(store.paths(name)))
        except (TenantError, GenerationError) as exc:
            row["error"] = str(exc)
        rows.append(row)
    _emit(rows, as_json, lambda rows: click.echo("\n".join(
        f"{r['tenant']:<24} {r['chunker'] or '?':<18} {r['generation'] or '(no index)':<36} {r['source'] or ''}"
        + (f"  ERROR {r['error']}" if r["error"] else "") for r in rows) or "no tenants"))


@tenants.command("remove")
@click.argument("tenant")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@wait_option
@json_option
@pass_ctx
@_errors
def tenants_remove(ctx, tenant, yes, wait, as_json):
    """Delete TENANT for good: documents, chunks, segments, generations, cache and ledger, keys, eval cache,
    and its Dagster partition. Refuses (exit 4) while a reindex runs, unless --wait.

    A removal interrupted half-way is finished by running the command again.

    Example: ragindex tenants remove acme --yes
    """
    from pipeline.offboard import remove_tenant

    ctx.store.paths(tenant)  # a bad name fails before any question is asked
    if not yes:
        if not sys.stdin.isatty():
            fail(f"removing tenant {tenant} deletes all its files; pass --yes to confirm", EXIT_ERROR, "confirmation", as_json)
        click.confirm(f"Delete tenant {tenant} and every file it has (its index, cache and ledger)?", abort=True)
    out = remove_tenant(ctx.store, tenant, wait=wait)
    _emit(out, as_json, lambda o: click.echo(
        f"tenant {tenant}: removed ({o['files_bytes'] / 1e6:.1f} MB)"
        + ("; Dagster partition removed" if o["dagster_partition_removed"] else "")))


# ---------------------------------------------------------------- plan / reindex


def _print_plan(p: dict) -> None:
    click.echo(f"plan for tenant {p['tenant']} with {p['chunker']} and {p['embedder']} on {p['device']}")
    if p.get("rebuild"):
        click.echo(f"  REBUILD    {p['rebuild']}")
    click.echo(f"  files      {p['files_seen']} seen, {p['files_read']} read (the rest unchanged since the last run)")
    click.echo(f"  documents  new {p['docs_new']}, changed {p['docs_changed']}, deleted {p['docs_deleted']}, "
               f"unchanged {p['docs_unchanged']}, skipped {p['docs_skipped']}"
               + (f", kept (unreadable) {p['docs_kept_unreadable']}" if p.get("docs_kept_unreadable") else ""))
    click.echo(f"  chunks     {p['chunks_total']} total: unchanged {p['chunks_unchanged']}, new {p['chunks_new']}, "
               f"removed {p['chunks_removed']} ({p['docs_chunked']} documents chunked, {p['docs_reused']} reused)")
    click.echo(f"  texts      {p['unique_texts']} new unique: {p['vectors_reused']} cached ({p['reused_pct']}%), "
               f"{p['duplicates_in_run']} duplicate chunks, {p['texts_to_embed']} to embed")
    click.echo(f"  tokens     {p['tokens_to_embed']:,} model tokens ({p['tokens_to_embed_cl100k']:,} cl100k_base)")
    if p.get("chunker_texts_to_embed") or not p.get("exact", True):
        click.echo(f"  chunker    {p['chunker_texts_to_embed']} pieces, {p['chunker_tokens_to_embed']:,} tokens to embed first "
                   f"(the {p['chunker']} chunker clusters on them), ~{p['chunker_est_seconds']:.1f} s, ${p['chunker_cost_usd']:.6f}")
    if not p.get("exact", True):
        click.echo("  BOUND      chunk figures are an upper bound (each piece its own chunk) until the pieces are embedded; "
                   "the budget is checked on the bound, then again on the exact chunks")
    hosted = p["device"] == "api"
    if p["truncated_chunks"]:
        fate = "are refused by the API (never truncated): this run would stop" if hosted else "will be truncated"
        click.echo(f"  WARNING    {p['truncated_chunks']} chunks exceed the model's {p['max_input_tokens']}-token input "
                   f"and {fate} ({p['truncated_to_embed']} of them to embed now); use a smaller schema")
    if p.get("probe_tokens"):
        click.echo(f"  probe      {p['probe_tokens']} tokens: the drift probe, embedded again by every paying run")
    click.echo(f"  time       ~{p['est_seconds']:.1f} s at {p['throughput_tokens_per_s']:,.0f} tok/s ({p['throughput_source']})")
    cost = f"${p['cost_usd']:.6f}" if p.get("cost_known", True) else "unknown"
    click.echo(f"  cost       {cost} ({p.get('price_source') or ('self-hosted on ' + p['device'])})")
    for name, usd in p["hosted_usd"].items():
        click.echo(f"             ${usd:.6f} at {name} prices")


def _skipped_summary(skipped) -> None:
    from pipeline.sources import shown

    if skipped:
        click.echo(f"skipped {len(skipped)} inputs:", err=True)
        for s in skipped[:20]:
            click.echo(f"  {shown(s.where)}: {shown(s.reason)}", err=True)  # names are data: escape control codes
        if len(skipped) > 20:
            click.echo(f"  ... and {len(skipped) - 20} more (see --json)", err=True)


source_option = click.option("--source", type=click.Path(exists=True, path_type=Path), help="Override the tenant's source.")
chunker_option = click.option("--chunker", help="Schema NAME@VERSION (default: the tenant's).")
prices_option = click.option("--prices", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Price table TOML (default: built-in).")
rescan_option = click.option("--rescan", is_flag=True,
                             help="Read and hash every file, even those whose size and modification time are unchanged. "
                                  "Use it on file systems whose mtimes cannot be trusted (some network shares, "
                                  "restores that reset timestamps, tools that rewrite files and restore the mtime).")
rebuild_option = click.option("--rebuild", is_flag=True,
                              help="Chunk every document again and write one new segment with all of them "
                                   "(vectors still come from the cache: nothing already paid is embedded again).")


@main.command()
@tenant_option
@source_option
@chunker_option
@prices_option
@rescan_option
@rebuild_option
@json_option
@pass_ctx
@_errors
def plan(ctx, tenant, source, chunker, prices, rescan, rebuild, as_json):
    """Dry run: what a reindex would read, chunk, embed and cost. Embeds nothing, writes nothing.

    Example: ragindex plan --tenant acme --chunker recursive-200@1
    """
    from pipeline.cost import Prices
    from pipeline.reindex import TenantRun

    with TenantRun(ctx.store, tenant, embedder=ctx.embedder_for(tenant), source=source, chunker=chunker, prices=Prices.load(prices),
                   rescan=rescan, rebuild=rebuild, progress=not as_json) as run:
        staged, p = run.stage()
    report = p.report()
    if as_json:
        report["skipped"] = [{"where": s.where, "reason": s.reason} for s in staged.changes.skipped]
    _emit(report, as_json, _print_plan)
    if not as_json:
        _skipped_summary(staged.changes.skipped)


@main.command()
@tenant_option
@source_option
@chunker_option
@prices_option
@click.option("--budget-tokens", type=click.IntRange(min=0), help="Refuse to embed more model tokens than this.")
@click.option("--max-cost", type=FiniteFloat(0), help="Refuse if the estimated cost (USD) is higher.")
@rescan_option
@rebuild_option
@click.option("--allow-deletions", is_flag=True, default=None,
              help="Let this run delete every live document, or more than half of them. Without it such a run is "
                   "refused (exit 7): an unmounted share or an emptied folder looks exactly like that.")
@click.option("--accept-model-drift", is_flag=True,
              help="A hosted model whose vectors changed under the same name is refused; with this flag, move to the "
                   "new model: a new key space, every text embedded again (see `ragindex plan` for the cost).")
@wait_option
@json_option
@pass_ctx
@_errors
def reindex(ctx, tenant, source, chunker, prices, budget_tokens, max_cost, rescan, rebuild, allow_deletions,
            accept_model_drift, wait, as_json):
    """Index what changed in a tenant's source: one new segment, a new generation, promoted.

    Files whose size and modification time are unchanged are not read; unchanged
    documents are not chunked; only texts this tenant never embedded with this
    model are embedded. A run that finds no change writes nothing and says
    "unchanged". Over budget it exits 3 having changed nothing; a failed check
    (index consistency, retrieval quality) exits 5 and leaves the live generation
    as it was. With $DAGSTER_HOME set, it runs the Dagster asset job in that
    instance, so the run and its metadata show in the UI.

    Example: ragindex reindex --tenant acme --source ./docs --max-cost 0.10
    """
    from pipeline.cost import Budget, BudgetExceeded, Prices
    from pipeline.gates import ChecksFailed
    from pipeline.reindex import reindex as run

    try:
        if os.environ.get("DAGSTER_HOME"):
            from pipeline.orchestration.run import reindex_in_dagster

            out, skipped = reindex_in_dagster(ctx.store, tenant, source=source, chunker=chunker, model=ctx.model_for(tenant)[0],
                                              prices=prices, budget=Budget(budget_tokens, max_cost), wait=wait,
                                              rescan=rescan, rebuild=rebuild, allow_deletions=allow_deletions,
                                              accept_model_drift=accept_model_drift, dimensions=ctx.model_for(tenant)[1])
        else:
            result = run(ctx.store, tenant, source=source, chunker=chunker, embedder=ctx.embedder_for(tenant), prices=Prices.load(prices),
                         budget=Budget(budget_tokens, max_cost), progress=not as_json, wait=wait, rescan=rescan,
                         rebuild=rebuild, allow_deletions=allow_deletions, accept_model_drift=accept_model_drift)
            out, skipped = result.to_dict(), result.skipped
    except ChecksFailed as exc:
        fail(f"{exc}. The live generation is unchanged; the candidate stays on disk for inspection.",
             EXIT_CHECK, "checks failed", as_json)
    except BudgetExceeded as exc:
        if as_json:
            click.echo(json.dumps({"error": {"kind": "over budget", "message": "; ".join(exc.reasons) + ". Nothing was changed.",
                                             "exit_code": EXIT_BUDGET}, "reasons": exc.reasons, "plan": exc.plan.report()},
                                  indent=2))
        else:
            _print_plan(exc.plan.report())
            click.echo(f"error: over budget: {'; '.join(exc.reasons)}. Nothing was changed.", err=True)
            click.echo("To proceed: raise --budget-tokens/--max-cost, or reduce what is embedded "
                       "(e.g. index fewer documents or keep the tenant's current schema).", err=True)
        sys.exit(EXIT_BUDGET)

    def human(o):
        led, ch = o["ledger"], o["changes"]
        if o["status"] == "unchanged":
            click.echo(f"tenant {o['tenant']}: unchanged; generation {o['generation']} stays live "
                       f"({ch['files_seen']} files checked, {ch['files_read']} read, nothing written)")
        else:
            click.echo(f"tenant {o['tenant']}: generation {o['generation']} is live")
            click.echo(f"  documents new {ch['docs_new']}, changed {ch['docs_changed']}, deleted {ch['docs_deleted']}, "
                       f"unchanged {ch['docs_unchanged']} ({ch['files_read']} of {ch['files_seen']} files read)")
            click.echo(f"  embedded {led['texts']} texts, {led['tokens']:,} tokens in {led['seconds']:.2f} s "
                       f"(${led['cost_usd']:.6f}); {o['plan']['vectors_reused']} vectors reused from cache")
            click.echo(f"  wrote {o['bytes_written'] / 1e6:.2f} MB" + (f" (segment {o['segment']})" if o.get("segment") else ""))
            for m in (o.get("maintenance") or {}).get("merges", []):
                click.echo(f"  merged {len(m['inputs'])} segment(s) into {m['segment']}: {m['reason']}")
        if "dagster_run_id" in o:
            click.echo(f"  dagster run {o['dagster_run_id']} (see the UI's run history)")
        _skipped_summary(skipped)

    _emit(out, as_json, human)


# ---------------------------------------------------------------- search / status


@main.command()
@tenant_option
@click.argument("query")
@click.option("-k", default=5, show_default=True, type=click.IntRange(1, 1000), help="Number of hits.")
@click.option("--mode", type=click.Choice(["dense", "bm25", "hybrid"]),
              help="dense (embeddings), bm25 (words) or hybrid (both, fused); default: the tenant's, else the default's.")
@click.option("--filter", "filter_", metavar="JSON",
              help='Only chunks whose document matches, e.g. \'{"team": "search", "year": {">": 2020}}\' or '
                   '\'{"path": {"prefix": "guides/"}}\' (operators: == != in not_in < <= > >= exists prefix glob; and/or/not).')
@json_option
@pass_ctx
@_errors
def search(ctx, tenant, query, k, mode, filter_, as_json):
    """Search one tenant's live generation.

    Example: ragindex search --tenant acme "atomic promote" -k 3
    """
    from pipeline.search import Searcher

    searcher = Searcher(ctx.store, ctx.embedder_for(tenant) if mode != "bm25" else None)
    hits = searcher.search(tenant, query, k, mode, filter_)

    def human(hits):
        for h in hits:
            click.echo(f"{h['rank']}. {h['score']:.3f}  {h['doc_id']} [{h['start']}:{h['end']}]")
            click.echo("   " + " ".join(h["text"].split())[:200])

    _emit([h.to_dict() for h in hits], as_json, human)


@main.command()
@tenant_option
@json_option
@pass_ctx
@_errors
def status(ctx, tenant, as_json):
    """Cache size, hit rate, ledger totals and spend per calendar month of a tenant.

    Example: ragindex status --tenant acme --json
    """
    out = ctx.api.tenant(tenant).status()

    def human(o):
        click.echo(f"tenant {o['tenant']}: live generation {o['generation'] or '(none)'}")
        if "cache" in o:
            c, led = o["cache"], o["ledger"]
            click.echo(f"  cache   {c['vectors']} vectors in {c['key_spaces']} model key space(s), {c['bytes'] / 1e6:.1f} MB")
            click.echo(f"  ledger  {led['runs']} runs: {led['texts']} texts, {led['tokens']:,} tokens, {led['seconds']:.1f} s, ${led['cost_usd']:.6f}")
            click.echo(f"  hit rate {o['hit_rate']:.1%} of texts looked up were already cached" if o["hit_rate"] is not None else "  hit rate n/a")
            for m in o["spend_by_month"]:
                billed = f", {m['tokens_billed']:,} billed by the API" if m["tokens_billed"] else ""
                click.echo(f"  {m['month']}  {m['runs']} runs, {m['texts']} texts, {m['tokens']:,} tokens{billed}: ${m['cost_usd']:.6f}")

    _emit(out, as_json, human)


# ---------------------------------------------------------------- serve / keys


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (127.0.0.1: this machine only).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--log-level", default="warning", show_default=True, type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@pass_ctx
@_errors
def serve(ctx, host, port, log_level):
    """Serve searches over HTTP: warm model, live generations kept loaded, per-tenant API keys.

    \b
    POST /v1/tenants/T/search        {"query": "...", "k": 5, "mode": "hybrid", "filter": {...}}
    POST /v1/tenants/T/search/batch  {"queries": [...], ...}
    GET  /healthz  /readyz  /metrics  /docs
    Send `Authorization: Bearer KEY` with a key from `ragindex keys create --tenant T`.
    Promotions are picked up without a restart; SIGTERM lets requests in flight finish.

    Example: ragindex serve --port 8080
    """
    from pipeline.serve import serve as run

    click.echo(f"ragindex serving {ctx.store.root} on http://{host}:{port} (docs at /docs)", err=True)
    run(ctx.api, host=host, port=port, log_level=log_level)


@main.group("keys")
def keys_group():
    """API keys of a tenant for `ragindex serve` (only a hash is stored, in the tenant's directory)."""


@keys_group.command("create")
@tenant_option
@click.option("--name", default="", help="What the key is for (shown in `keys list`).")
@json_option
@pass_ctx
@_errors
def keys_create(ctx, tenant, name, as_json):
    """Make a key for TENANT and print it once (it cannot be shown again).

    Example: ragindex keys create --tenant acme --name frontend --json
    """
    from pipeline import keys

    key, rec = keys.create(ctx.store, tenant, name)
    _emit({"tenant": tenant, "key": key, **rec.public()}, as_json,
          lambda o: click.echo(f"{o['key']}\n(key {o['id']} of tenant {tenant}; store it now: it is not shown again)"))


@keys_group.command("list")
@tenant_option
@json_option
@pass_ctx
@_errors
def keys_list(ctx, tenant, as_json):
    """List TENANT's keys (ids, names, dates; never the keys).

    Example: ragindex keys list --tenant acme
    """
    from pipeline import keys

    ctx.store.require(tenant)
    rows = [k.public() for k in keys.load(ctx.store, tenant)]
    _emit(rows, as_json, lambda rows: click.echo("\n".join(
        f"{r['id']}  {r['name'] or '-':<20} created {r['created_at']}" + (f"  REVOKED {r['revoked_at']}" if r["revoked_at"] else "")
        for r in rows) or "no keys"))


@keys_group.command("revoke")
@tenant_option
@click.argument("key_id")
@json_option
@pass_ctx
@_errors
def keys_revoke(ctx, tenant, key_id, as_json):
    """Revoke one of TENANT's keys by its id (from `keys list`); takes effect on the next request.

    Example: ragindex keys revoke --tenant acme 1a2b3c4d
    """
    from pipeline import keys

    rec = keys.revoke(ctx.store, tenant, key_id)
    _emit(rec.public(), as_json, lambda o: click.echo(f"key {o['id']} of tenant {tenant} revoked"))


# Commands that live in their own modules register themselves on `main`.
from pipeline import cli_generations  # noqa: E402,F401
from pipeline.evaluate import cli as _eval_cli  # noqa: E402,F401  (ragindex eval ...)

if __name__ == "__main__":
    # Run the module-registered `main` (python -m pipeline.cli imports this file twice).
    from pipeline.cli import main as _main

    _main()
