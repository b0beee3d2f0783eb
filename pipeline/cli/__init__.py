"""The ``ragindex`` command line: short functions over the library (``ragindex.api``).

One module per command group, all registered on the root group of
:mod:`ragindex.cli.root` (shared options, errors, output):

* :mod:`~ragindex.cli.indexing`: plan, reindex, search, status
* :mod:`~ragindex.cli.tenants`: tenants add | list | remove
* :mod:`~ragindex.cli.schemas`: schemas list | lock | check, chunk
* :mod:`~ragindex.cli.generations`: generations, rollback, migrate, gc, compact, verify
* :mod:`~ragindex.cli.evaluation`: eval run | record | diff | tenant
* :mod:`~ragindex.cli.serving`: serve, keys create | list | revoke
* :mod:`~ragindex.cli.dagster`: dagster postgres up | down | url | env
"""

from ragindex.cli import dagster, evaluation, generations, indexing, schemas, serving, tenants  # noqa: F401  (they register)
from ragindex.cli.root import main

__all__ = ["main"]
