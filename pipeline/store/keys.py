"""Per-tenant API keys for ``ragindex serve``: only a hash is stored, in the tenant's own directory.

A key reads ``rgx_<id>_<secret>``: the id (8 hex characters) names the key in
``keys list`` and ``keys revoke``; the secret is 32 random bytes. The tenant's
``keys.json`` holds, per key, its id, a name, when it was made (and revoked), and
the sha256 of the whole key. Checking a key compares digests in constant time,
and a tenant that does not exist costs the same work (see ``check``), so a key for
one tenant learns nothing about another (not even that it exists, by timing).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass

from ragindex.fsutil import atomic_write_text
from ragindex.store.paths import TenantError
from ragindex.store.tenants import TenantStore
from ragindex.store.writer import keys_lock

KEY_RE = re.compile(r"rgx_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
_DUMMY = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    sha256: str
    created_at: str
    revoked_at: str | None = None

    def public(self) -> dict:
        d = asdict(self)
        d.pop("sha256")
        return d


# keys.json path -> ((inode, mtime_ns, size) it was read at, {key id: live record}); refreshed when the file changes.
_LIVE: dict[str, tuple[tuple[int, int, int], dict[str, KeyRecord]]] = {}


def _path(store: TenantStore, tenant: str):
    return store.paths(tenant).root / "keys.json"


def load(store: TenantStore, tenant: str) -> list[KeyRecord]:
    f = _path(store, tenant)
    if not f.exists():
        return []
    try:
        return [KeyRecord(**r) for r in json.loads(f.read_text(encoding="utf-8"))]
    except (ValueError, TypeError) as exc:
        raise TenantError(f"{f}: unreadable keys file ({exc}); revoke and create keys again") from None


def _save(store: TenantStore, tenant: str, keys: list[KeyRecord]) -> None:
    atomic_write_text(_path(store, tenant), json.dumps([asdict(k) for k in keys], indent=1) + "\n")


def create(store: TenantStore, tenant: str, name: str = "") -> tuple[str, KeyRecord]:
    """A new key for ``tenant``: (the key, shown once, never stored; its record)."""
    with keys_lock(store, tenant):
        keys = load(store, tenant)
        key_id = secrets.token_hex(4)
        while any(k.id == key_id for k in keys):
            key_id = secrets.token_hex(4)
        key = f"rgx_{key_id}_{secrets.token_urlsafe(32)}"
        rec = KeyRecord(key_id, name, hashlib.sha256(key.encode()).hexdigest(),
                        dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())
        _save(store, tenant, [*keys, rec])
    return key, rec


def revoke(store: TenantStore, tenant: str, key_id: str) -> KeyRecord:
    with keys_lock(store, tenant):  # never behind a reindex: keys are not index state
        keys = load(store, tenant)
        match = [k for k in keys if k.id == key_id]
        if not match:
            raise TenantError(f"tenant {tenant!r} has no key {key_id!r}; see `ragindex keys list --tenant {tenant}`")
        done = KeyRecord(**(asdict(match[0]) | {"revoked_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()}))
        _save(store, tenant, [done if k.id == key_id else k for k in keys])
    return done


def _live(store: TenantStore, tenant: str) -> dict[str, KeyRecord]:
    """The tenant's live (not revoked) keys by id; {} for a tenant that does not exist or has no keys.

    One ``stat`` of ``keys.json`` per call, whether it exists or not; the file is read
    only when its (inode, mtime, size) moved, which every create and revoke does (an
    atomic rename), so a revocation counts from the next check on.
    """
    f = str(_path(store, tenant))
    try:
        st = os.stat(f)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    hit = _LIVE.get(f)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    if stamp is None:  # no keys file: nothing to read, nothing to remember (unbounded names never fill memory)
        if hit is not None:
            del _LIVE[f]
        return {}
    try:
        live = {k.id: k for k in load(store, tenant) if k.revoked_at is None}
    except (TenantError, OSError):
        live = {}
    _LIVE[f] = (stamp, live)
    return live


def check(store: TenantStore, tenant: str, key: str | None) -> bool:
    """Whether ``key`` is a live key of ``tenant``, with the same work whether the tenant exists or not.

    Both paths hash the presented key, ``stat`` the tenant's ``keys.json``, look the key's
    id up in a dict and compare digests in constant time (against a dummy digest when
    there is no such key): a missing tenant must not answer faster than a wrong key
    (tests/serve/test_key_timing.py traces the calls of each path and finds them equal).
    """
    m = KEY_RE.fullmatch(key or "")
    digest = hashlib.sha256((key or "").encode()).hexdigest()
    try:
        live = _live(store, tenant)
    except ValueError:  # an invalid tenant name: refused before any path is built
        live = {}
    rec = live.get(m.group(1) if m else "")
    ok = hmac.compare_digest(digest, rec.sha256 if rec is not None else _DUMMY)
    return bool(m and rec is not None and ok)
