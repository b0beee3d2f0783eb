"""Documents as a folder of files, the way a user's source looks, and a tenant's files as a snapshot."""

from __future__ import annotations

import os
import time

OLD = time.time() - 3600  # older than the racy window: stats this old are trusted


def make_folder(root, docs, mtime=OLD):
    """One markdown file per record (``<_id>.md``: the title as a heading, then the text), mtime ``mtime``."""
    root.mkdir(parents=True, exist_ok=True)
    for d in docs:
        f = root / f"{d['_id']}.md"
        f.write_text(f"# {d['title']}\n\n{d['text']}\n", encoding="utf-8")
        os.utime(f, (mtime, mtime))
    return root


def snapshot(paths):
    """Every file of the tenant (but the lock) with its bytes and mtime."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths.root.rglob("*") if p.is_file() and p.name != "lock"}
