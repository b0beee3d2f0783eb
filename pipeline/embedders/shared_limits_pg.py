"""The shared API limit in Postgres: one row per account, changed under ``SELECT ... FOR UPDATE``.

Used when ``RAGINDEX_LIMITS_URL`` (or the Dagster instance's ``DAGSTER_PG_URL``) names a
Postgres database, so that runs on several machines share one bucket. Each acquire is one
transaction: lock the account's row, refill by the database's clock (``clock_timestamp()``,
the one clock every machine agrees on), take or compute the wait, update, commit. The
driver is psycopg2 (the ``postgres`` extra); without it, asking for this backend says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from ragindex.embedders.bucket import BucketState
from ragindex.errors import MissingExtra, SettingsError

try:  # the `postgres` extra: optional, so a missing driver is reported only when this backend is asked for
    import psycopg2
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg2 = None

T = TypeVar("T")
TABLE = "ragindex_api_buckets"
_CREATE = (f"CREATE TABLE IF NOT EXISTS {TABLE} (account text PRIMARY KEY, tokens double precision, "
           "requests double precision, t double precision NOT NULL DEFAULT 0, "
           "paused_until double precision NOT NULL DEFAULT 0)")
_SELECT = (f"SELECT tokens, requests, t, paused_until, extract(epoch from clock_timestamp())::float8 "
           f"FROM {TABLE} WHERE account = %s FOR UPDATE")
_UPDATE = f"UPDATE {TABLE} SET tokens = %s, requests = %s, t = %s, paused_until = %s WHERE account = %s"


def _shown(url: str) -> str:
    """The URL without its credentials (for messages)."""
    return url.split("@", 1)[-1] if "@" in url else url


class PgBucket:
    """The bucket of ``account`` in the ``ragindex_api_buckets`` table of the database at ``url``."""

    def __init__(self, url: str, account: str) -> None:
        if psycopg2 is None:
            raise MissingExtra("RAGINDEX_LIMITS_URL names a Postgres database, which needs the postgres extra "
                               "(psycopg2 is not installed): pip install 'ragindex[postgres]'")
        self.url, self.account = url, account
        self.where = f"postgres {_shown(url)} ({TABLE})"
        self._lock = threading.Lock()  # one connection, one transaction at a time, for every thread of the process
        self._conn = None

    def _connect(self):
        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg2.connect(self.url, connect_timeout=10, application_name="ragindex-limits")
            except psycopg2.Error as exc:
                raise SettingsError(f"cannot reach the shared API limit's database {_shown(self.url)} "
                                    f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); "
                                    "check RAGINDEX_LIMITS_URL (or DAGSTER_PG_URL)") from None
            with conn, conn.cursor() as cur:  # one creator at a time: concurrent CREATE ... IF NOT EXISTS can collide
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (TABLE,))
                cur.execute(_CREATE)
            self._conn = conn
        return self._conn

    def _once(self, fn: Callable[[BucketState, float], T]) -> T:
        conn = self._connect()
        with conn, conn.cursor() as cur:  # commits on success, rolls back on an error
            cur.execute(_SELECT, (self.account,))
            row = cur.fetchone()
            if row is None:
                cur.execute(f"INSERT INTO {TABLE} (account) VALUES (%s) ON CONFLICT DO NOTHING", (self.account,))
                cur.execute(_SELECT, (self.account,))
                row = cur.fetchone()
            tokens, requests, t, paused, now = row
            st = BucketState(tokens=tokens, requests=requests, t=t, paused_until=paused)
            out = fn(st, now)
            cur.execute(_UPDATE, (st.tokens, st.requests, st.t, st.paused_until, self.account))
        return out

    def transact(self, fn: Callable[[BucketState, float], T]) -> T:
        with self._lock:
            try:
                return self._once(fn)
            except (psycopg2.OperationalError, psycopg2.InterfaceError):  # a dropped connection: reconnect once
                self.close()
                return self._once(fn)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
            self._conn = None
