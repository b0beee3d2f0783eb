"""``ragindex generations | rollback | gc | verify``: the lifecycle of a tenant's index generations."""

from __future__ import annotations

import sys

import click

from pipeline.cli import EXIT_CHECK, _emit, _errors, json_option, main, pass_ctx, tenant_option, wait_option


@main.command()
@tenant_option
@json_option
@pass_ctx
@_errors
def generations(ctx, tenant, as_json):
    """List a tenant's generations, oldest first; the live one is marked.

    Example: ragindex generations --tenant acme --json
    """
    from pipeline.generations import describe

    rows = describe(ctx.store.require(tenant))
    _emit(rows, as_json, lambda rows: click.echo("\n".join(
        f"{'*' if r['live'] else ' '} {r['generation']}  {r.get('chunker') or '?':<18} {r.get('index_type') or '?':<10} "
        f"{r.get('vectors') if r.get('vectors') is not None else '?':>8} vectors  {r.get('error') or ''}" for r in rows) or "no generations"))


@main.command()
@tenant_option
@click.option("--to", "to", help="Generation id to make live (default: the one before the live one).")
@wait_option
@json_option
@pass_ctx
@_errors
def rollback(ctx, tenant, to, wait, as_json):
    """Make an earlier generation live again (atomic CURRENT switch; nothing is deleted).

    Example: ragindex rollback --tenant acme --to 20261127T101500000000Z-1a2b3c4d
    """
    from pipeline.generations import rollback as do_rollback
    from pipeline.index import current_id
    from pipeline.locking import tenant_lock

    paths = ctx.store.require(tenant)
    before = current_id(paths)
    with tenant_lock(paths.lock, wait=wait):
        gen = do_rollback(paths, to)
    _emit({"tenant": tenant, "from": before, "to": gen}, as_json, lambda o: click.echo(f"tenant {tenant}: {o['from']} -> {o['to']} is live"))


@main.command()
@tenant_option
@click.option("--keep", required=True, type=click.IntRange(min=1), help="Newest generations to keep.")
@wait_option
@json_option
@pass_ctx
@_errors
def gc(ctx, tenant, keep, wait, as_json):
    """Delete old generations; never the live one or the one before it.

    Example: ragindex gc --tenant acme --keep 3
    """
    from pipeline.generations import gc as do_gc
    from pipeline.locking import tenant_lock

    paths = ctx.store.require(tenant)
    with tenant_lock(paths.lock, wait=wait):
        removed = do_gc(paths, keep)
    _emit({"tenant": tenant, "removed": removed}, as_json, lambda o: click.echo(f"removed {len(removed)}: {', '.join(removed) or '-'}"))


@main.command()
@tenant_option
@click.option("--repair", is_flag=True, help="Rebuild damaged generations from the embedding cache (no re-embedding).")
@wait_option
@json_option
@pass_ctx
@_errors
def verify(ctx, tenant, repair, wait, as_json):
    """Check manifest <-> file checksums <-> FAISS ntotal <-> ids <-> cache for every generation.

    Exits 5 when something is damaged (before repair).

    Example: ragindex verify --tenant acme --repair
    """
    from contextlib import nullcontext

    from pipeline.generations import verify as do_verify
    from pipeline.locking import tenant_lock

    paths = ctx.store.require(tenant)
    with tenant_lock(paths.lock, wait=wait) if repair else nullcontext():
        report = do_verify(paths, repair=repair)

    def human(r):
        for p in r["problems"]:
            click.echo(f"PROBLEM {p}")
        for g in r["generations"]:
            state = "ok" if g["ok"] else "DAMAGED: " + "; ".join(g["problems"])
            extra = f" -> repaired as {g['repaired_as']}" if g["repaired_as"] else ""
            click.echo(f"{'*' if g['live'] else ' '} {g['generation']}  {state}{extra}")
        click.echo(f"live: {r['current_after']}" + ("" if r["ok"] else "  (problems found)"))

    _emit(report, as_json, human)
    if not report["ok"]:
        sys.exit(EXIT_CHECK)
