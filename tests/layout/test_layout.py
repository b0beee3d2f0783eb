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


def test_tests_do_not_import_benchmarks():
    # Test doubles, fakes and fixtures live in tests/support; the benchmarks may use them, never the reverse.
    for path in (REPO / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "benchmarks" or n.startswith("benchmarks.") for n in names), f"{path} imports the benchmarks"


# Calls that put a folder on the import path, or load a module from a file or by a name held in a string.
PATH_CALLS = {"insert", "append", "extend", "syspath_prepend"}  # sys.path.<...>(), pytest's monkeypatch.syspath_prepend()
LOAD_CALLS = {"spec_from_file_location", "SourceFileLoader", "run_path"}  # importlib.util, importlib.machinery, runpy
NAME_CALLS = {"import_module", "__import__", "run_module"}


def _benchmark_modules() -> set[str]:
    """What ``import <name>`` reaches once benchmarks/ is on sys.path: its scripts and any package in it."""
    bench = REPO / "benchmarks"
    return {p.stem for p in bench.glob("*.py")} | {p.parent.name for p in bench.glob("*/__init__.py")}


def _reaches_benchmarks(rel: str, text: str, bench_modules: set[str]) -> list[str]:
    """How ``text`` (the file ``rel`` under tests/) puts benchmarks/ on sys.path or imports a benchmark module.

    Only absolute imports whose first part is a benchmark module count: ``import serve`` or
    ``from peers import x`` does, ``from ragindex import serve``, ``import ragindex.serve`` or
    ``from .serve import x`` does not.
    """
    tree = ast.parse(text)

    def mentions(node: ast.AST) -> bool:
        return "benchmarks" in ast.unparse(node) or any(isinstance(n, ast.Name) and n.id in tainted for n in ast.walk(node))

    tainted: set[str] = set()  # names bound to a path that mentions benchmarks (BENCH = REPO / "benchmarks")
    assigns = [n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None]
    while True:
        grown = {t.id for n in assigns if mentions(n.value)
                 for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)} - tainted
        if not grown:
            break
        tainted |= grown

    path_names = {"sys.path"} | {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "sys"
                                 for a in n.names if a.name == "path"}  # `from sys import path`

    def is_sys_path(node: ast.AST) -> bool:
        return ast.unparse(node) in path_names

    out = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        for name in names:
            if name.split(".")[0] in bench_modules | {"benchmarks"}:
                out.append(f"{where}: imports {name}, a benchmark module")
        if isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id if isinstance(node.func, ast.Name) else ""
            args = [*node.args, *(k.value for k in node.keywords)]
            on_sys_path = func == "syspath_prepend" or (isinstance(node.func, ast.Attribute) and is_sys_path(node.func.value))
            if func in PATH_CALLS and on_sys_path and any(mentions(a) for a in args):
                out.append(f"{where}: puts benchmarks/ on sys.path: {ast.unparse(node)}")
            if func in LOAD_CALLS and any(mentions(a) for a in args):
                out.append(f"{where}: loads a module from benchmarks/: {ast.unparse(node)}")
            if func in NAME_CALLS and any(isinstance(a, ast.Constant) and isinstance(a.value, str)
                                          and a.value.split(".")[0] in bench_modules | {"benchmarks"} for a in node.args[:1]):
                out.append(f"{where}: imports a benchmark module by name: {ast.unparse(node)}")
        targets = (node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else [])
        for target in targets:  # sys.path[:0] = [...], sys.path += [...]
            path_target = is_sys_path(target) or (isinstance(target, ast.Subscript) and is_sys_path(target.value))
            if path_target and isinstance(target, (ast.Attribute, ast.Subscript)) and mentions(node.value):
                out.append(f"{where}: puts benchmarks/ on sys.path: {ast.unparse(node)}")
    return sorted(out, key=lambda o: int(o.split(":")[1]))


def test_the_benchmark_import_check_sees_each_way_in_and_nothing_else():
    modules_ = {"peers", "serve", "incremental"}
    probe = ('import sys\n'
             'from tests.support.data import REPO\n'
             'sys.path.insert(0, str(REPO / "benchmarks"))\n'
             'import peers  # noqa: E402\n'
             'from serve import main\n'
             'import incremental.sub as inc\n'
             'BENCH = REPO / "benchmarks"\n'
             'HERE = BENCH\n'
             'sys.path.append(str(HERE))\n'
             'sys.path[:0] = [str(BENCH)]\n'
             'def test_x(monkeypatch):\n'
             '    monkeypatch.syspath_prepend(REPO / "benchmarks")\n'
             '    importlib.import_module("peers")\n'
             '    importlib.util.spec_from_file_location("p", BENCH / "peers.py")\n'
             'from benchmarks import peers\n'
             'from sys import path as sp\n'
             'sp.insert(0, BENCH)\n')
    found = _reaches_benchmarks("tests/x/test_probe.py", probe, modules_)
    assert sorted(int(f.split(":")[1]) for f in found) == [3, 4, 5, 6, 9, 10, 12, 13, 14, 15, 17], found
    fine = ('import sys\n'
            'from ragindex import serve\n'
            'import ragindex.serve\n'
            'from ragindex.serve import app\n'
            'from ragindex.indexing import incremental\n'
            'from . import serve\n'
            'from .peers import helper\n'
            'from tests.serve import conftest\n'
            'from tests.support import peers_scenarios as peers\n'
            'from tests.support.data import CHROMA\n'
            'CHROMA_DIR = REPO / "benchmarks" / "data"\n'
            'sys.path.insert(0, str(tmp_path))\n'
            'open(REPO / "benchmarks" / "results" / "peers.json")\n'
            'paths = []\n'
            'paths.append(REPO / "benchmarks" / "peers.py")\n'
            'path = [CHROMA_DIR]\n'
            'path.insert(0, CHROMA_DIR)\n'
            'def test_y(monkeypatch, tmp_path):\n'
            '    """Scenario logic of benchmarks/peers.py; import peers would be wrong."""\n'
            '    monkeypatch.syspath_prepend(tmp_path)\n')
    assert _reaches_benchmarks("tests/x/test_fine.py", fine, modules_) == []
    assert {"peers", "serve", "incremental"} <= _benchmark_modules()


def test_no_test_puts_benchmarks_on_sys_path_or_imports_a_benchmark_module():
    # The stronger form of the check above: `sys.path.insert(0, ".../benchmarks"); import peers` is an import of a
    # benchmark too. Scenario logic a test needs moves to tests/support (see tests/support/peers_scenarios.py).
    bench_modules = _benchmark_modules()
    offences = [o for p in sorted((REPO / "tests").rglob("*.py"))
                for o in _reaches_benchmarks(p.relative_to(REPO).as_posix(), p.read_text(encoding="utf-8"), bench_modules)]
    assert not offences, "tests must not reach into benchmarks/ (helpers belong in tests/support):\n  " + "\n  ".join(offences)


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
