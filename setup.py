"""The package list, derived from the folders (pyproject.toml holds everything else).

pyproject's ``[tool.setuptools.package-dir]`` maps ``ragindex`` to ``pipeline/`` and
``ragindex.chunkers`` / ``ragindex.schemas`` / ``ragindex.baselines`` to their folders.
setuptools' ``packages.find`` cannot rename a folder, so the names are derived here:
every folder with an ``__init__.py`` under a mapped directory is a subpackage, and a new
one is in the wheel without anyone listing it (tests/layout checks the wheel's list).
"""

from setuptools import find_packages, setup

MAPPED = {"ragindex": "pipeline", "ragindex.chunkers": "chunkers", "ragindex.schemas": "schemas"}
DATA_ONLY = ["ragindex.baselines"]  # benchmarks/baselines: the CI gate's baselines, package data without code


def packages() -> list[str]:
    out = list(DATA_ONLY)
    for name, folder in MAPPED.items():
        out += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
    return sorted(out)


setup(packages=packages())
