"""A key check does the same work whether the tenant exists or not (Hardening II, item 8).

A missing tenant used to answer ~50 µs faster than a wrong key on an existing one: only the
latter read and parsed ``keys.json``. Wall-clock differences of microseconds drown in the noise
of a shared machine, so the test compares the work itself: the sequence of Python and C
functions each check calls, traced with ``sys.setprofile``. Equal sequences leave no timing
difference to measure, whatever the machine.
"""

from __future__ import annotations

import sys

from ragindex.store import keys
from ragindex.store.tenants import TenantSettings
from tests.support.tenants import register


def calls_made(fn) -> tuple[object, list[str]]:
    """``fn()``'s result and the functions it called, in order (Python functions by qualified name, C ones too)."""
    seen: list[str] = []

    def profile(frame, event, arg):
        if event == "call":
            seen.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_qualname}")
        elif event == "c_call":
            seen.append(f"C:{getattr(arg, '__qualname__', repr(arg))}")

    sys.setprofile(profile)
    try:
        result = fn()
    finally:
        sys.setprofile(None)
    return result, seen


def test_a_missing_tenant_costs_the_same_work_as_a_wrong_key_on_an_existing_one(store):
    register(store, "acme", TenantSettings(source="-", chunker="recursive-200@1"))
    good, rec = keys.create(store, "acme", "frontend")
    keys.create(store, "acme", "backend")  # more than one key on file: the lookup must not scan them
    forged = good[:-1] + ("x" if good[-1] != "x" else "y")  # the right id, a wrong secret
    stranger = f"rgx_{'0' * 8 if rec.id != '0' * 8 else '1' * 8}_{good.split('_', 2)[2]}"  # an id acme does not have
    assert keys.check(store, "acme", good)  # the first check of a tenant reads its keys file

    cases = {"no such tenant": ("nobody", good), "wrong secret": ("acme", forged), "unknown key id": ("acme", stranger),
             "the right key": ("acme", good)}
    traced = {name: calls_made(lambda t=t, k=k: keys.check(store, t, k)) for name, (t, k) in cases.items()}

    assert {name: ok for name, (ok, _) in traced.items()} == {"no such tenant": False, "wrong secret": False,
                                                               "unknown key id": False, "the right key": True}
    reference = traced["no such tenant"][1]
    assert "C:compare_digest" in reference and "C:openssl_sha256" in reference and "C:stat" in reference
    for name, (_, work) in traced.items():
        assert work == reference, f"{name!r} does other work than a missing tenant"


def test_key_changes_are_seen_on_the_next_check(store):
    register(store, "acme", TenantSettings(source="-", chunker="recursive-200@1"))
    first, rec = keys.create(store, "acme")
    assert keys.check(store, "acme", first)
    second, _ = keys.create(store, "acme")
    assert keys.check(store, "acme", second) and keys.check(store, "acme", first)
    keys.revoke(store, "acme", rec.id)
    assert not keys.check(store, "acme", first) and keys.check(store, "acme", second)
    (store.paths("acme").root / "keys.json").unlink()  # the keys file gone (the tenant offboarded): no key opens it
    assert not keys.check(store, "acme", second)
