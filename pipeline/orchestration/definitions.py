"""The Dagster code location (``[tool.dagster] module_name``): ``defs``, built from the environment.

Environment: $RAGINDEX_HOME (tenants), $RAGINDEX_SOURCES (the folder the sensor
watches, default ./sources), $RAGINDEX_MODEL, $RAGINDEX_PRICES. See docs/dagster.md.
"""

from ragindex.orchestration.location import REINDEX_JOB, build_definitions

__all__ = ["REINDEX_JOB", "build_definitions", "defs"]

defs = build_definitions()
