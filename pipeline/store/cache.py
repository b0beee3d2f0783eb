"""The tenant's embedding cache and cost ledger: one DuckDB file in the tenant's directory.

Vectors are keyed by ``embed_key = (embedder_fp, text_hash)``. Each embedded batch
is committed in one transaction together with the ledger's running totals, so a
crash loses at most the batch in flight and the ledger never claims a vector the
cache does not hold (or the reverse).

For a hosted API the ledger keeps three counts apart: ``planned_tokens`` (the plan),
``tokens_billed`` (what the API's answers said it billed) and ``tokens_possibly_billed``
(attempts whose answer was lost, each in ``lost_requests`` with its request id,
written before the attempt is retried); billed plus possibly billed is never below
what the provider billed. A vector whose size is not the model's is never loaded:
``cached_hashes`` does not count it and ``commit_batch`` replaces it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from ragindex.errors import CacheBusy, CacheError  # noqa: F401  (raised here; defined with the rest)
from ragindex.store.spend import now as _now
from ragindex.store.spend import peek_pending, read_probe_file, take_pending, write_probe_file

_DDL = """
CREATE TABLE IF NOT EXISTS embeddings (
    embedder_fp VARCHAR NOT NULL,
    text_hash   VARCHAR NOT NULL,
    vector      BLOB NOT NULL,          -- float32, little endian, unit length
    tokens      INTEGER NOT NULL,       -- model tokens processed
    run_id      VARCHAR NOT NULL,
    PRIMARY KEY (embedder_fp, text_hash)
);
CREATE TABLE IF NOT EXISTS ledger (
    run_id          VARCHAR PRIMARY KEY,
    tenant          VARCHAR NOT NULL,
    chunker         VARCHAR NOT NULL,
    embedder_fp     VARCHAR NOT NULL,
    device          VARCHAR NOT NULL,
    started_at      TIMESTAMP NOT NULL,
    finished_at     TIMESTAMP,
    status          VARCHAR NOT NULL,   -- running | complete | interrupted
    planned_texts   BIGINT NOT NULL,
    planned_tokens  BIGINT NOT NULL,
    planned_cost_usd DOUBLE NOT NULL,
    cache_hits      BIGINT NOT NULL,
    texts           BIGINT NOT NULL DEFAULT 0,
    tokens          BIGINT NOT NULL DEFAULT 0,
    tokens_cl100k   BIGINT NOT NULL DEFAULT 0,
    seconds         DOUBLE NOT NULL DEFAULT 0,
    cost_usd        DOUBLE NOT NULL DEFAULT 0
);
-- Tokens the API billed (its usage field), next to the planned count in `tokens`.
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS tokens_billed BIGINT DEFAULT 0;
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS requests BIGINT DEFAULT 0;
-- Tokens of attempts whose answer was lost (possibly billed), how many, and the drift probe's tokens.
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS tokens_possibly_billed BIGINT DEFAULT 0;
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS requests_lost BIGINT DEFAULT 0;
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS probe_tokens BIGINT DEFAULT 0;
CREATE TABLE IF NOT EXISTS lost_requests (
    run_id      VARCHAR NOT NULL,
    request_id  VARCHAR NOT NULL,
    tokens      BIGINT NOT NULL,
    lost_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, request_id)
);
-- A hosted model's probe vectors per (identity, epoch): how drift is detected.
CREATE TABLE IF NOT EXISTS probes (
    identity    VARCHAR NOT NULL,
    epoch       INTEGER NOT NULL,
    i           INTEGER NOT NULL,
    vector      BLOB NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (identity, epoch, i)
);
"""


@dataclass(frozen=True)
class LedgerTotals:
    runs: int
    texts: int
    tokens: int
    tokens_cl100k: int
    seconds: float
    cost_usd: float
    cache_hits: int
    planned_tokens: int = 0
    tokens_billed: int = 0  # what the API's answers said
    tokens_possibly_billed: int = 0  # attempts whose answer was lost, counted as billed
    probe_tokens: int = 0


class EmbeddingCache:
    """Open with ``with EmbeddingCache(path) as cache:``; one writer at a time (tenant lock)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.con: duckdb.DuckDBPyConnection | None = None
        self._write = threading.Lock()  # a lost answer is recorded from the thread that sent it
        self._ledger = "ledger"  # with the pending journal's rows, for a reader

    def __enter__(self) -> "EmbeddingCache":
        if self.read_only and not self.path.exists():
            raise CacheError(f"{self.path}: no embedding cache yet; run `ragindex reindex` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=self.read_only)
            if not self.read_only:
                self.con.execute(_DDL)
                # A run that died leaves its ledger row 'running'; what it committed stays counted.
                self.con.execute("UPDATE ledger SET status = 'interrupted' WHERE status = 'running'")
                take_pending(self.path, self._fold)
            else:
                self._see_pending()
        except duckdb.Error as exc:
            if "lock" in str(exc).lower():
                raise CacheBusy(f"{self.path}: busy, retry: the embedding cache is in use by another ragindex process "
                                "(a reindex or an evaluation; nothing is wrong with it); run this again when it has finished") from exc
            if self.path.parent.name == "cache":  # a tenant's cache: its segments hold every vector
                fix = (f"Run `ragindex verify --tenant {self.path.parent.parent.name} --repair`: it moves a corrupt "
                       "cache aside and refills every vector from the index segments, so nothing is paid for again")
            else:  # an evaluation cache: derived data, rebuilt by the next evaluation
                fix = "It only caches evaluation vectors: delete it and the next evaluation rebuilds it"
            raise CacheError(f"{self.path}: cannot open the embedding cache ({str(exc).splitlines()[0]}). {fix}") from exc
        return self

    def __exit__(self, *exc) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    # -- vectors ---------------------------------------------------------

    def cached_hashes(self, embedder_fp: str, text_hashes: Sequence[str], dim: int | None = None) -> set[str]:
        """Which of ``text_hashes`` already have a vector under ``embedder_fp`` (of ``dim`` floats, if given)."""
        if not text_hashes:
            return set()
        wanted = pa.table({"text_hash": pa.array(list(text_hashes), pa.string())})
        self.con.register("wanted", wanted)
        try:
            rows = self.con.execute(
                "SELECT e.text_hash FROM embeddings e JOIN wanted w USING (text_hash) WHERE e.embedder_fp = ? "
                "AND (? IS NULL OR octet_length(e.vector) = 4 * ?)", [embedder_fp, dim, dim],
            ).fetchall()
        finally:
            self.con.unregister("wanted")
        return {r[0] for r in rows}

    def vectors(self, embedder_fp: str, text_hashes: Sequence[str], dim: int) -> np.ndarray:
        """Vectors for ``text_hashes`` in that order; KeyError names a missing one."""
        uniq = list(dict.fromkeys(text_hashes))
        wanted = pa.table({"text_hash": pa.array(uniq, pa.string())})
        self.con.register("wanted", wanted)
        try:
            got = self.con.sql(
                "SELECT e.text_hash, e.vector FROM embeddings e JOIN wanted w USING (text_hash) WHERE e.embedder_fp = $fp",
                params={"fp": embedder_fp},
            ).to_arrow_table()
        finally:
            self.con.unregister("wanted")
        lookup = dict(zip(got.column("text_hash").to_pylist(), got.column("vector").to_pylist()))
        out = np.empty((len(text_hashes), dim), dtype=np.float32)
        for i, h in enumerate(text_hashes):
            blob = lookup.get(h)
            if blob is None:
                raise KeyError(f"text {h[:12]} has no cached vector for embedder {embedder_fp[:12]}")
            if len(blob) != 4 * dim:
                raise CacheError(f"{self.path}: text {h[:12]} has a {len(blob) // 4}-dimensional vector for embedder "
                                 f"{embedder_fp[:12]}, not {dim}; it is not loaded: run `ragindex reindex` to embed it again")
            out[i] = np.frombuffer(blob, dtype="<f4")
        return out

    def restore(self, embedder_fp: str, text_hashes: Sequence[str], vectors: np.ndarray, source: str) -> int:
        """Put back vectors recovered from an index generation (repair); the ledger is not touched."""
        table = pa.table({
            "embedder_fp": pa.array([embedder_fp] * len(text_hashes), pa.string()),
            "text_hash": pa.array(list(text_hashes), pa.string()),
            "vector": pa.array([v.astype("<f4").tobytes() for v in vectors], pa.binary()),
            "tokens": pa.array([0] * len(text_hashes), pa.int32()),  # unknown: not paid again, not re-counted
            "run_id": pa.array([f"restored-from-{source}"] * len(text_hashes), pa.string()),
        })
        self.con.register("restored", table)
        try:
            before = self.stats()["vectors"]
            self.con.execute("INSERT OR IGNORE INTO embeddings SELECT * FROM restored")
            return self.stats()["vectors"] - before
        finally:
            self.con.unregister("restored")

    def stats(self, embedder_fp: str | None = None) -> dict:
        q = "SELECT count(*), count(DISTINCT embedder_fp) FROM embeddings"
        n, spaces = self.con.execute(q).fetchall()[0]
        mine = self.con.execute("SELECT count(*) FROM embeddings WHERE embedder_fp = ?", [embedder_fp]).fetchall()[0][0] if embedder_fp else n
        return {"vectors": n, "key_spaces": spaces, "vectors_for_embedder": mine, "bytes": self.path.stat().st_size}

    # -- runs and the ledger ---------------------------------------------

    def start_run(self, run_id: str, tenant: str, chunker: str, embedder_fp: str, device: str, plan) -> None:
        """A ledger row for ``plan``: planned texts and tokens (everything its row sends: texts, queries, probe)."""
        planned = getattr(plan, "ledger_tokens", plan.tokens_to_embed)
        with self._write:
            self.con.execute(
                "INSERT INTO ledger (run_id, tenant, chunker, embedder_fp, device, started_at, status, planned_texts, "
                "planned_tokens, planned_cost_usd, cache_hits) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                [run_id, tenant, chunker, embedder_fp, device, _now(), plan.texts_to_embed, planned, plan.cost_usd,
                 plan.vectors_reused])

    def commit_batch(self, run_id: str, embedder_fp: str, text_hashes: Sequence[str], vectors: np.ndarray,
                     tokens: Sequence[int], tokens_cl100k: int, seconds: float, cost_usd: float,
                     billed_tokens: int | None = None) -> None:
        """Store one embedded batch (a request, for a hosted API) and add it to the run's ledger row, atomically."""
        table = pa.table(
            {
                "embedder_fp": pa.array([embedder_fp] * len(text_hashes), pa.string()),
                "text_hash": pa.array(list(text_hashes), pa.string()),
                "vector": pa.array([v.astype("<f4").tobytes() for v in vectors], pa.binary()),
                "tokens": pa.array(list(tokens), pa.int32()),
                "run_id": pa.array([run_id] * len(text_hashes), pa.string()),
            }
        )
        self._write.acquire()
        try:
            self.con.register("batch", table)
            self.con.execute("BEGIN TRANSACTION")
            if len(vectors):  # a vector of another size under this key (a server that answered wrongly) is replaced
                self.con.execute("DELETE FROM embeddings WHERE embedder_fp = ? AND octet_length(vector) != ? AND text_hash "
                                 "IN (SELECT text_hash FROM batch)", [embedder_fp, 4 * int(np.shape(vectors)[1])])
            self.con.execute("INSERT OR IGNORE INTO embeddings SELECT * FROM batch")
            self.con.execute(
                "UPDATE ledger SET texts = texts + ?, tokens = tokens + ?, tokens_cl100k = tokens_cl100k + ?, "
                "seconds = seconds + ?, cost_usd = cost_usd + ?, tokens_billed = tokens_billed + ?, "
                "requests = requests + ? WHERE run_id = ?",
                [len(text_hashes), int(sum(tokens)), tokens_cl100k, seconds, cost_usd,
                 int(billed_tokens if billed_tokens is not None else 0), 1 if billed_tokens is not None else 0, run_id],
            )
            self.con.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):  # a failed write may already have ended the transaction
                self.con.execute("ROLLBACK")
            if isinstance(exc, duckdb.Error):
                raise CacheError(f"{self.path}: writing embedded vectors failed ({exc}); the vectors committed "
                                 "before are kept and the next run embeds only the rest") from exc
            raise
        finally:
            with contextlib.suppress(duckdb.Error):
                self.con.unregister("batch")
            self._write.release()

    def add_lost(self, run_id: str, tokens: int, request_id: str) -> None:
        """An attempt whose answer was lost: possibly billed, recorded before it is retried (any thread)."""
        with self._write, self.con.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            cur.execute("INSERT OR IGNORE INTO lost_requests VALUES (?, ?, ?, ?)", [run_id, request_id, int(tokens), _now()])
            cur.execute("UPDATE ledger SET tokens_possibly_billed = tokens_possibly_billed + ?, "
                        "requests_lost = requests_lost + 1 WHERE run_id = ?", [int(tokens), run_id])
            cur.execute("COMMIT")

    def lost_requests(self, run_id: str | None = None) -> list[dict]:
        cols = ["run_id", "request_id", "tokens", "lost_at"]
        q = "SELECT * FROM lost_requests" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY lost_at"
        rows = self.con.execute(q, [run_id] if run_id else []).fetchall() if self._has_table("lost_requests") else []
        return [dict(zip(cols, r)) for r in rows]

    def finish_run(self, run_id: str, status: str = "complete") -> dict:
        """Close a run's ledger row: complete, or why it stopped (refused, interrupted)."""
        with self._write:
            self.con.execute("UPDATE ledger SET status = ?, finished_at = ? WHERE run_id = ?", [status, _now(), run_id])
        return self.run(run_id)

    def run(self, run_id: str) -> dict:
        cur = self.con.execute(f"SELECT * FROM {self._ledger} WHERE run_id = ?", [run_id])
        cols = [d[0] for d in cur.description]
        rows = cur.fetchall()
        row = rows[0] if rows else None
        if row is None:
            raise KeyError(f"no run {run_id} in the ledger")
        return {c: (v.isoformat() if isinstance(v, dt.datetime) else v) for c, v in zip(cols, row)}

    def runs(self) -> list[dict]:
        ids = [r[0] for r in self.con.execute(f"SELECT run_id FROM {self._ledger} ORDER BY started_at").fetchall()]
        return [self.run(i) for i in ids]

    def add_probe_cost(self, run_id: str, billed_tokens: int, probe_tokens: int, requests: int, cost_usd: float) -> None:
        """A hosted model's drift probe, paid as part of the run (not a cached text)."""
        with self._write:
            self.con.execute("UPDATE ledger SET tokens_billed = tokens_billed + ?, probe_tokens = probe_tokens + ?, "
                             "cost_usd = cost_usd + ?, requests = requests + ? WHERE run_id = ?",
                             [billed_tokens, probe_tokens, cost_usd, requests, run_id])

    def monthly(self) -> list[dict]:
        """Spend per calendar month (UTC): runs, texts, billed and planned tokens, money."""
        rows = self.con.execute(
            f"SELECT strftime(started_at, '%Y-%m') AS month, count(*), sum(texts), sum(tokens), sum({self._col('tokens_billed')}), "
            f"sum({self._col('tokens_possibly_billed')}), sum(cost_usd) FROM {self._ledger} GROUP BY month ORDER BY month").fetchall()
        return [{"month": m, "runs": int(r), "texts": int(t or 0), "tokens": int(k or 0), "tokens_billed": int(b or 0),
                 "tokens_possibly_billed": int(pb or 0), "cost_usd": float(c or 0)} for m, r, t, k, b, pb, c in rows]

    # -- a hosted model's probe ------------------------------------------------

    def probe(self, identity: str, epoch: int) -> np.ndarray | None:
        if not self._has_table("probes"):
            return None
        rows = self.con.execute("SELECT vector FROM probes WHERE identity = ? AND epoch = ? ORDER BY i",
                                [identity, epoch]).fetchall()
        return np.stack([np.frombuffer(r[0], dtype="<f4") for r in rows]) if rows else None

    def store_probe(self, identity: str, epoch: int, vectors: np.ndarray) -> None:
        """Store a hosted model's probe vectors in the cache, and whole beside it for searches (``store.spend``)."""
        with self._write:
            self.con.execute("DELETE FROM probes WHERE identity = ? AND epoch = ?", [identity, epoch])
            self.con.executemany("INSERT INTO probes VALUES (?, ?, ?, ?, ?)",
                                 [[identity, epoch, i, v.astype("<f4").tobytes(), _now()] for i, v in enumerate(vectors)])
        write_probe_file(self.path, identity, epoch, vectors)

    def probe_epoch(self, identity: str) -> int:
        """The newest epoch of a hosted model in this cache (0 when never probed)."""
        if not self._has_table("probes"):
            return 0
        row = self.con.execute("SELECT max(epoch) FROM probes WHERE identity = ?", [identity]).fetchall()
        return int(row[0][0]) if row and row[0][0] is not None else 0

    def _has_table(self, name: str) -> bool:
        return bool(self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchall()[0][0])

    def _col(self, name: str) -> str:
        """A ledger column, or 0 in a cache from before it existed (opened read-only, never migrated)."""
        if self._ledger != "ledger":
            return name  # the union with the journal has every column
        cols = {r[1] for r in self.con.execute("PRAGMA table_info('ledger')").fetchall()}
        return name if name in cols else "0"

    def totals(self) -> LedgerTotals:
        extra = ", ".join(f"coalesce(sum({self._col(c)}),0)" for c in
                          ("planned_tokens", "tokens_billed", "tokens_possibly_billed", "probe_tokens"))
        row = self.con.execute(
            "SELECT count(*), coalesce(sum(texts),0), coalesce(sum(tokens),0), coalesce(sum(tokens_cl100k),0), "
            f"coalesce(sum(seconds),0), coalesce(sum(cost_usd),0), coalesce(sum(cache_hits),0), {extra} FROM {self._ledger}"
        ).fetchall()[0]
        return LedgerTotals(int(row[0]), int(row[1]), int(row[2]), int(row[3]), float(row[4]), float(row[5]), int(row[6]),
                            *(int(v) for v in row[7:]))

    # -- spend recorded outside a writer (store.spend) ---------------------------------------

    def _fold(self, rows: pa.Table, lost: pa.Table) -> None:
        """Move the pending journal's rows into the ledger (idempotent: a row already there is kept)."""
        with self._write:
            self.con.register("pending_rows", rows)
            self.con.register("pending_lost", lost)
            try:
                self.con.execute("INSERT OR IGNORE INTO ledger BY NAME SELECT * FROM pending_rows")
                self.con.execute("INSERT OR IGNORE INTO lost_requests BY NAME SELECT * FROM pending_lost")
            finally:
                self.con.unregister("pending_rows")
                self.con.unregister("pending_lost")

    def _see_pending(self) -> None:
        """For a reader: the ledger as it will be once the pending journal is moved into it."""
        rows, _ = peek_pending(self.path)
        if rows.num_rows and self._has_table("ledger"):
            self.con.register("pending_rows", rows)
            self._ledger = "(SELECT * FROM ledger UNION ALL BY NAME SELECT * FROM pending_rows)"


def stored_probe(cache_path: Path, identity: str, epoch: int) -> np.ndarray | None:
    """A tenant's stored probe vectors for a hosted model: from the file beside the cache, else from the cache."""
    vectors = read_probe_file(cache_path, identity, epoch)
    if vectors is not None or not Path(cache_path).exists():
        return vectors
    with EmbeddingCache(cache_path, read_only=True) as cache:
        return cache.probe(identity, epoch)
