"""One import name, no import cycles, no path into the checkout, and nothing written into the installed package."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.layout.imports import REPO, cycles, graph, modules


def test_the_cycle_detector_finds_a_cycle_and_reads_real_edges():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    g = graph(top_level_only=True)
    assert "ragindex.cli.root" in g["ragindex.cli.indexing"]  # a command module imports the shared helpers
    assert "ragindex.chunkers.cluster" in g["ragindex.chunkers.registry"]


def test_no_import_cycle_in_the_product_packages():
    for top_level_only in (True, False):  # module-level imports, and the lazy ones inside functions too
        found = cycles(graph(top_level_only))
        assert not found, f"import cycles ({'module level' if top_level_only else 'any level'}): {found}"


def test_the_cli_helpers_are_imported_from_their_own_module_not_from_the_package():
    g = graph(top_level_only=False)
    for name in g:
        if name.startswith("ragindex.cli.") and name not in ("ragindex.cli.root", "ragindex.cli.__main__"):
            assert "ragindex.cli" not in g[name], f"{name} imports ragindex.cli (the package assembling the commands)"


def test_product_code_never_finds_files_relative_to_the_checkout():
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        assert ".parents[" not in text, f"{name} resolves a path from its own location ({path})"


def test_benchmarks_do_not_import_tests():
    for path in (REPO / "benchmarks").rglob("*.py"):
        if ".work" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "tests" or n.startswith("tests.") for n in names), f"{path} imports the tests"


def _run(args, cwd: Path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, **env}
    full.pop("RAGINDEX_SCHEMAS", None)
    full.pop("RAGINDEX_BASELINES", None)
    full.pop("PYTHONPATH", None)
    return subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True, timeout=300)


def test_application_modules_named_like_ours_do_not_break_ragindex(tmp_path):
    # An application with its own `schemas`, `pipeline` and `chunkers` modules, run from its directory
    # (which is first on sys.path): ragindex must still import and work.
    for mod in ("schemas", "pipeline", "chunkers"):
        (tmp_path / f"{mod}.py").write_text(f"raise ImportError('the application module {mod} was imported')\n")
    code = (
        "from ragindex.schemas import SchemaRegistry\n"
        "from ragindex.api import Ragindex\n"
        "from ragindex.chunkers import build_chunker\n"
        "print(sorted(SchemaRegistry().files())[0])\n"
    )
    res = _run([sys.executable, "-c", code], tmp_path)
    assert res.returncode == 0, res.stderr
    cli = _run([str(Path(sys.executable).with_name("ragindex")), "schemas", "list", "--json"], tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert "default@1" in {r["ref"] for r in json.loads(cli.stdout)}


def test_outside_a_project_the_shipped_schemas_and_baselines_are_read_only(tmp_path):
    res = _run([str(Path(sys.executable).with_name("ragindex")), "eval", "record", "--schema", "default@1"], tmp_path,
               RAGINDEX_HOME=str(tmp_path / "home"))
    assert res.returncode == 1
    assert "would write into the installed package" in res.stderr
    assert not (tmp_path / "home" / "eval").exists(), "it refused before evaluating anything"


def test_schemas_init_makes_a_project_whose_lock_is_writable(tmp_path):
    exe = str(Path(sys.executable).with_name("ragindex"))
    assert _run([exe, "schemas", "init"], tmp_path).returncode == 0
    assert (tmp_path / "schemas" / "chunkers.lock").is_file()
    (tmp_path / "schemas" / "chunkers" / "mine.v1.toml").write_text('kind = "recursive"\ntokenizer = "cl100k_base"\nsize = 128\n')
    locked = _run([exe, "schemas", "lock"], tmp_path)
    assert locked.returncode == 0 and "mine@1" in locked.stdout, locked.stderr
    assert '"mine@1"' in (tmp_path / "schemas" / "chunkers.lock").read_text()
    again = _run([exe, "schemas", "init"], tmp_path)
    assert again.returncode != 0 and "already holds" in again.stderr
