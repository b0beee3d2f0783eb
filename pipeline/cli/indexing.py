"""``ragindex plan | reindex | search | status``: index a tenant, know the cost first, query it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ragindex.cli.root import (
    EXIT_BUDGET,
    EXIT_CHECK,
    SEARCH_MODES,
    FiniteFloat,
    _emit,
    _errors,
    _print_conversions,
    _print_plan,
    _skipped_summary,
    _usd,
    fail,
    hits_type,
    json_option,
    main,
    pass_ctx,
    query_type,
    tenant_option,
    wait_option,
)

source_option = click.option("--source", type=click.Path(exists=True, path_type=Path), help="Override the tenant's source.")
chunker_option = click.option("--chunker", help="Schema NAME@VERSION (default: the tenant's).")
prices_option = click.option("--prices", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Price table TOML (default: built-in).")
rescan_option = click.option("--rescan", is_flag=True,
                             help="Read and hash every file, even those whose size and modification time are unchanged. "
                                  "Use it on file systems whose mtimes cannot be trusted (some network shares, "
                                  "restores that reset timestamps, tools that rewrite files and restore the mtime).")
accept_drift_option = click.option(
    "--accept-model-drift", is_flag=True,
    help="A hosted model whose vectors changed under the same name is refused; with this flag, move to the new model: "
         "a new key space, every text embedded again. `plan` shows that cost (it sends nothing, so it cannot know "
         "whether the model changed); the budget is checked on it before anything is sent.")
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
@accept_drift_option
@json_option
@pass_ctx
@_errors
def plan(ctx, tenant, source, chunker, prices, rescan, rebuild, accept_model_drift, as_json):
    """Dry run: what a reindex would read, chunk, embed and cost. Embeds nothing, writes nothing.

    Example: ragindex plan --tenant acme --chunker recursive-200@1
    """
    from ragindex.api import Prices

    p = ctx.tenant(tenant).plan(source=source, chunker=chunker, prices=Prices.load(prices), rescan=rescan, rebuild=rebuild,
                                progress=not as_json, accept_model_drift=accept_model_drift)
    report = p.report()
    if as_json:
        report["skipped"] = [{"where": s.where, "reason": s.reason} for s in p.skipped]
    _emit(report, as_json, _print_plan)
    if not as_json:
        _skipped_summary(p.skipped)


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
@accept_drift_option
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
    as it was. With $DAGSTER_HOME set, the run (the same one, not a Dagster job)
    is then reported to that instance: its materializations, data versions and
    checks show in the UI under the tenant's partition.

    Example: ragindex reindex --tenant acme --source ./docs --max-cost 0.10
    """
    from ragindex.api import Budget, Prices
    from ragindex.errors import BudgetExceeded, ChecksFailed, MassDeletion
    from ragindex.instance import configured

    try:
        result = ctx.tenant(tenant).reindex(source=source, chunker=chunker, prices=Prices.load(prices),
                                            budget=Budget(budget_tokens, max_cost), progress=not as_json, wait=wait,
                                            rescan=rescan, rebuild=rebuild, allow_deletions=allow_deletions,
                                            accept_model_drift=accept_model_drift)
    except (ChecksFailed, BudgetExceeded, MassDeletion) as exc:
        if configured():
            _report_to_dagster("refused", tenant, exc)  # the failed check shows in the UI; the exit code is the same
        if isinstance(exc, ChecksFailed):
            fail(f"{exc}. The live generation is unchanged; the candidate stays on disk for inspection.",
                 EXIT_CHECK, "checks failed", as_json)
        if isinstance(exc, MassDeletion):
            raise  # exit 7 (ragindex.errors.EXIT_CODES)
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
    out, skipped = result.to_dict(), result.skipped
    if configured():
        out["dagster_reported"] = _report_to_dagster("run", result.tenant, result)

    def human(o):
        led, ch = o["ledger"], o["changes"]
        if o["status"] == "unchanged":
            click.echo(f"tenant {o['tenant']}: unchanged; generation {o['generation']} stays live "
                       f"({ch['files_seen']} files checked, {ch['files_read']} read, nothing written)")
        else:
            click.echo(f"tenant {o['tenant']}: generation {o['generation']} is live")
            click.echo(f"  documents new {ch['docs_new']}, changed {ch['docs_changed']}, deleted {ch['docs_deleted']}, "
                       f"unchanged {ch['docs_unchanged']} ({ch['files_read']} of {ch['files_seen']} files read)")
            _print_conversions(o["plan"].get("conversions") or {})
            click.echo(f"  embedded {led['texts']} texts, {led['tokens']:,} tokens in {led['seconds']:.2f} s "
                       f"({_usd(led['cost_usd'], o['plan'])}); {o['plan']['vectors_reused']} vectors reused from cache")
            click.echo(f"  wrote {o['bytes_written'] / 1e6:.2f} MB" + (f" (segment {o['segment']})" if o.get("segment") else ""))
            for m in (o.get("maintenance") or {}).get("merges", []):
                click.echo(f"  merged {len(m['inputs'])} segment(s) into {m['segment']}: {m['reason']}")
        if o.get("dagster_reported"):
            click.echo(f"  reported to the Dagster instance in {os.environ['DAGSTER_HOME']} (partition {o['tenant']})")
        _skipped_summary(skipped)

    _emit(out, as_json, human)


