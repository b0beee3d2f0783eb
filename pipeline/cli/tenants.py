"""``ragindex tenants add | list | remove``: who is indexed, from where, with what."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

import click

from ragindex.cli.root import EXIT_ERROR, SEARCH_MODES, _emit, _errors, fail, json_option, main, pass_ctx, wait_option
from ragindex.schemas.registry import DEFAULT_SCHEMA


@main.group()
def tenants():
    """Register tenants (one directory, cache and index each)."""


@tenants.command("add")
@click.argument("tenant")
@click.option("--source", required=True, type=click.Path(exists=True, path_type=Path), help="Folder, .jsonl or .parquet file.")
@click.option("--chunker", help=f"Schema NAME@VERSION for a new tenant (default: {DEFAULT_SCHEMA}). A tenant with a live "
                                "generation is pinned to that generation's schema: move it with `ragindex migrate`.")
@click.option("--eval-set", help="Eval set (preset name or path) scored before each promotion; none by default.")
@click.option("--model", "tenant_model", help="The tenant's embedding model (e.g. openai:text-embedding-3-small); "
                                             "default: the bundled all-MiniLM-L6-v2.")
@click.option("--dimensions", "tenant_dimensions", type=click.IntRange(min=1), help="Output dimensions of a hosted model.")
@click.option("--mode", type=click.Choice(list(SEARCH_MODES)),
              help="The tenant's default search mode (default: the default configuration's); for a live tenant, "
                   "`ragindex migrate --mode` changes it.")
@json_option
@pass_ctx
@_errors
def tenants_add(ctx, tenant, source, chunker, eval_set, tenant_model, tenant_dimensions, mode, as_json):
    """Register TENANT with its source and chunker schema (and, with $DAGSTER_HOME set, as a Dagster partition).

    The source must be a folder, a .jsonl or .parquet file, or a document; nothing is saved otherwise.

    Example: ragindex tenants add acme --source ./acme-docs --chunker markdown@1
    """
    if tenant_dimensions and not (tenant_model or "").startswith("openai:"):
        raise click.UsageError("--dimensions applies to a hosted model (--model openai:MODEL)")
    from ragindex.instance import register_partition

    s = ctx.tenant(tenant).add(source, chunker=chunker, eval_set=eval_set, model=tenant_model, dimensions=tenant_dimensions,
                               mode=mode)
    registered = register_partition(tenant)
    out = {"tenant": tenant, **asdict(s), "dagster_partition_registered": registered}
    _emit(out, as_json, lambda o: click.echo(
        f"tenant {tenant}: source {o['source']}, chunker {o['chunker']}"
        + (f", model {tenant_model}" if tenant_model else "")
        + (f", eval set {eval_set}" if eval_set else "")
        + (f", search mode {mode}" if mode else "")
        + (f"; partition registered in {os.environ['DAGSTER_HOME']}" if registered else "")))


@tenants.command("list")
@json_option
@pass_ctx
@_errors
def tenants_list(ctx, as_json):
    """List tenants with source, chunker and live generation.

    Example: ragindex tenants list --json
    """
    rows = ctx.api.overview()
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
    ctx.store.paths(tenant)  # a bad name fails before any question is asked
    if not yes:
        if not sys.stdin.isatty():
            fail(f"removing tenant {tenant} deletes all its files; pass --yes to confirm", EXIT_ERROR, "confirmation", as_json)
        click.confirm(f"Delete tenant {tenant} and every file it has (its index, cache and ledger)?", abort=True)
    out = ctx.tenant(tenant).remove(wait=wait)
    _emit(out, as_json, lambda o: click.echo(
        f"tenant {tenant}: removed ({o['files_bytes'] / 1e6:.1f} MB)"
        + ("; Dagster partition removed" if o["dagster_partition_removed"] else "")))
