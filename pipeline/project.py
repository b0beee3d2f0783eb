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
data           ``$RAGINDEX_DATA_ROOT`` or ``../shared/data`` none: say how to set it
=============  ==========================================  ==============================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

PROJECT_ENV = "RAGINDEX_PROJECT"
SCHEMAS_ENV = "RAGINDEX_SCHEMAS"
BASELINES_ENV = "RAGINDEX_BASELINES"
DATA_ROOT_ENV = "RAGINDEX_DATA_ROOT"


class ProjectError(ValueError):
    """A write that would land in the installed package; the message says where to run it instead."""


@dataclass(frozen=True)
class Located:
    """A directory and whether ragindex may write there (False: shipped package data)."""

    path: Path
    writable: bool
    source: str  # how it was found, for messages

    def require_writable(self, what: str) -> Path:
        if not self.writable:
            raise ProjectError(
                f"{what} would write into the installed package ({self.path}); run it in your project directory "
                f"(see `ragindex schemas init`) or set {SCHEMAS_ENV if 'schema' in what else BASELINES_ENV}")
        return self.path


def project_dir() -> Path:
    return Path(os.environ.get(PROJECT_ENV) or Path.cwd()).absolute()


def _shipped(package: str) -> Path:
    return Path(str(resources.files(package)))


def schemas_root() -> Located:
    """Schema files (``chunkers/*.toml``) and ``chunkers.lock``."""
    env = os.environ.get(SCHEMAS_ENV)
    if env:
        return Located(Path(env), True, f"${SCHEMAS_ENV}")
    own = project_dir() / "schemas"
    if (own / "chunkers.lock").is_file():
        return Located(own, True, "the project's schemas/")
    return Located(_shipped("ragindex.schemas"), False, "the schemas shipped with ragindex")


def baselines_root() -> Located:
    """The CI gate's baselines (``<schema>[.<mode>].json``)."""
    env = os.environ.get(BASELINES_ENV)
    if env:
        return Located(Path(env), True, f"${BASELINES_ENV}")
    own = project_dir() / "benchmarks" / "baselines"
    if own.is_dir():
        return Located(own, True, "the project's benchmarks/baselines/")
    return Located(_shipped("ragindex.baselines"), False, "the baselines shipped with ragindex")


def data_root() -> Path:
    """``$RAGINDEX_DATA_ROOT``, else ``../shared/data`` beside the project directory."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env)
    return (project_dir() / ".." / "shared" / "data").resolve()
