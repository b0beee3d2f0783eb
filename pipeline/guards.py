"""Guards against silent data loss: a run that would delete most of a tenant's documents is refused.

An unmounted network share looks exactly like an empty folder, and a folder
whose files all fail to decode looks like one whose documents were all deleted.
Indexing that would empty the index with exit 0. So a run that would delete
every live document, or more than ``max_delete_share`` of them (default 50%),
is refused before anything is written, unless the run says ``--allow-deletions``
or the tenant's settings allow it.
"""

from __future__ import annotations

from ragindex.changes import ChangeSet
from ragindex.gates import Gate

MAX_DELETE_SHARE = 0.5


class MassDeletion(RuntimeError):
    """The run would delete more of the tenant's documents than allowed; nothing was changed."""


def deletion_gate(changes: ChangeSet, allow: bool = False, max_share: float = MAX_DELETE_SHARE) -> Gate:
    """Whether the change set's deletions are within the limit (or allowed anyway)."""
    live, deleted = changes.base_documents, len(changes.deletes)
    share = deleted / live if live else 0.0
    meta = {"live_documents": live, "documents_to_delete": deleted, "share": round(share, 4), "max_share": max_share,
            "allowed": allow}
    too_many = live > 0 and (deleted == live or share > max_share)
    if not too_many:
        return Gate("deletions_within_limit", True, f"{deleted} of {live} live documents deleted", meta)
    what = "every one" if deleted == live else f"{share:.0%}"
    if allow:
        return Gate("deletions_within_limit", True, f"{deleted} of {live} live documents deleted ({what}); allowed", meta)
    summary = (f"the run would delete {deleted} of {live} live documents ({what}) of tenant {changes.config.tenant}. "
               f"If the source {changes.config.source} is unmounted, empty by mistake or unreadable, fix it and run "
               "again; nothing was changed. If these documents really are gone, rerun with --allow-deletions "
               "(or set allow_deletions in the tenant's settings)")
    return Gate("deletions_within_limit", False, summary, meta)
