"""One writer per tenant: an flock on ``<tenant>/lock`` (and one on ``<tenant>/keys.lock`` for its API keys).

Only :mod:`ragindex.store.writer` takes these locks. Every function that changes
a tenant's index state calls :func:`require_held` first, so a write that forgot
the lock fails loudly instead of racing another writer.

The kernel drops an flock when its process dies, so a lock left by a killed
writer is never "held"; the pid written into the file only serves to say who
holds it, or that a previous holder died without cleaning up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path

from ragindex.errors import LockNotHeld, TenantBusy  # noqa: F401  (raised here; defined with the rest)

_held: dict[str, int] = {}  # lock file -> how many holders in this process (re-entrant use by one writer)


def held(path: Path) -> bool:
    """Whether this process holds the lock at ``path``."""
    return _held.get(str(Path(path).absolute()), 0) > 0


def require_held(path: Path, what: str) -> None:
    """Raise LockNotHeld unless this process holds the lock at ``path``."""
    if not held(path):
        raise LockNotHeld(f"{what} without the tenant's writer lock ({path}); "
                          "every write goes through ragindex.store.writer.TenantWriter")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _report_stale(pid: int) -> None:
    print(f"ragindex: recovered a stale lock left by pid {pid}, which is no longer running", file=sys.stderr)


@contextlib.contextmanager
def tenant_lock(path: Path, wait: float = 0.0, on_stale=None):
    """Hold the tenant's writer lock; wait up to ``wait`` seconds, then raise TenantBusy.

    A lock file naming a dead process is a stale lock from a killed writer: the
    kernel already released it, so it is taken over and reported through
    ``on_stale(pid)`` (default: a line on stderr).
    """
    if on_stale is None:
        on_stale = _report_stale
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    acquired = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    raise TenantBusy(
                        f"tenant is being written by another process (pid {holder}); "
                        "wait for it to finish, or pass --wait SECONDS to queue behind it"
                    ) from None
                time.sleep(0.2)
        previous = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if previous.isdigit() and int(previous) != os.getpid() and not _pid_alive(int(previous)):
            on_stale(int(previous))
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        os.fsync(fd)
        acquired = True
        key = str(path.absolute())
        _held[key] = _held.get(key, 0) + 1
        try:
            yield
        finally:
            _held[key] -= 1
    finally:
        if acquired:
            # Clear our pid however the holder ends (an error included): a pid left in the file
            # would make the next writer report a "stale lock" that was never stale.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)  # closing releases the flock


def probe_lock(path: Path, wait: float = 0.0) -> None:
    """Fail at once with TenantBusy if another process holds the lock and ``wait`` is 0; never creates the file.

    A run checks this before spending time on detection, so a second writer
    without --wait fails immediately, as it always has.
    """
    if wait > 0 or not path.exists():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        raise TenantBusy(f"tenant is being written by another process (pid {holder}); "
                         "wait for it to finish, or pass --wait SECONDS to queue behind it") from None
    finally:
        os.close(fd)  # releases the probe's lock, if it got it
