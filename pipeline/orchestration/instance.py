"""Registering tenants as partitions of the Dagster instance in $DAGSTER_HOME (when set)."""

from __future__ import annotations

import os


def register_partition(tenant: str) -> bool:
    """Add ``tenant`` to the ``tenants`` dynamic partitions if $DAGSTER_HOME is set; return whether it was."""
    if not os.environ.get("DAGSTER_HOME"):
        return False
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        if not instance.has_dynamic_partition("tenants", tenant):
            instance.add_dynamic_partitions("tenants", [tenant])
    return True
