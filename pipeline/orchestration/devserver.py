"""Stopping a `dagster dev` started in its own process group (tests and benchmarks share this)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGINT the group, wait up to ``grace`` seconds, then SIGKILL whatever outlived the parent."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
