"""The package shows its pipeline: a folder per stage, small modules, one owner of writes, right-way imports."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile

from tests.layout.imports import REPO, graph, modules

STAGES = ("ingest", "indexing", "embedders", "store", "search", "serve", "evaluate", "cli", "orchestration")
MAX_TOP_LEVEL_MODULES = 12
MAX_LINES = 400
# Function-level imports of ragindex modules that are deliberate, not a dodge of a wrong-way dependency:
# an optional extra ([api]) imported only when a hosted model is asked for, and the light package facades.
LAZY_ALLOWED = {
    ("ragindex.embedders.registry", "ragindex.embedders.hosted"),
    ("ragindex.embedders.registry", "ragindex.embedders.limits"),
    ("ragindex.evaluate", "ragindex.evaluate.tenant"),
}


def _calls(path, name: str) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def test_each_stage_has_its_folder_and_the_top_level_stays_small():
    pipeline = REPO / "pipeline"
    for stage in STAGES:
        assert (pipeline / stage / "__init__.py").is_file(), f"pipeline/{stage}/ is missing"
        doc = ast.get_docstring(ast.parse((pipeline / stage / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"pipeline/{stage}/__init__.py should say what the stage is"
    top = sorted(p.name for p in pipeline.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_product_module_is_longer_than_the_limit():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_only_the_writer_takes_a_tenants_lock():
    for name, path in modules().items():
        if name in ("ragindex.store.writer", "ragindex.store.locking"):
            continue
        assert not _calls(path, "tenant_lock"), f"{name} takes a tenant lock itself; use ragindex.store.writer.TenantWriter"
    assert _calls(REPO / "pipeline" / "store" / "writer.py", "tenant_lock")


def test_orchestration_is_a_leaf_and_schemas_and_chunkers_do_not_reach_into_the_app():
    g = graph(top_level_only=False)
    for name, deps in g.items():
        if not name.startswith("ragindex.orchestration"):
            assert not {d for d in deps if d.startswith("ragindex.orchestration")}, f"{name} imports the Dagster code location"
        if name.startswith(("ragindex.schemas", "ragindex.chunkers")):
            outside = {d for d in deps if not d.startswith(("ragindex.schemas", "ragindex.chunkers")) and d != "ragindex.fsutil"}
            assert not outside, f"{name} imports the application package: {outside}"


def test_product_imports_are_at_module_level():
    """A ragindex import hidden inside a function (outside the CLI, which keeps --help fast) dodges a dependency."""
    top, anywhere = graph(top_level_only=True), graph(top_level_only=False)
    hidden = {(name, d) for name in anywhere for d in anywhere[name] - top[name]
              if not name.startswith("ragindex.cli") and d.startswith("ragindex")} - LAZY_ALLOWED
    assert not hidden, f"function-level imports: {sorted(hidden)}"


def test_the_errors_the_cli_maps_are_defined_in_one_module():
    from ragindex import errors
    from ragindex.store.locking import TenantBusy

    assert TenantBusy is errors.TenantBusy
    for cls, code, kind in errors.EXIT_CODES:
        assert cls.__module__ in ("ragindex.errors", "ragindex.schemas.chunker", "ragindex.schemas.location", "builtins"), cls
        assert code in (1, 3, 4, 5, 6, 7) and kind
    defined = {n.name for p in REPO.joinpath("pipeline").rglob("*.py") if p.name != "errors.py"
               for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ClassDef)}
    mapped = {cls.__name__ for cls, _, _ in errors.EXIT_CODES}
    assert not (defined & mapped), f"defined outside ragindex.errors: {defined & mapped}"


def test_the_package_list_is_derived_so_every_subpackage_ships(tmp_path):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "packages" not in pyproject["tool"]["setuptools"], "the package list is derived in setup.py, not written out"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                           str(REPO)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(tmp_path.glob("ragindex-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for stage in STAGES:
        assert f"ragindex/{stage}/__init__.py" in names, f"ragindex.{stage} is not in the wheel"
    expected = {f"ragindex/{p.relative_to(REPO / 'pipeline').as_posix()}" for p in (REPO / "pipeline").rglob("*.py")}
    assert expected <= names, sorted(expected - names)[:5]
    assert "ragindex/indexing/prices.toml" in names and any(n.startswith("ragindex/schemas/chunkers/") for n in names)


def test_the_cli_reaches_tenants_only_through_the_python_api():
    """Commands that touch a tenant call ragindex.api; they never open its store, run or searcher themselves."""
    g = graph(top_level_only=False)
    below = ("ragindex.store", "ragindex.indexing", "ragindex.search", "ragindex.embedders")
    for name, deps in g.items():
        if name.startswith("ragindex.cli"):
            direct = sorted(d for d in deps if d.startswith(below))
            assert not direct, f"{name} bypasses ragindex.api: {direct}"
    assert "ragindex.api" in g["ragindex.cli.root"]
