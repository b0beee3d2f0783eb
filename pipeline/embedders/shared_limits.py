"""One token bucket per provider account, shared by every process that uses the account.

A provider's limits are per organisation, not per process: N tenant runs in parallel
must together stay under ``RAGINDEX_API_TPM`` / ``RAGINDEX_API_RPM``. The bucket of an
account (its base URL and the sha256 of its API key: :func:`account_id`; the key itself
is never written) therefore lives where every run can reach it:

* by default, a state file ``$RAGINDEX_HOME/limits/<account>.json`` guarded by an
  exclusive ``fcntl.flock`` (:class:`FileBucket`): every process on the machine, or on
  every machine sharing the folder over a file system with flock semantics (NFSv4);
* a Postgres row when ``RAGINDEX_LIMITS_URL=postgresql://...`` (or, without it, the
  Dagster instance's ``DAGSTER_PG_URL``): ``SELECT ... FOR UPDATE`` in a transaction
  (:mod:`ragindex.embedders.shared_limits_pg`), for runs on several machines;
* ``RAGINDEX_LIMITS_URL=process`` keeps a bucket per process (the old behaviour).

Each acquire is one short transaction: lock, refill by the time since the last one
(wall clock, or the database's clock), take or compute the wait, write, unlock; the
waiting happens outside the lock. A pause (``Retry-After`` on a 429, or
``x-ratelimit-remaining-*: 0``) is written to the same state, so one run's 429 slows
all of them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from ragindex.embedders.bucket import BucketState
from ragindex.embedders.shared_limits_pg import PgBucket
from ragindex.errors import SettingsError
from ragindex.store.paths import home

T = TypeVar("T")
log = logging.getLogger(__name__)


def account_id(base_url: str, key: str | None) -> str:
    """The account a bucket belongs to: sha256 of the base URL and of the key's own sha256 (never the key)."""
    key_hash = hashlib.sha256((key or "").encode()).hexdigest()
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{key_hash}".encode()).hexdigest()[:32]


class MemoryBucket:
    """A bucket for this process only (``RAGINDEX_LIMITS_URL=process``, and tests of the limiter itself)."""

    where = "process"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = BucketState()

    def transact(self, fn: Callable[[BucketState, float], T]) -> T:
        with self._lock:
            return fn(self._state, time.time())


class FileBucket:
    """The state file of one account, read and written under an exclusive flock (threads: a lock of their own).

    A folder that cannot be written (a read-only home serving searches) falls back, with a warning, to a
    bucket for this process only: pacing a query is not worth refusing it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self._lock = threading.Lock()
        self._fallback: MemoryBucket | None = None

    def _open(self) -> int | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("cannot write %s (%s): this process keeps its own API rate bucket, not shared with other "
                        "runs; set RAGINDEX_LIMITS_URL to a writable folder or a Postgres URL", self.path, exc.strerror)
            self._fallback, self.where = MemoryBucket(), "process"
            return None

    def transact(self, fn: Callable[[BucketState, float], T]) -> T:
        with self._lock:
            fd = self._open() if self._fallback is None else None
            if fd is None:
                return self._fallback.transact(fn)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                with os.fdopen(os.dup(fd), "r+", encoding="utf-8") as f:
                    st = BucketState.from_json(f.read())
                    out = fn(st, time.time())
                    f.seek(0)
                    f.write(json.dumps(asdict(st)))
                    f.truncate()
                    f.flush()
                return out
            finally:
                os.close(fd)  # releases the flock


def bucket_url() -> str | None:
    """Where the shared buckets live: ``$RAGINDEX_LIMITS_URL``, else the Dagster instance's Postgres, else None."""
    url = (os.environ.get("RAGINDEX_LIMITS_URL") or "").strip()
    if url:
        return url
    dagster = (os.environ.get("DAGSTER_PG_URL") or "").strip()
    return dagster or None


def shared_bucket(base_url: str, key: str | None):
    """The bucket of the account ``(base_url, key)`` in the configured place (see the module's doc)."""
    account = account_id(base_url, key)
    url = bucket_url()
    if url is None:
        return FileBucket(home() / "limits" / f"{account}.json")
    if url == "process":
        return MemoryBucket()
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
        return PgBucket(url.replace("postgresql+psycopg2://", "postgresql://", 1), account)
    if url.startswith(("file:", "/")):
        return FileBucket(Path(url.removeprefix("file://").removeprefix("file:")) / f"{account}.json")
    raise SettingsError(f"RAGINDEX_LIMITS_URL must be postgresql://..., a folder (file:/path or /path) or 'process', "
                        f"got {url.split('@')[-1]!r}")
