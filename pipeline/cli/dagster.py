"""``ragindex dagster postgres up | down | url | env``: the local Postgres server of a Postgres-backed Dagster instance.

The instance configuration is dagster_home/postgres/dagster.yaml (run queue, pool,
storage from ``DAGSTER_PG_URL``); these commands start and stop the server it points
at (:class:`ragindex.postgres.LocalPostgres`), in ``--folder`` (default
``$RAGINDEX_HOME/postgres``).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

from ragindex.cli.root import _emit, _errors, json_option, main
from ragindex.postgres import LocalPostgres, default_folder

DEFAULT_MAX_CONCURRENT_RUNS = 4

folder_option = click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
                             help="Folder of the cluster, socket and log (default: $RAGINDEX_HOME/postgres). As root, "
                                  "a folder the `postgres` user can reach.")
port_option = click.option("--port", type=click.IntRange(1, 65535), default=5432, show_default=True,
                           help="Port number of the unix socket (no TCP listener).")


def server_options(fn):
    """--folder and --port: which server a command means."""
    return folder_option(port_option(fn))


def _server(folder: Path | None, port: int) -> LocalPostgres:
    return LocalPostgres(folder or default_folder(), port=port)


@main.group()
def dagster():
    """The Dagster instance: a local Postgres server for dagster_home/postgres/dagster.yaml."""


@dagster.group()
def postgres():
    """Start, stop and locate the Postgres server of a Postgres-backed Dagster instance."""


@postgres.command("up")
@server_options
@json_option
@_errors
def postgres_up(folder, port, as_json):
    """Create the cluster if needed, start the server, create the `dagster` database; prints its URL.

    Example: ragindex dagster postgres up --folder /var/lib/ragindex-pg
    """
    pg = _server(folder, port).up()
    _emit({"url": pg.url(), "folder": str(pg.folder), "log": str(pg.log)}, as_json,
          lambda o: click.echo(f"postgres is up in {o['folder']} (log: {o['log']})\n{o['url']}"))


@postgres.command("down")
@server_options
@json_option
@_errors
def postgres_down(folder, port, as_json):
    """Stop the server; the data stays in the folder for the next `up`.

    Example: ragindex dagster postgres down --folder /var/lib/ragindex-pg
    """
    pg = _server(folder, port)
    stopped = pg.down()
    _emit({"stopped": stopped, "folder": str(pg.folder)}, as_json,
          lambda o: click.echo(f"postgres in {o['folder']} " + ("stopped" if o["stopped"] else "was not running")))


@postgres.command("url")
@server_options
@json_option
@_errors
def postgres_url(folder, port, as_json):
    """Print the storage URL (postgresql+psycopg2 over the unix socket) for DAGSTER_PG_URL.

    Example: export DAGSTER_PG_URL="$(ragindex dagster postgres url)"
    """
    _emit({"url": _server(folder, port).url()}, as_json, lambda o: click.echo(o["url"]))


@postgres.command("env")
@server_options
@json_option
@_errors
def postgres_env(folder, port, as_json):
    """Start the server and print the shell exports the Postgres instance reads: eval "$(ragindex dagster postgres env)".

    RAGINDEX_MAX_CONCURRENT_RUNS keeps its value if set (default 4).

    Example: eval "$(ragindex dagster postgres env)"; DAGSTER_HOME=$PWD/dagster_home/postgres dagster dev
    """
    pg = _server(folder, port).up()
    env = {"DAGSTER_PG_URL": pg.url(),
           "RAGINDEX_MAX_CONCURRENT_RUNS": os.environ.get("RAGINDEX_MAX_CONCURRENT_RUNS") or str(DEFAULT_MAX_CONCURRENT_RUNS)}
    _emit(env, as_json, lambda o: click.echo("\n".join(f"export {k}={shlex.quote(v)}" for k, v in o.items())))
