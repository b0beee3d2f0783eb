"""Issue 23 (Hardening II), the CLI edges: keys beside a writer (item 9), user input is never "a bug" (item 22),
``--json`` on every command (item 23), and the CLI checks arguments with the library's own functions (item 26)."""

from __future__ import annotations

import json

import click
import pytest

from ragindex.cli import main
from ragindex.store import keys
from ragindex.store.writer import TenantWriter
from tests.support.cli import ragindex


def _leaves(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _leaves(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _one_line_error(res) -> str:
    """The error line a failed command printed (exactly one, no traceback, never "this is a bug"); a usage
    error has click's usage and help lines above it."""
    lines = [line for line in res.stderr.splitlines() if line.lower().startswith("error")]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.output and "this is a bug" not in res.output and "--debug" not in res.output
    return lines[0]


# -- item 9: keys are not index state --------------------------------------------------------------


def test_a_key_is_revoked_at_once_while_the_tenants_writer_is_held(store, indexed_folder):
    key, rec = keys.create(store, "acme", "frontend")
    assert keys.check(store, "acme", key)
    with TenantWriter(store, "acme"):  # a reindex holds the writer lock (for an hour, say)
        res = ragindex("keys", "revoke", "-t", "acme", rec.id, "--json")
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["revoked_at"]
        assert not keys.check(store, "acme", key)  # the next request with it is refused, while the writer still runs
        made = ragindex("keys", "create", "-t", "acme", "--json")
        assert made.exit_code == 0 and keys.check(store, "acme", json.loads(made.stdout)["key"])


# -- item 22: user input is not a bug ------------------------------------------------------------


@pytest.mark.parametrize("query", ["caf\udce9 \udcff", "", "   "])
def test_search_with_undecodable_bytes_or_an_empty_query_is_a_one_line_usage_error(store, indexed_folder, query):
    res = ragindex("search", "-t", "acme", query)  # argv bytes that are not UTF-8 reach Python as lone surrogates
    assert res.exit_code == 2
    assert "query" in _one_line_error(res)


def test_search_with_undecodable_bytes_and_json_is_a_json_error(store, indexed_folder):
    res = ragindex("search", "-t", "acme", "caf\udce9", "--json")
    assert res.exit_code == 2
    err = json.loads(res.stdout)["error"]
    assert err["kind"] == "usage" and "query is not valid text: a lone surrogate at character 3" in err["message"]


@pytest.mark.parametrize("k", ["0", "-3", "1001", "two"])
def test_search_k_is_checked_by_the_librarys_function(store, indexed_folder, k):
    res = ragindex("search", "-t", "acme", "cells", "-k", k)
    assert res.exit_code == 2 and "-k" in _one_line_error(res)


def test_tenants_add_with_a_source_of_the_wrong_kind_is_one_line_not_a_bug(store, tmp_path):
    csv = tmp_path / "table.csv"
    csv.write_text("a,b\n1,2\n")
    res = ragindex("tenants", "add", "newco", "--source", str(csv))
    assert res.exit_code == 1 and "table.csv" in _one_line_error(res)
    assert not store.exists("newco") or not store.paths("newco").settings_file.exists()


# -- item 23: --json on every command --------------------------------------------------------------


def test_every_command_takes_json():
    leaves = list(_leaves(main))
    assert len(leaves) > 20
    missing = []
    for path, cmd in leaves:
        res = ragindex(*path, "--help")
        assert res.exit_code == 0, (path, res.output)
        if "--json" not in res.output or not any("--json" in p.opts for p in cmd.params):
            missing.append(" ".join(path))
    assert not missing, f"commands without --json: {missing}"


def test_tenants_add_json_prints_the_settings(store, tmp_path):
    src = tmp_path / "docs"
    src.mkdir()
    res = ragindex("tenants", "add", "newco", "--source", str(src), "--mode", "bm25", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["tenant"] == "newco" and out["source"] == str(src.resolve()) and out["mode"] == "bm25" and out["chunker"]
    assert out["dagster_partition_registered"] is False


def test_schemas_init_and_lock_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = ragindex("schemas", "init", str(tmp_path / "schemas"), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["directory"] == str(tmp_path / "schemas") and out["schemas"] and all(s.endswith(".toml") for s in out["schemas"])
    again = ragindex("schemas", "init", str(tmp_path / "schemas"), "--json")
    assert again.exit_code == 1 and "already holds a chunkers.lock" in json.loads(again.stdout)["error"]["message"]
    monkeypatch.setenv("RAGINDEX_SCHEMAS", str(tmp_path / "schemas"))
    locked = ragindex("schemas", "lock", "--json")
    assert locked.exit_code == 0, locked.output
    assert json.loads(locked.stdout) == {"published": []}


def test_serve_json_prints_its_startup_line_and_errors_as_json(store, monkeypatch):
    from ragindex.errors import MissingExtra
    from ragindex.serve import app

    calls = []
    if hasattr(app, "listen"):  # the command binds first (a port in use fails before the model loads)
        monkeypatch.setattr(app, "listen", lambda host, port, *a, **kw: ("socket", host, port))
    monkeypatch.setattr(app, "serve", lambda rx, *a, **kw: calls.append(kw))
    res = ragindex("serve", "--port", "8123", "--json")
    assert res.exit_code == 0, res.output
    line = json.loads(res.stdout)
    assert line["url"] == "http://127.0.0.1:8123" and line["docs"] == "http://127.0.0.1:8123/docs"
    assert line["home"] == str(store.root) and len(calls) == 1

    def missing(rx, *a, **kw):
        raise MissingExtra("ragindex serve needs the [serve] extra: pip install 'ragindex[serve]'")

    monkeypatch.setattr(app, "serve", missing)
    res = ragindex("serve", "--json")
    assert res.exit_code == 1
    startup, _, error = res.stdout.partition("\n{")  # the startup line comes first, then the error object
    assert json.loads(startup)["url"] == "http://127.0.0.1:8080"
    err = json.loads("{" + error)["error"]
    assert err["kind"] == "missing extra" and "[serve]" in err["message"]


def test_the_cli_offers_every_search_mode_and_no_other():
    from ragindex.cli.root import SEARCH_MODES
    from ragindex.search.hybrid import MODES

    assert SEARCH_MODES == MODES
