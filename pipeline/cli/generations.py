"""``ragindex generations | rollback | migrate | gc | compact | verify``: the lifecycle of a tenant's index generations."""

from __future__ import annotations

import sys

import click

from ragindex.cli.root import (
    EXIT_BUDGET,
    EXIT_CHECK,
    EXIT_REPAIRED,
    SEARCH_MODES,
    FiniteFloat,
    _emit,
    _errors,
    _print_plan,
    fail,
    json_option,
    main,
    pass_ctx,
    tenant_option,
    wait_option,
)


@main.command()
@tenant_option
@json_option
@pass_ctx
@_errors
def generations(ctx, tenant, as_json):
    """List a tenant's generations, oldest first; the live one is marked.

    Example: ragindex generations --tenant acme --json
    """
    rows = ctx.tenant(tenant).generations()
    _emit(rows, as_json, lambda rows: click.echo("\n".join(
        f"{'*' if r['live'] else ' '} {r['generation']}  {r.get('kind') or '?':<6} {r.get('chunker') or '?':<18} "
        f"{r.get('index_type') or '?':<16} {r.get('vectors') if r.get('vectors') is not None else '?':>8} vectors "
        f"in {r.get('segments', '?')} segment(s)  {r.get('error') or ''}" for r in rows) or "no generations"))


@main.command()
@tenant_option
@click.option("--to", "to", help="Generation id to make live (default: the one before the live one).")
@wait_option
@json_option
@pass_ctx
@_errors
def rollback(ctx, tenant, to, wait, as_json):
    """Make an earlier generation live again (atomic CURRENT switch; nothing is deleted).

    A tenant's schema and search mode are those of its live generation, so they
    change with it: a rollback after `ragindex migrate` undoes the migration.

    Example: ragindex rollback --tenant acme --to 20261127T101500000000Z-1a2b3c4d
    """
    out = ctx.tenant(tenant).rollback_report(to, wait=wait)
    chunker, mode = out["chunker"], out["mode"]
    _emit(out, as_json,
          lambda o: click.echo(f"tenant {tenant}: {o['from']} -> {o['to']} is live ({chunker}, {mode})"))


@main.command()
@tenant_option
@click.option("--to", "to", required=True, help="Chunker schema NAME@VERSION to move the tenant to.")
@click.option("--mode", type=click.Choice(list(SEARCH_MODES)), help="Search mode to move to (default: keep the tenant's; a tenant on a default configuration moving "
                   "to another default schema gets that schema's mode, e.g. default@2 hybrid -> default@3 hybrid-ctx).")
@click.option("--accept-regression", metavar="WHY", help="Promote even if the tenant's eval set scores worse; the reason is recorded.")
@click.option("--budget-tokens", type=click.IntRange(min=0), help="Refuse to embed more model tokens than this.")
@click.option("--max-cost", type=FiniteFloat(0), help="Refuse if the estimated cost (USD) is higher.")
@click.option("--dry-run", is_flag=True, help="Only show what the migration would embed and cost.")
@wait_option
@json_option
@pass_ctx
@_errors
def migrate(ctx, tenant, to, mode, accept_regression, budget_tokens, max_cost, dry_run, wait, as_json):
    """Move a tenant to another chunker schema (and search mode), like a database migration.

    Plans the re-embedding (every cached vector whose text is unchanged is reused),
    builds the new generation beside the live one, scores both on the tenant's eval
    set if it has one, and promotes only if not worse (or with --accept-regression);
    then pins the tenant to the new schema and mode. `ragindex rollback` undoes it.
    Exit 3 over budget, 5 if the new generation scored worse (nothing changed).

    Example: ragindex migrate --tenant acme --to default@3 --max-cost 0.10
    """
    from ragindex.errors import BudgetExceeded, ChecksFailed

    t = ctx.tenant(tenant)
    if dry_run:
        _emit(t.plan_migration(to, mode=mode).report(), as_json, _print_plan)
        return
    try:
        result = t.migrate(to, mode=mode, accept_regression=accept_regression, budget_tokens=budget_tokens,
                           max_cost=max_cost, wait=wait, progress=not as_json)
    except BudgetExceeded as exc:
        fail(f"over budget: {'; '.join(exc.reasons)}. Nothing was changed.", EXIT_BUDGET, "over budget", as_json)
    except ChecksFailed as exc:
        fail(f"{exc}. The live generation and the tenant's schema are unchanged; pass --accept-regression WHY to "
             "promote it anyway.", EXIT_CHECK, "checks failed", as_json)
    out = result.to_dict() | {"chunker": to, "mode": t.settings.mode}
    _emit(out, as_json, lambda o: click.echo(
        f"tenant {tenant}: migrated to {to} ({o['mode'] or 'default mode'}); generation {o['generation']} is live; "
        f"embedded {o['ledger']['texts']} texts, reused {o['plan']['vectors_reused']} cached vectors"))


