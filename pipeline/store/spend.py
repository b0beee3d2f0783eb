"""Spend made outside a tenant's writer, and the probe vectors a search compares with.

A search that sends a hosted model's drift probe (``OpenAIEmbedder.check_queries``)
holds no writer, and a running reindex may hold the tenant's DuckDB cache open for
writing. So the search appends its spend to ``cache/ledger-pending.jsonl``: one line
per event, written under an flock and fsync'd before the search goes on, a lost
answer's line before the attempt is retried. The next writer of the cache moves the
lines into the ledger (:func:`take_pending`, idempotent by run id and request id), and
``status`` counts the lines still pending. It is the one file a reader writes in a
tenant's directory: a journal of money spent, never index state.

The probe vectors a writer stores in the cache are also written whole to
``cache/probes/<identity>-<epoch>.npy``, so a search reads them without opening the
cache.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import io
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from ragindex.fsutil import atomic_write_bytes

PENDING = "ledger-pending.jsonl"
SEARCH_PROBE = "(search: drift probe)"  # the ledger's `chunker` column of a search's probe

# The ledger's columns, as pending rows carry them (``store.cache`` creates the table).
LEDGER_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("tenant", pa.string()), ("chunker", pa.string()), ("embedder_fp", pa.string()),
    ("device", pa.string()), ("started_at", pa.timestamp("us")), ("finished_at", pa.timestamp("us")),
    ("status", pa.string()), ("planned_texts", pa.int64()), ("planned_tokens", pa.int64()),
    ("planned_cost_usd", pa.float64()), ("cache_hits", pa.int64()), ("texts", pa.int64()), ("tokens", pa.int64()),
    ("tokens_cl100k", pa.int64()), ("seconds", pa.float64()), ("cost_usd", pa.float64()), ("tokens_billed", pa.int64()),
    ("requests", pa.int64()), ("tokens_possibly_billed", pa.int64()), ("requests_lost", pa.int64()),
    ("probe_tokens", pa.int64()),
])
LOST_SCHEMA = pa.schema([("run_id", pa.string()), ("request_id", pa.string()), ("tokens", pa.int64()),
                         ("lost_at", pa.timestamp("us"))])


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# -- the probe, for readers ----------------------------------------------------------------


def probe_file(cache_path: Path, identity: str, epoch: int) -> Path:
    return Path(cache_path).parent / "probes" / f"{identity[:32]}-{int(epoch)}.npy"


def write_probe_file(cache_path: Path, identity: str, epoch: int, vectors: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asarray(vectors, dtype="<f4"), allow_pickle=False)
    path = probe_file(cache_path, identity, epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def read_probe_file(cache_path: Path, identity: str, epoch: int) -> np.ndarray | None:
    """The probe vectors written beside the cache, or None (never written, or unreadable)."""
    try:
        return np.load(probe_file(cache_path, identity, epoch), allow_pickle=False)
    except (OSError, ValueError):
        return None


# -- the pending journal ------------------------------------------------------------------------


class PendingSpend:
    """What one search's probe spends, appended to the tenant's pending journal as it happens."""

    def __init__(self, cache_path: Path, tenant: str, embedder_fp: str) -> None:
        self.path = Path(cache_path).with_name(PENDING)
        self.tenant, self.embedder_fp = tenant, embedder_fp
        self.run_id = f"search-probe-{now().strftime('%Y%m%dT%H%M%S%fZ')}-{os.getpid()}"

    def lost(self, tokens: int, request_id: str) -> None:
        """An attempt whose answer was lost: possibly billed (called before it is retried)."""
        self._append({"kind": "lost", "run_id": self.run_id, "tenant": self.tenant, "embedder_fp": self.embedder_fp,
                      "request_id": request_id, "tokens": int(tokens), "at": now().isoformat()})

    def done(self, billed: int, requests: int, probe_tokens: int) -> None:
        """The probe's ledger row: what the API billed for it (nothing when no answer came)."""
        self._append({"kind": "run", "run_id": self.run_id, "tenant": self.tenant, "embedder_fp": self.embedder_fp,
                      "tokens_billed": int(billed), "requests": int(requests), "probe_tokens": int(probe_tokens),
                      "at": now().isoformat()})

    def _append(self, event: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, (json.dumps(event) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)  # and with it the lock


def _tables(lines: list[str]) -> tuple[pa.Table, pa.Table]:
    """Ledger rows (one per run id) and lost requests from the journal's lines; a torn last line is skipped."""
    rows: dict[str, dict] = {}
    lost = []
    for line in lines:
        try:
            ev = json.loads(line)
            at = dt.datetime.fromisoformat(ev["at"])
            row = rows.setdefault(ev["run_id"], {
                **dict.fromkeys(LEDGER_SCHEMA.names, 0), "run_id": ev["run_id"], "tenant": ev["tenant"],
                "chunker": SEARCH_PROBE, "embedder_fp": ev["embedder_fp"], "device": "api", "started_at": at,
                "finished_at": at, "status": "complete", "planned_cost_usd": 0.0, "seconds": 0.0, "cost_usd": 0.0})
            if ev["kind"] == "lost":
                row["tokens_possibly_billed"] += int(ev["tokens"])
                row["requests_lost"] += 1
                lost.append({"run_id": ev["run_id"], "request_id": str(ev["request_id"]), "tokens": int(ev["tokens"]), "lost_at": at})
            else:
                row.update(tokens_billed=int(ev["tokens_billed"]), requests=int(ev["requests"]),
                           probe_tokens=int(ev["probe_tokens"]), planned_tokens=int(ev["probe_tokens"]), finished_at=at)
        except (ValueError, KeyError, TypeError):
            continue
    return pa.Table.from_pylist(list(rows.values()), LEDGER_SCHEMA), pa.Table.from_pylist(lost, LOST_SCHEMA)


def peek_pending(cache_path: Path) -> tuple[pa.Table, pa.Table]:
    """The journal's rows not yet in the ledger (for a reader: nothing is changed)."""
    try:
        lines = Path(cache_path).with_name(PENDING).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    return _tables(lines)


def take_pending(cache_path: Path, apply: Callable[[pa.Table, pa.Table], None]) -> None:
    """Hand the journal's rows to ``apply`` (which puts them in the ledger), then empty it, under its lock."""
    path = Path(cache_path).with_name(PENDING)
    if not path.exists():
        return
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
        if lines:
            apply(*_tables(lines))
        os.ftruncate(fd, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
