"""Issue 13, the CLI: numbers that would defeat a budget are refused at parse time, and every failure is one
honest line (or, with --json, a JSON error object), never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.cli import ragindex
from tests.support.tenants import register


@pytest.mark.parametrize("args", [["--max-cost", "nan"], ["--max-cost", "inf"], ["--max-cost", "-1"], ["--wait", "nan"],
                                  ["--budget-tokens", "nan"]])
def test_non_finite_numbers_are_rejected_at_parse_time(store, indexed_folder, args):
    folder, _ = indexed_folder
    res = ragindex("reindex", "-t", "acme", "--source", str(folder), *args)
    assert res.exit_code == 2 and ("not a finite number" in res.output or "is below" in res.output or "not a valid integer" in res.output)


def test_a_bad_price_table_or_tenant_file_is_one_line_not_a_traceback(store, indexed_folder, tmp_path):
    folder, _ = indexed_folder
    prices = tmp_path / "prices.toml"
    prices.write_text("self_hosted = [1, 2]\n")
    res = ragindex("plan", "-t", "acme", "--source", str(folder), "--prices", str(prices))
    assert res.exit_code == 1 and "bad price table" in res.output and "Traceback" not in res.output
    register(store, "other", __import__("ragindex.store.tenants", fromlist=["TenantSettings"]).TenantSettings(source=str(folder)))
    store.paths("other").settings_file.write_text("{ not json")
    res = ragindex("tenants", "list", "--json")
    assert res.exit_code == 0
    rows = {r["tenant"]: r for r in json.loads(res.stdout)}
    assert rows["acme"]["error"] is None and "unreadable tenant settings" in rows["other"]["error"]


@pytest.mark.parametrize("args", [["search", "-t", "nobody", "x"], ["status", "-t", "nobody"], ["generations", "-t", "nobody"],
                                  ["plan", "-t", "nobody"], ["verify", "-t", "nobody"], ["reindex", "-t", "nobody"]])
def test_json_failures_print_a_json_error_object(store, args):
    res = ragindex(*args, "--json")
    assert res.exit_code == 1
    err = json.loads(res.stdout)["error"]
    assert err["exit_code"] == 1 and err["kind"] == "tenant" and "nobody" in err["message"]


def test_a_usage_error_with_json_is_a_json_error_too():
    env = {**os.environ, "RAGINDEX_MODEL": "hash"}
    p = subprocess.run([sys.executable, "-m", "ragindex.cli", "search", "-t", "acme", "--json"], env=env, capture_output=True, text=True)
    assert p.returncode == 2 and json.loads(p.stdout)["error"] == {"kind": "usage", "message": "Missing argument 'QUERY'.",
                                                                   "exit_code": 2}
