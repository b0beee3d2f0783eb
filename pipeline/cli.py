"""The ``ragindex`` command line: short functions over the library.

Exit codes: 0 ok, 1 error (message on stderr), 2 usage, 3 over budget (nothing
changed), 4 tenant busy (another writer holds its lock), 5 a check failed.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

EXIT_ERROR, EXIT_BUDGET, EXIT_BUSY, EXIT_CHECK = 1, 3, 4, 5


def _emit(obj, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
    else:
        human(obj)


def _errors(fn):
    """Turn the library's errors into one readable line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pipeline.cache import CacheError
        from pipeline.index import GenerationError
        from pipeline.locking import TenantBusy
        from pipeline.tenants import TenantError
        from schemas import SchemaError

        try:
            return fn(*args, **kwargs)
        except TenantBusy as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BUSY)
        except (TenantError, SchemaError, GenerationError, CacheError, FileNotFoundError, ValueError, KeyError) as exc:
            click.echo(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", err=True)
            sys.exit(EXIT_ERROR)
        except OSError as exc:  # disk full, file too large, permissions: the write failed as a whole
            click.echo(f"error: a write failed ({exc}); nothing was promoted, the live generation is untouched. "
                       "Free space or fix permissions, then rerun.", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper


class Ctx:
    def __init__(self, home: str | None, model: str) -> None:
        if home:
            os.environ["RAGINDEX_HOME"] = home
        self.model = model
        self._embedder = None

    @property
    def store(self):
        from pipeline.tenants import TenantStore

        return TenantStore()

    @property
    def embedder(self):
        if self._embedder is None:
            from pipeline.embedder import EmbedderConfig

            self._embedder = EmbedderConfig(self.model).build()
        return self._embedder


pass_ctx = click.make_pass_decorator(Ctx)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of text.")
wait_option = click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True,
                           help="Seconds to wait for another writer of the tenant (default: fail at once, exit 4).")
tenant_option = click.option("--tenant", "-t", required=True, help="Tenant name: a-z, 0-9, '_' and '-', at most 63 characters.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--home", envvar="RAGINDEX_HOME", help="State directory (default: $RAGINDEX_HOME or ./.ragindex).")
@click.option("--model", envvar="RAGINDEX_MODEL", default="default", show_default=True,
              help="Embedding model: 'default' (bundled all-MiniLM-L6-v2) or a local sentence-transformers directory.")
@click.pass_context
def main(ctx, home, model):
    """ragindex: a RAG indexing pipeline with versioned chunker schemas and embedding cost control.

    \b
    Typical session:
      ragindex tenants add acme --source ./docs
      ragindex plan --tenant acme          # what would be embedded, and what it costs
      ragindex reindex --tenant acme --max-cost 0.50
      ragindex search --tenant acme "how do I rotate keys?"
    """
    ctx.obj = Ctx(home, model)


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
@pass_ctx
@_errors
def tenants_add(ctx, tenant, source, chunker, eval_set):
    """Register TENANT with its source and chunker schema (and, with $DAGSTER_HOME set, as a Dagster partition).

    Example: ragindex tenants add acme --source ./acme-docs --chunker markdown@1
    """
    from pipeline.tenants import TenantSettings
    from schemas import SchemaRegistry

    SchemaRegistry().get(chunker)
    ctx.store.save_settings(tenant, TenantSettings(source=str(source.resolve()), chunker=chunker, eval_set=eval_set))
    from pipeline.orchestration.instance import register_partition

    registered = register_partition(tenant)
    click.echo(f"tenant {tenant}: source {source.resolve()}, chunker {chunker}"
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

    store = ctx.store
    rows = []
    for name in store.names():
        s = store.settings(name)
        rows.append({"tenant": name, "source": s.source, "chunker": s.chunker, "generation": current_id(store.paths(name))})
    _emit(rows, as_json, lambda rows: click.echo("\n".join(
        f"{r['tenant']:<24} {r['chunker']:<18} {r['generation'] or '(no index)':<36} {r['source']}" for r in rows) or "no tenants"))


# ---------------------------------------------------------------- plan / reindex


def _print_plan(p: dict) -> None:
    click.echo(f"plan for tenant {p['tenant']} with {p['chunker']} and {p['embedder']} on {p['device']}")
    click.echo(f"  documents  new {p['docs_new']}, changed {p['docs_changed']}, deleted {p['docs_deleted']}, "
               f"unchanged {p['docs_unchanged']}, skipped {p['docs_skipped']}")
    click.echo(f"  chunks     {p['chunks_total']} total: unchanged {p['chunks_unchanged']}, new {p['chunks_new']}, removed {p['chunks_removed']}")
    click.echo(f"  texts      {p['unique_texts']} unique: {p['vectors_reused']} cached ({p['reused_pct']}%), "
               f"{p['duplicates_in_run']} duplicate chunks, {p['texts_to_embed']} to embed")
    click.echo(f"  tokens     {p['tokens_to_embed']:,} model tokens ({p['tokens_to_embed_cl100k']:,} cl100k_base)")
    if p["truncated_chunks"]:
        click.echo(f"  WARNING    {p['truncated_chunks']} chunks exceed the model's {p['max_input_tokens']}-token input "
                   f"and will be truncated ({p['truncated_to_embed']} of them to embed now); use a smaller schema")
    click.echo(f"  time       ~{p['est_seconds']:.1f} s at {p['throughput_tokens_per_s']:,.0f} tok/s ({p['throughput_source']})")
    click.echo(f"  cost       ${p['cost_usd']:.6f} self-hosted on {p['device']}")
    for name, usd in p["hosted_usd"].items():
        click.echo(f"             ${usd:.6f} at {name} prices")


def _skipped_summary(skipped) -> None:
    if skipped:
        click.echo(f"skipped {len(skipped)} inputs:", err=True)
        for s in skipped[:20]:
            click.echo(f"  {s.where}: {s.reason}", err=True)
        if len(skipped) > 20:
            click.echo(f"  ... and {len(skipped) - 20} more (see --json)", err=True)


source_option = click.option("--source", type=click.Path(exists=True, path_type=Path), help="Override the tenant's source.")
chunker_option = click.option("--chunker", help="Schema NAME@VERSION (default: the tenant's).")
prices_option = click.option("--prices", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Price table TOML (default: built-in).")


@main.command()
@tenant_option
@source_option
@chunker_option
@prices_option
@json_option
@pass_ctx
@_errors
def plan(ctx, tenant, source, chunker, prices, as_json):
    """Dry run: what a reindex would embed and cost. Embeds nothing, writes nothing.

    Example: ragindex plan --tenant acme --chunker recursive-200@1
    """
    from pipeline.cost import Prices
    from pipeline.reindex import prepare, resolve

    src, schema = resolve(ctx.store, tenant, source, chunker)
    prepared = prepare(ctx.store, tenant, src, schema, ctx.embedder, Prices.load(prices), progress=not as_json)
    report = prepared.plan.report()
    if as_json:
        report["skipped"] = [{"where": s.where, "reason": s.reason} for s in prepared.report.skipped]
    _emit(report, as_json, _print_plan)
    if not as_json:
        _skipped_summary(prepared.report.skipped)


@main.command()
@tenant_option
@source_option
@chunker_option
@prices_option
@click.option("--budget-tokens", type=click.IntRange(min=0), help="Refuse to embed more model tokens than this.")
@click.option("--max-cost", type=click.FloatRange(min=0), help="Refuse if the estimated cost (USD) is higher.")
@wait_option
@json_option
@pass_ctx
@_errors
def reindex(ctx, tenant, source, chunker, prices, budget_tokens, max_cost, wait, as_json):
    """Index a tenant: documents -> chunks -> embeddings -> a new generation, promoted.

    Only texts never embedded before by this tenant with this model are embedded.
    Over budget it exits 3 having changed nothing; a failed check (index
    consistency, retrieval quality) exits 5 and leaves the live generation as it was.
    With $DAGSTER_HOME set, it runs the Dagster asset job in that instance, so
    the run and its metadata show in the UI.

    Example: ragindex reindex --tenant acme --source ./docs --max-cost 0.10
    """
    from pipeline.cost import Prices
    from pipeline.reindex import Budget, BudgetExceeded, ChecksFailed, reindex as run

    try:
        if os.environ.get("DAGSTER_HOME"):
            from pipeline.orchestration.run import reindex_in_dagster

            out, skipped = reindex_in_dagster(ctx.store, tenant, source=source, chunker=chunker, model=ctx.model,
                                              prices=prices, budget=Budget(budget_tokens, max_cost), wait=wait)
        else:
            result = run(ctx.store, tenant, source=source, chunker=chunker, embedder=ctx.embedder, prices=Prices.load(prices),
                         budget=Budget(budget_tokens, max_cost), progress=not as_json, wait=wait)
            out, skipped = result.to_dict(), result.skipped
    except ChecksFailed as exc:
        click.echo(f"error: {exc}. The live generation is unchanged; the candidate stays on disk for inspection.", err=True)
        sys.exit(EXIT_CHECK)
    except BudgetExceeded as exc:
        if as_json:
            click.echo(json.dumps({"error": "over budget", "reasons": exc.reasons, "plan": exc.plan.report()}, indent=2))
        else:
            _print_plan(exc.plan.report())
            click.echo(f"error: over budget: {'; '.join(exc.reasons)}. Nothing was changed.", err=True)
            click.echo("To proceed: raise --budget-tokens/--max-cost, or reduce what is embedded "
                       "(e.g. index fewer documents or keep the tenant's current schema).", err=True)
        sys.exit(EXIT_BUDGET)

    def human(o):
        led = o["ledger"]
        click.echo(f"tenant {o['tenant']}: generation {o['generation']} is live")
        click.echo(f"  embedded {led['texts']} texts, {led['tokens']:,} tokens in {led['seconds']:.2f} s "
                   f"(${led['cost_usd']:.6f}); {o['plan']['vectors_reused']} vectors reused from cache")
        if "dagster_run_id" in o:
            click.echo(f"  dagster run {o['dagster_run_id']} (see the UI's run history)")
        _skipped_summary(skipped)

    _emit(out, as_json, human)


# ---------------------------------------------------------------- search / status


@main.command()
@tenant_option
@click.argument("query")
@click.option("-k", default=5, show_default=True, type=click.IntRange(1, 1000), help="Number of hits.")
@json_option
@pass_ctx
@_errors
def search(ctx, tenant, query, k, as_json):
    """Search one tenant's live generation.

    Example: ragindex search --tenant acme "atomic promote" -k 3
    """
    from pipeline.search import Searcher

    hits = Searcher(ctx.store, ctx.embedder).search(tenant, query, k)

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
    """Cache size, hit rate and ledger totals of a tenant.

    Example: ragindex status --tenant acme --json
    """
    from dataclasses import asdict

    from pipeline.cache import EmbeddingCache
    from pipeline.index import current_id

    paths = ctx.store.require(tenant)
    out = {"tenant": tenant, "generation": current_id(paths)}
    if paths.cache.exists():
        with EmbeddingCache(paths.cache, read_only=True) as cache:
            totals = cache.totals()
            out["cache"] = cache.stats()
            out["ledger"] = asdict(totals)
            looked_up = totals.cache_hits + totals.texts
            out["hit_rate"] = round(totals.cache_hits / looked_up, 4) if looked_up else None
            out["runs"] = cache.runs()[-5:]

    def human(o):
        click.echo(f"tenant {o['tenant']}: live generation {o['generation'] or '(none)'}")
        if "cache" in o:
            c, led = o["cache"], o["ledger"]
            click.echo(f"  cache   {c['vectors']} vectors in {c['key_spaces']} model key space(s), {c['bytes'] / 1e6:.1f} MB")
            click.echo(f"  ledger  {led['runs']} runs: {led['texts']} texts, {led['tokens']:,} tokens, {led['seconds']:.1f} s, ${led['cost_usd']:.6f}")
            click.echo(f"  hit rate {o['hit_rate']:.1%} of texts looked up were already cached" if o["hit_rate"] is not None else "  hit rate n/a")

    _emit(out, as_json, human)


# Commands that live in their own modules register themselves on `main`.
from pipeline import cli_generations  # noqa: E402,F401
from pipeline.evaluate import cli as _eval_cli  # noqa: E402,F401  (ragindex eval ...)

if __name__ == "__main__":
    # Run the module-registered `main` (python -m pipeline.cli imports this file twice).
    from pipeline.cli import main as _main

    _main()
