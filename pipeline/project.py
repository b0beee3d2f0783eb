"""Where a ragindex project keeps what it owns: schema files and their lock, CI baselines, evaluation data.

The project directory is ``$RAGINDEX_PROJECT`` or the working directory. What is
there wins; the schemas and baselines shipped inside the package are read-only
fallbacks, so an installed ragindex works out of the box and never writes into
its own installation (``site-packages``). Nothing is ever resolved relative to
the installed code except that shipped package data.

=============  ==========================================  ==============================
what           project copy (read-write)                    fallback (read-only)
=============  ==========================================  ==============================
schemas        ``$RAGINDEX_SCHEMAS`` or ``./schemas/``       ``ragindex.schemas`` (shipped)
               (a folder with ``chunkers.lock``)
baselines      ``$RAGINDEX_BASELINES`` or                    ``ragindex.baselines`` (shipped)
               ``./benchmarks/baselines/``
data           ``$RAGINDEX_DATA_ROOT/<set>`` if set,         none: say where it looked
               else ``./benchmarks/data/<set>``,             and how to set it
               else ``../shared/data/<set>``
=============  ==========================================  ==============================

Evaluation data is looked up one dataset folder at a time (``chroma_chunking/``,
``scifact/``): a repository can carry the small, freely licensed sets in
``benchmarks/data/`` and still read the larger or non-redistributable ones from a
shared folder beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ragindex.schemas.location import (  # noqa: F401  (the project directory's parts, found where the schemas are)
    BASELINES_ENV,
    DATA_ROOT_ENV,
    PROJECT_ENV,
    SCHEMAS_ENV,
    Located,
    ProjectError,
    project_dir,
    schemas_root,
    shipped,
)


def baselines_root() -> Located:
    """The CI gate's baselines (``<schema>[.<mode>].json``)."""
    env = os.environ.get(BASELINES_ENV)
    if env:
        return Located(Path(env), True, f"${BASELINES_ENV}")
    own = project_dir() / "benchmarks" / "baselines"
    if own.is_dir():
        return Located(own, True, "the project's benchmarks/baselines/")
    return Located(shipped("ragindex.baselines"), False, "the baselines shipped with ragindex")


def data_roots() -> list[tuple[Path, str]]:
    """Where evaluation data folders are looked for, in order, each with how it was found (for messages).

    ``$RAGINDEX_DATA_ROOT`` alone when it is set; else the project's ``benchmarks/data/``, then
    ``../shared/data`` beside the project directory.
    """
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return [(Path(env), f"${DATA_ROOT_ENV}")]
    here = project_dir()
    return [(here / "benchmarks" / "data", "the project's benchmarks/data/"),
            ((here / ".." / "shared" / "data").resolve(), "../shared/data beside the project")]


def data_path(folder: str) -> Path | None:
    """The first ``<root>/<folder>`` of :func:`data_roots` that exists, else None."""
    return next((root / folder for root, _ in data_roots() if (root / folder).exists()), None)


def data_root() -> Path:
    """The default data root as one folder: ``$RAGINDEX_DATA_ROOT``, else the first of the project's
    ``benchmarks/data/`` and ``../shared/data`` that exists (the latter when neither does).

    Datasets are found per folder (:func:`data_path`); this is for callers that take one root.
    """
    roots = data_roots()
    return next((root for root, _ in roots if root.is_dir()), roots[-1][0])