@main.command()
@tenant_option
@click.option("--keep", type=click.IntRange(min=1), help="Newest generations to keep (default: the tenant's setting, else 5).")
@wait_option
@json_option
@pass_ctx
@_errors
def gc(ctx, tenant, keep, wait, as_json):
    """Delete old generations, then every segment and deletion file no kept generation uses.

    Never deletes the live generation or the one a rollback would return to.
    Every reindex already runs it with the default retention.

    Example: ragindex gc --tenant acme --keep 3
    """
    removed = ctx.tenant(tenant).gc(keep, wait=wait)
    _emit({"tenant": tenant, "removed": removed}, as_json, lambda o: click.echo(f"removed {len(removed)}: {', '.join(removed) or '-'}"))


@main.command()
@tenant_option
@wait_option
@json_option
@pass_ctx
@_errors
def compact(ctx, tenant, wait, as_json):
    """Merge every segment of the live generation into one, dropping deleted rows (nothing is re-embedded).

    Reindexes merge segments on their own when the merge policy says so (many
    small segments, or more than 20% of a segment deleted); this forces it, e.g.
    before a benchmark or after a large deletion. The merged generation has the
    same content; the previous one stays for rollback until gc removes it.

    Example: ragindex compact --tenant acme
    """
    done = ctx.tenant(tenant).compact(wait=wait)
    out = {"tenant": tenant, **done.to_dict()}
    _emit(out, as_json, lambda o: click.echo(
        f"tenant {tenant}: " + (f"merged {len(o['merges'][0]['inputs'])} segment(s) into {o['merges'][0]['segment']} "
                                f"({o['merges'][0]['rows']} rows), generation {o['merges'][0]['generation']} is live"
                                if o["merges"] else "already one segment without deleted rows; nothing to do")))


@main.command()
@tenant_option
@click.option("--repair", is_flag=True, help="Fix what can be fixed without re-embedding (see below).")
@wait_option
@json_option
@pass_ctx
@_errors
def verify(ctx, tenant, repair, wait, as_json):
    """Check CURRENT, every generation, every segment (checksums, counts), deletion files and the cache.

    \b
    --repair rebuilds a damaged segment file from the cache or the source, refills
    a missing or corrupt cache from the segments, moves aside generations it
    cannot make whole and points CURRENT at the newest intact one. It never
    re-embeds.
    \b
    Exit codes: 0 everything is intact; 6 damage was found and repaired (a plain
    verify now exits 0); 5 damage found (without --repair), damage remains after
    repair, or a generation had to be moved aside ("partly repaired").

    Example: ragindex verify --tenant acme --repair
    """
    report = ctx.tenant(tenant).verify(repair=repair, wait=wait)

    def human(r):
        for p in r["problems"]:
            click.echo(f"PROBLEM {p}")
        for g in r["generations"]:
            state = "ok" if g["ok"] else "DAMAGED: " + "; ".join(g["problems"])
            click.echo(f"{'*' if g['live'] else ' '} {g['generation']}  {state}")
        for line in r["repairs"]:
            click.echo(f"REPAIRED {line}")
        click.echo(f"live: {r['current_after']}  status: {r['status']}")

    _emit(report, as_json, human)
    if report["status"] == "repaired":
        sys.exit(EXIT_REPAIRED)
    if report["status"] != "ok":
        sys.exit(EXIT_CHECK)