def _report_to_dagster(what: str, tenant: str, done) -> bool:
    """Report a finished (``what="run"``) or refused run to $DAGSTER_HOME's instance; a failure to report is a
    warning, never a different exit code: the run itself is over, and its result stands."""
    from ragindex.instance import report_refused, report_run

    try:
        return report_run(done) if what == "run" else report_refused(tenant, done)
    except Exception as exc:  # noqa: BLE001 - an unreachable or broken instance must not fail a finished run
        click.echo(f"warning: could not report the run to the Dagster instance in {os.environ.get('DAGSTER_HOME')} "
                   f"({type(exc).__name__}: {exc}); the run's result stands", err=True)
        return False


@main.command()
@tenant_option
@click.argument("query", type=query_type)
@click.option("-k", default=5, show_default=True, type=hits_type, help="Number of hits (1 to 1000).")
@click.option("--mode", type=click.Choice(list(SEARCH_MODES)),
              help="dense (embeddings), bm25 (words), hybrid (both, fused) or hybrid-ctx (hybrid, with BM25 over "
                   "each chunk and its neighbours in its document); default: the tenant's.")
@click.option("--filter", "filter_", metavar="JSON",
              help='Only chunks whose document matches, e.g. \'{"team": "search", "year": {">": 2020}}\' or '
                   '\'{"path": {"prefix": "guides/"}}\', or whose page does: \'{"path": "handbook.pdf", "page": {"<=": 10}}\' '
                   '(operators: == != in not_in < <= > >= exists prefix glob; and/or/not).')
@json_option
@pass_ctx
@_errors
def search(ctx, tenant, query, k, mode, filter_, as_json):
    """Search one tenant's live generation.

    Example: ragindex search --tenant acme "atomic promote" -k 3
    """
    hits = ctx.api.tenant(tenant).search(query, k, mode, filter_)  # no model is loaded for bm25 (--mode or the tenant's)

    def human(hits):
        for h in hits:
            where = ""
            if h["page"] is not None:
                where = f"  p. {h['page']}" + (f"-{h['page_end']}" if h["page_end"] not in (None, h["page"]) else "")
            click.echo(f"{h['rank']}. {h['score']:.3f}  {h['doc_id']}{where} [{h['start']}:{h['end']}]")
            if h["heading_path"]:
                click.echo("   § " + " > ".join(h["heading_path"]))
            click.echo("   " + " ".join(h["text"].split())[:200])

    _emit([h.to_dict() for h in hits], as_json, human)


@main.command()
@tenant_option
@json_option
@pass_ctx
@_errors
def status(ctx, tenant, as_json):
    """Cache size, hit rate, ledger totals and spend per calendar month of a tenant.

    While a reindex runs, the cache figures read "busy, retry" (the live generation is still shown).

    Example: ragindex status --tenant acme --json
    """
    out = ctx.api.tenant(tenant).status()

    def human(o):
        click.echo(f"tenant {o['tenant']}: live generation {o['generation'] or '(none)'}")
        if o.get("cache", {}).get("busy"):
            click.echo(f"  cache   {o['cache']['message']}")
        elif "cache" in o:
            c, led = o["cache"], o["ledger"]
            click.echo(f"  cache   {c['vectors']} vectors in {c['key_spaces']} model key space(s), {c['bytes'] / 1e6:.1f} MB")
            click.echo(f"  ledger  {led['runs']} runs: {led['texts']} texts, {led['tokens']:,} tokens, {led['seconds']:.1f} s, ${led['cost_usd']:.6f}")
            if led.get("tokens_billed") or led.get("tokens_possibly_billed"):
                click.echo(f"  tokens  planned {led['planned_tokens']:,}, billed {led['tokens_billed']:,}, possibly billed "
                           f"{led['tokens_possibly_billed']:,} (answers lost after sending: counted as billed and against "
                           "the budget)")
            click.echo(f"  hit rate {o['hit_rate']:.1%} of texts looked up were already cached" if o["hit_rate"] is not None else "  hit rate n/a")
            for m in o["spend_by_month"]:
                billed = f", {m['tokens_billed']:,} billed by the API" if m["tokens_billed"] else ""
                if m.get("tokens_possibly_billed"):
                    billed += f" + {m['tokens_possibly_billed']:,} possibly billed"
                click.echo(f"  {m['month']}  {m['runs']} runs, {m['texts']} texts, {m['tokens']:,} tokens{billed}: ${m['cost_usd']:.6f}")

    _emit(out, as_json, human)
