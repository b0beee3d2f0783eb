"""Tenant names are validated before any filesystem access; directories are private."""

from __future__ import annotations

import stat

import pytest

from ragindex.store.paths import TenantError, validate_tenant
from ragindex.store.tenants import TenantStore

HOSTILE = ["", "../x", "/etc", "a/b", "a\\b", "..", ".", "UPPER", "ａcme", "acme\u200b", "tab\tname", "x" * 64, "-lead", "a\x00b", "é"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_rejected_before_touching_disk(name, tmp_path):
    store = TenantStore(tmp_path / "home")
    with pytest.raises(TenantError, match="invalid tenant name"):
        store.create(name)
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("name", ["acme", "a", "team-42", "x_y", "0" * 63])
def test_good_names(name):
    assert validate_tenant(name) == name


def test_tenant_dirs_owner_only(tmp_path):
    p = TenantStore(tmp_path / "home").create("acme")
    for d in (p.root, p.segments, p.deletions, p.generations, p.cache.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
