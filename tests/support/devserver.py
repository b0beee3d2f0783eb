"""Starting and stopping `dagster dev` on localhost (the UI and daemon tests and the overhead benchmark share this).

`dagster dev` runs the webserver, the daemon (sensors, run queue, backfills) and a
code server, each its own process; it is started in a new process group so that
:func:`stop_process_group` can stop all of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DevServer:
    proc: subprocess.Popen
    base_url: str
    startup_s: float
    dagster_home: Path

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30.0) -> dict:
        """POST one GraphQL request to the webserver (what the UI does); raises on transport or GraphQL errors."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.base_url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = json.loads(r.read())
        if out.get("errors"):
            raise RuntimeError(f"GraphQL errors: {out['errors']}")
        return out["data"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_dagster_home(path: Path) -> Path:
    """A new DAGSTER_HOME holding a copy of the repository's dagster.yaml (run queue, sqlite, no telemetry)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", path / "dagster.yaml")
    return path


@contextlib.contextmanager
def dagster_dev(env: dict[str, str], log: IO | int = subprocess.DEVNULL, timeout: float = 300.0) -> Iterator[DevServer]:
    """Run `dagster dev` from the repository root on 127.0.0.1 until the block exits.

    ``env`` must name an absolute DAGSTER_HOME. Yields once /server_info answers;
    raises RuntimeError (with the exit code) if it exits or does not answer in ``timeout`` s.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dagster = Path(sys.executable).parent / "dagster"
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with code {proc.returncode} before answering")
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=1.0).read()
                break
            except OSError:
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"dagster dev did not answer within {timeout:.0f} s") from None
                time.sleep(0.2)
        yield DevServer(proc, base, time.perf_counter() - t0, Path(env["DAGSTER_HOME"]))
    finally:
        stop_process_group(proc)


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
