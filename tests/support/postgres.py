"""A throw-away PostgreSQL server for a test (or a benchmark): ``ragindex.postgres.LocalPostgres`` in a temp folder.

The folder is made under /tmp (a short unix socket path the ``postgres`` user can reach when the
tests run as root) and removed afterwards. Where no PostgreSQL binaries are installed the
test is skipped, except under CI (``CI=true``), where .ci/run installs them: there it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragindex.postgres import LocalPostgres, PostgresUnavailable, bin_dir


def require_postgres() -> None:
    """Skip (fail under CI=true) where no PostgreSQL server can be started here."""
    try:
        bin_dir()
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}")
        pytest.skip(str(exc))


@contextlib.contextmanager
def local_postgres() -> Iterator[LocalPostgres]:
    folder = Path(tempfile.mkdtemp(prefix="ragpg-", dir="/tmp"))
    pg = LocalPostgres(folder, durable=False)
    try:
        yield pg.up()
    finally:
        try:
            pg.down()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
