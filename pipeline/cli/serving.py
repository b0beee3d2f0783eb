"""``ragindex serve`` and ``ragindex keys create | list | revoke``: the HTTP search service and its keys."""

from __future__ import annotations

import json

import click

from ragindex.cli.root import _emit, _errors, json_option, main, pass_ctx, tenant_option


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (127.0.0.1: this machine only).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--log-level", default="warning", show_default=True, type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--max-body-bytes", envvar="RAGINDEX_MAX_BODY_BYTES", default=1 << 20, show_default=True,
              type=click.IntRange(min=1024), help="Largest request body; a longer one gets 413 before it is read.")
@click.option("--metrics-token", envvar="RAGINDEX_METRICS_TOKEN", default=None,
              help="Bearer token /metrics requires (prefer $RAGINDEX_METRICS_TOKEN: a flag shows in `ps`). "
                   "Without one, /metrics answers 404.")
@click.option("--metrics-tenant-labels", envvar="RAGINDEX_METRICS_TENANT_LABELS", is_flag=True,
              help="Label metrics with tenant names and live generation ids (off: no series names a tenant).")
@json_option
@pass_ctx
@_errors
def serve(ctx, host, port, log_level, max_body_bytes, metrics_token, metrics_tenant_labels, as_json):
    """Serve searches over HTTP: warm model, live generations kept loaded, per-tenant API keys.

    \b
    POST /v1/tenants/T/search        {"query": "...", "k": 5, "mode": "hybrid", "filter": {...}}
    POST /v1/tenants/T/search/batch  {"queries": [...], ...}
    GET  /healthz  /readyz  /metrics  /docs
    Send `Authorization: Bearer KEY` with a key from `ragindex keys create --tenant T`
    (checked before the body is read). /metrics needs --metrics-token; it is 404 without.
    Promotions are picked up without a restart; SIGTERM lets requests in flight finish.
    With --json the startup line is a JSON object on stdout, and so is an error.

    Example: ragindex serve --port 8080
    """
    from ragindex.serve.app import listen
    from ragindex.serve.app import serve as run

    sock = listen(host, port)  # first: a port in use is exit 1 with the reason, before the model loads
    url = f"http://{host}:{port}"
    if as_json:
        click.echo(json.dumps({"serving": True, "home": str(ctx.store.root), "url": url, "docs": f"{url}/docs"}))
    else:
        click.echo(f"ragindex serving {ctx.store.root} on {url} (docs at /docs)", err=True)
    run(ctx.api, host=host, port=port, log_level=log_level, sock=sock, max_body_bytes=max_body_bytes,
        metrics_token=metrics_token, metrics_tenant_labels=metrics_tenant_labels)


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
    key, rec = ctx.tenant(tenant).create_key(name)
    _emit({"tenant": tenant, "key": key, **rec}, as_json,
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
    rows = ctx.tenant(tenant).keys()
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
    rec = ctx.tenant(tenant).revoke_key(key_id)
    _emit(rec, as_json, lambda o: click.echo(f"key {o['id']} of tenant {tenant} revoked"))
