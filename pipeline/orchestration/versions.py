"""The chunks asset's code_version: the fingerprints of the chunker schemas in use.

A dynamic-partitioned asset has one code_version for all its partitions, while
each tenant is pinned to its own schema. So the version covers the *set* of
schemas in use: the default schema plus every schema a registered tenant is
pinned to, each as ``NAME@VERSION=fingerprint``. Editing or bumping any schema
in that set changes the code version (the UI marks ``chunks`` stale before
anything runs); adding an unused schema file does not. No Dagster import here.
"""

from __future__ import annotations

import hashlib

from ragindex.schemas import SchemaError, SchemaRegistry
from ragindex.schemas.registry import DEFAULT_SCHEMA
from ragindex.store.paths import TenantError
from ragindex.store.tenants import TenantStore


def schemas_in_use(store: TenantStore, default: str = DEFAULT_SCHEMA) -> dict[str, str]:
    """ref -> fingerprint of the default schema and of each registered tenant's pinned schema.

    A ref that cannot be loaded maps to ``"unloadable: <reason>"`` rather than
    breaking the code location; the tenant's own run reports the error.
    """
    refs, unreadable = {default}, []
    for name in store.names():
        try:
            refs.add(store.settings(name).chunker)
        except TenantError:
            unreadable.append(name)
    registry = SchemaRegistry()
    out = {}
    for ref in sorted(refs):
        try:
            out[ref] = registry.get(ref).fingerprint()
        except SchemaError as exc:
            out[ref] = f"unloadable: {exc}"
    out.update({f"tenant {name}": "unreadable settings" for name in unreadable})
    return out


def chunker_code_version(store: TenantStore, default: str = DEFAULT_SCHEMA) -> str:
    """``chunkers-<12 hex>``: a short hash over :func:`schemas_in_use`."""
    body = "\n".join(f"{ref}={fp}" for ref, fp in sorted(schemas_in_use(store, default).items()))
    return "chunkers-" + hashlib.sha256(body.encode("utf-8")).hexdigest()[:12]
