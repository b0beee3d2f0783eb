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


def unregister_partition(tenant: str) -> bool:
    """Remove ``tenant``'s partition and its stored step outputs from the instance in $DAGSTER_HOME, if set.

    The step outputs (the IO manager's files under the instance's storage) hold the
    tenant's document texts, so they go with it.
    """
    if not os.environ.get("DAGSTER_HOME"):
        return False
    import shutil
    from pathlib import Path

    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        if instance.has_dynamic_partition("tenants", tenant):
            instance.delete_dynamic_partition("tenants", tenant)
        storage = Path(instance.storage_directory())
    for asset in ("documents", "chunks", "embeddings", "tenant_index"):
        out = storage / asset / tenant
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
    return True
