"""Where the schema files of a ragindex project are: the project's own, else the ones shipped with ragindex.

The schemas package finds its own files (``ragindex.project`` re-exports this for the
rest of the project directory: baselines, evaluation data), so nothing in
``ragindex.schemas`` reaches into the application package.
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


def shipped(package: str) -> Path:
    return Path(str(resources.files(package)))


def schemas_root() -> Located:
    """Schema files (``chunkers/*.toml``) and ``chunkers.lock``."""
    env = os.environ.get(SCHEMAS_ENV)
    if env:
        return Located(Path(env), True, f"${SCHEMAS_ENV}")
    own = project_dir() / "schemas"
    if (own / "chunkers.lock").is_file():
        return Located(own, True, "the project's schemas/")
    return Located(shipped("ragindex.schemas"), False, "the schemas shipped with ragindex")




class ProjectError(ValueError):
    """A write that would land in the installed package; the message says where to run it instead."""
