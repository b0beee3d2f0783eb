"""Fault injection for the crash and concurrency tests (private: not part of the API).

``RAGINDEX_FAULT=<point>`` SIGKILLs the process when it reaches that point.
``RAGINDEX_FAULT=<point>:stop`` SIGSTOPs it there instead, the first time only. The test then acts
while the process is frozen at a known place, and SIGCONTs it. This is how
the concurrency tests interleave two writers deterministically. Costs one dict
lookup when unset.

=================  ========================================================================
point              where
=================  ========================================================================
mid-embedding      after the first cache commit of an embedding run (indexing.embed)
segment-file       a segment's first file written, the segment incomplete (store.segments)
segment-written    a segment complete and durable, not yet in any manifest
deletions-written  a deletion set written, not yet in any manifest
generation-built   the new manifest complete, not yet promoted (indexing.commit)
promoted           CURRENT replaced (store.manifests.promote): the new generation and its pin
                   are live; tenant.json not yet brought in line
merge-written      a merged segment written, its generation not yet promoted (store.merge)
gc-manifests       gc removed old manifests, not yet the files only they named
tenant-removing    a removed tenant's directory renamed aside, not yet deleted (store.offboard)
embeddings-step    the Dagster embeddings asset, at its start: documents and chunks done, the run's
                   writer lock held since the run started (orchestration.resources)
=================  ========================================================================
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
