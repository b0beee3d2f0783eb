"""Registering a tenant in a test the way `ragindex tenants add` does: through the tenant's writer."""

from __future__ import annotations

from ragindex.store.tenants import TenantSettings, TenantStore
from ragindex.store.writer import TenantWriter


def register(store: TenantStore, tenant: str, settings: TenantSettings) -> TenantSettings:
    """Write ``settings`` as the tenant's ``tenant.json`` (creating the tenant), holding its writer lock."""
    with TenantWriter(store, tenant, create=True) as w:
        w.save_settings(settings)
    return store.settings(tenant)


def writing(paths) -> TenantWriter:
    """The writer of the tenant at ``paths`` (a TenantPaths), for tests that call a library write directly."""
    return TenantWriter(TenantStore(paths.root.parent.parent), paths.name)
