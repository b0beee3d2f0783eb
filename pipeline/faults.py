"""Fault injection for the crash tests: ``RAGINDEX_FAULT=<point>`` SIGKILLs the process there.

Points: documents-written, chunks-written, mid-embedding (after the first cache
commit), index-build (index.faiss written, generation incomplete),
generation-built (complete, not yet promoted). Costs one dict lookup when unset.
"""

from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    if os.environ.get("RAGINDEX_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
