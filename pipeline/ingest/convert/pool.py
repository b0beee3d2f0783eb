"""Run conversions in worker processes: a crash or a hang costs one file, never the run.

Converters parse untrusted binary formats with native libraries (PDFium, lxml,
Lexbor). A malformed file can crash such a library or send it into a loop, so no
conversion runs in the indexing process. :class:`ConvertPool` keeps one worker per
core (``$RAGINDEX_CONVERT_WORKERS``), each a *spawned* process (forking a process
that holds torch and FAISS threads can deadlock), and hands each worker one file at
a time over a pipe. A worker that dies mid-file is replaced and the file reported
as ``converter crashed``; a file that takes longer than the per-file timeout
(``$RAGINDEX_CONVERT_TIMEOUT``, default 120 s) has its worker killed and replaced and
is reported as ``converter timed out``. Every other failure is the converter's own
:class:`ConversionError` reason ("encrypted: no password", ...).

Workers are started only when there is something to convert, and only as many as
there are files. ``RAGINDEX_CONVERT_WORKERS=0`` converts in the calling process
instead, one file after another, with no crash or hang protection: for debugging
a converter (a breakpoint, a profiler), never for production runs.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from tqdm import tqdm

from ragindex.ingest.convert import converter_for
from ragindex.ingest.convert.base import ConversionError, Converted, Layout, Limits


def default_workers() -> int:
    env = os.environ.get("RAGINDEX_CONVERT_WORKERS")
    if env:
        return max(0, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_timeout() -> float:
    return float(os.environ.get("RAGINDEX_CONVERT_TIMEOUT", "120"))


@dataclass(frozen=True)
class Job:
    key: str  # the caller's handle: a document id
    suffix: str  # which converter
    data: bytes  # exactly the bytes that were hashed


@dataclass(frozen=True)
class Outcome:
    key: str
    converted: Converted | None
    error: str | None  # the skip reason when ``converted`` is None
    seconds: float
    transient: bool = False  # a crash or a timeout: the previous version of the document is kept


def convert_one(suffix: str, data: bytes, limits: Limits) -> Converted:
    """Convert in this process (the worker's body; also what ``read_source`` uses)."""
    return converter_for(suffix).convert(data, limits)


def _worker(conn: Connection, limits: Limits) -> None:  # pragma: no cover - runs in the child
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        key, suffix = msg
        data = conn.recv_bytes()
        fault = os.environ.get("RAGINDEX_FAULT", "")
        if fault == f"convert-crash:{key}":
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == f"convert-hang:{key}":
            time.sleep(3600)
        t0 = time.perf_counter()
        try:
            c = convert_one(suffix, data, limits)
            reply = ("ok", c.text, c.layout.to_json(), c.pages, c.tables)
        except ConversionError as exc:
            reply = ("error", str(exc))
        except MemoryError:
            reply = ("error", "converter ran out of memory")
        except Exception as exc:  # noqa: BLE001 - a library's own bug on one file: report it, go on
            reply = ("error", f"converter failed: {type(exc).__name__}: {str(exc)[:200]}")
        conn.send((reply, time.perf_counter() - t0))


class _Worker:
    def __init__(self, ctx, limits: Limits) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker, args=(child, limits), daemon=True, name="ragindex-convert")
        self.proc.start()
        child.close()
        self.job: Job | None = None
        self.deadline = 0.0
        self.started = 0.0

    def give(self, job: Job, timeout: float) -> None:
        self.job, self.started = job, time.monotonic()
        self.deadline = self.started + timeout
        self.conn.send((job.key, job.suffix))
        self.conn.send_bytes(job.data)

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


class ConvertPool:
    """Worker processes for conversions. Use as a context manager; :meth:`run` yields outcomes as they finish."""

    def __init__(self, workers: int | None = None, timeout: float | None = None, limits: Limits | None = None) -> None:
        self.workers = default_workers() if workers is None else workers
        self.timeout = timeout if timeout is not None else default_timeout()
        self.limits = limits or Limits.from_env()
        self._ctx = mp.get_context("spawn")
        self._pool: list[_Worker] = []

    def __enter__(self) -> ConvertPool:
        return self

    def __exit__(self, *exc) -> None:
        for w in self._pool:
            w.stop() if exc[0] is None else w.kill()
        self._pool = []

    def run(self, jobs: Iterable[Job], total: int, progress: bool = False, desc: str = "convert") -> Iterator[Outcome]:
        """Convert every job (``total`` of them); yields one Outcome per job, in completion order.

        Jobs are pulled from ``jobs`` only as workers free up, so a caller that reads
        files lazily holds at most one file per worker in memory.
        """
        if self.workers == 0:
            yield from self._in_process(jobs, total, progress, desc)
            return
        pending = iter(jobs)
        retry: deque[Job] = deque()
        while len(self._pool) < min(self.workers, total):
            self._pool.append(_Worker(self._ctx, self.limits))
        bar = tqdm(total=total, desc=desc, unit="file", disable=not progress, leave=False)
        idle = [w for w in self._pool if w.job is None]
        busy: dict[Connection, _Worker] = {}
        exhausted = False
        try:
            while True:
                while idle and not exhausted:
                    job = retry.popleft() if retry else next(pending, None)
                    if job is None:
                        exhausted = True
                        break
                    w = idle.pop()
                    try:
                        w.give(job, self.timeout)
                    except OSError:  # the worker died while idle: replace it and give the job to another
                        idle.append(self._replace(w))
                        retry.append(job)
                        continue
                    busy[w.conn] = w
                if not busy:
                    break
                now = time.monotonic()
                ready = wait(list(busy), timeout=max(0.0, min(w.deadline for w in busy.values()) - now))
                for conn in ready:
                    w = busy.pop(conn)
                    job = w.job
                    try:
                        reply, seconds = conn.recv()
                    except (EOFError, OSError):
                        w.proc.join(5)
                        code = w.proc.exitcode
                        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                        yield Outcome(job.key, None, f"converter crashed ({why}); the file may be malformed",
                                      time.monotonic() - w.started, transient=True)
                        idle.append(self._replace(w))
                    else:
                        w.job = None
                        idle.append(w)
                        yield _outcome(job.key, reply, seconds)
                    bar.update(1)
                now = time.monotonic()
                for conn, w in list(busy.items()):
                    if now >= w.deadline:
                        busy.pop(conn)
                        yield Outcome(w.job.key, None, f"converter timed out after {self.timeout:g} s "
                                      "(raise RAGINDEX_CONVERT_TIMEOUT for very large files)", now - w.started, transient=True)
                        idle.append(self._replace(w))
                        bar.update(1)
        finally:
            bar.close()

    def _in_process(self, jobs: Iterable[Job], total: int, progress: bool, desc: str) -> Iterator[Outcome]:
        for job in tqdm(jobs, total=total, desc=desc, unit="file", disable=not progress, leave=False):
            t0 = time.perf_counter()
            try:
                c = convert_one(job.suffix, job.data, self.limits)
            except ConversionError as exc:
                yield Outcome(job.key, None, str(exc), time.perf_counter() - t0)
                continue
            yield Outcome(job.key, c, None, time.perf_counter() - t0)

    def _replace(self, w: _Worker) -> _Worker:
        w.kill()
        new = _Worker(self._ctx, self.limits)
        self._pool[self._pool.index(w)] = new
        return new


def _outcome(key: str, reply: tuple, seconds: float) -> Outcome:
    if reply[0] == "ok":
        _, text, layout, pages, tables = reply
        return Outcome(key, Converted(text, Layout.from_json(layout), pages, tables), None, seconds)
    return Outcome(key, None, reply[1], seconds)
