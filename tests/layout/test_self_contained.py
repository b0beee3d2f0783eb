"""The tests stand on their own: a clone with nothing beside it passes, and the tests mirror the package.

No test reads ../shared/data or a SciFact folder (CC BY-NC: never copied into the repository). The
only exceptions are named below: the test that SciFact's absence is a clear error (and the lookup
order test beside it), and the benchmark-only helpers of tests/support/data.py, which no test uses.
"""

from __future__ import annotations

import ast
import re

from tests.support.data import CHROMA, REPO

TESTS = REPO / "tests"
SELF = TESTS / "layout" / "test_self_contained.py"
SHARED = re.compile(r"""shared/data|["']shared["']\s*/\s*["']data["']""")
# Test functions allowed to name the shared folder or the scifact preset, by file.
EXEMPT_FUNCTIONS = {
    "tests/evaluate/test_datasets.py": {"test_scifact_is_optional_and_its_absence_says_where_it_looked",
                                        "test_a_preset_is_looked_up_per_folder_env_then_project_then_beside_it"},
    "tests/support/data.py": {"shared_data", "scifact_docs"},  # benchmarks only (benchmarks/*.py import them)
}
BENCHMARK_ONLY = {"shared_data", "scifact_docs"}


def _reads_scifact(value: str) -> bool:
    v = value.lower()
    return v == "scifact" or "scifact/" in v or "/scifact" in v or v.startswith("scifact.")


def _offences(rel: str, text: str) -> list[str]:
    """What in ``text`` (the file ``rel``, relative to the repository) reads the shared data or SciFact."""
    tree = ast.parse(text)
    exempt = EXEMPT_FUNCTIONS.get(rel, set())
    skip: set[int] = set()  # line numbers inside exempt functions
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in exempt:
            skip.update(range(node.lineno, node.end_lineno + 1))
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if n not in skip and SHARED.search(line):
            out.append(f"{rel}:{n}: mentions the shared data folder: {line.strip()}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.lineno not in skip and _reads_scifact(node.value):
            out.append(f"{rel}:{node.lineno}: reads a SciFact folder or preset: {node.value!r}")
        if rel != "tests/support/data.py" and isinstance(node, (ast.Name, ast.alias, ast.Attribute)):
            name = node.id if isinstance(node, ast.Name) else node.name if isinstance(node, ast.alias) else node.attr
            if name in BENCHMARK_ONLY:
                out.append(f"{rel}:{node.lineno}: uses {name}, a benchmark-only helper that reads the shared data")
    return out


def test_the_check_sees_each_way_of_reading_the_shared_data():
    probe = ('DATA = REPO.parent / "shared" / "data"\n'
             'open(DATA / "scifact" / "corpus.jsonl")\n'
             'x = "../shared/data"\n'
             'datasets.load("scifact")\n'
             'from tests.support.data import scifact_docs\n'
             'def test_ok():\n    """SciFact is CC BY-NC; load_scifact() is a name, not a read."""\n')
    found = _offences("tests/x/test_probe.py", probe)
    assert sorted(int(f.split(":")[1]) for f in found) == [1, 2, 3, 4, 5], found
    exempt = "def test_scifact_is_optional_and_its_absence_says_where_it_looked():\n    resolve('scifact')\n"
    assert _offences("tests/evaluate/test_datasets.py", exempt) == []
    assert _offences("tests/evaluate/test_other.py", exempt)


def test_no_test_reads_the_shared_data_or_scifact():
    files = [p for p in sorted(TESTS.rglob("*.py")) if p != SELF]  # this file names what it looks for
    offences = [o for p in files for o in _offences(p.relative_to(REPO).as_posix(), p.read_text(encoding="utf-8"))]
    assert not offences, "tests must run from the repository alone:\n  " + "\n  ".join(offences)


def test_the_evaluation_set_the_tests_need_is_in_the_repository():
    names = {p.relative_to(CHROMA).as_posix() for p in CHROMA.rglob("*") if p.is_file()}
    assert {"LICENSE", "PROVENANCE.txt", "questions_df.csv", "PUBLISHED_RESULTS.md"} <= names
    assert {f"corpora/{c}.md" for c in ("chatlogs", "finance", "pubmed", "state_of_the_union", "wikitexts")} <= names
    assert "MIT" in (CHROMA / "LICENSE").read_text(encoding="utf-8")
    assert not any("scifact" in p.as_posix().lower() for p in (REPO / "benchmarks" / "data").rglob("*")), "SciFact is CC BY-NC"


def test_test_folders_mirror_the_package():
    """A folder of tests per subpackage of ragindex; every test folder is a package (unique module names)."""
    subpackages = {p.parent.name for p in (REPO / "pipeline").glob("*/__init__.py")}
    mapped = {"chunkers", "schemas"}  # ragindex.chunkers and ragindex.schemas live in their own folders
    for name in subpackages | mapped:
        assert (TESTS / name).is_dir(), f"tests/{name}/ is missing (pipeline/{name}/ has no tests of its own)"
    extra = {"layout", "support", "reliability", "harness"}  # the repo's shape, helpers, cross-cutting, benchmark logic
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and p.name not in {"__pycache__", "artifacts"}}
    assert folders <= subpackages | mapped | extra, folders - (subpackages | mapped | extra)
    for folder in [TESTS, *(TESTS / f for f in folders)]:
        assert (folder / "__init__.py").is_file(), f"{folder} has no __init__.py"
