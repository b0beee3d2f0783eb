"""Fault injection for the crash and concurrency tests.

``RAGINDEX_FAULT=<point>`` SIGKILLs the process when it reaches that point.
``RAGINDEX_FAULT=<point>:stop`` SIGSTOPs it there instead, the first time only. The test then acts
while the process is frozen at a known place, and SIGCONTs it. This is how
the concurrency tests interleave two writers deterministically.

Points: documents-written, chunks-written, mid-embedding (after the first cache
commit), index-build (index.faiss written, generation incomplete),
generation-built (complete, not yet promoted); in the Dagster embeddings asset,
embeddings-lock (just before it takes the tenant lock). Costs one dict lookup
when unset.
"""

from __future__ import annotations

import os
import signal

_stopped: set[str] = set()


def fault_point(name: str) -> None:
    fault = os.environ.get("RAGINDEX_FAULT")
    if fault == name:
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == f"{name}:stop" and name not in _stopped:
        _stopped.add(name)
        os.kill(os.getpid(), signal.SIGSTOP)
