"""A tenant's conversion cache: converted text and layout by (file bytes sha256, converter fingerprint).

A PDF, DOCX, PPTX or HTML file whose bytes a tenant has converted before, with the
same converter, is never converted again: not after a touch or a copy, not after a
chunker migration (which reads every document's text), not after a rollback. The
key is content-addressed, so an entry never changes once written; each file holds
one entry, zlib-compressed JSON with its own sha256, and a damaged or truncated
entry reads as a miss (the file is converted again), never as wrong text.

Entries are written by the run that converted them, under the tenant's writer,
when it commits (planning writes nothing). ``gc`` drops the entries that no
segment of a retained generation refers to.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from pathlib import Path

from ragindex.fsutil import atomic_write_bytes
from ragindex.ingest.convert.base import Converted, Layout
from ragindex.store.locking import require_held
from ragindex.store.paths import TenantPaths

_NAME = re.compile(r"([0-9a-f]{64})\.([0-9a-f]{16})\.json\.z")


def _path(paths: TenantPaths, sha256: str, convert_fp: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{64}", sha256 or "") or not re.fullmatch(r"[0-9a-f]{64}", convert_fp or ""):
        raise ValueError("conversion keys are sha256 hex digests")
    return paths.conversions / sha256[:2] / f"{sha256}.{convert_fp[:16]}.json.z"


def get(paths: TenantPaths, sha256: str, convert_fp: str) -> Converted | None:
    """The cached conversion of these bytes by this converter, or None (missing or damaged)."""
    try:
        blob = _path(paths, sha256, convert_fp).read_bytes()
        digest, payload = blob[:32], blob[32:]
        if hashlib.sha256(payload).digest() != digest:
            return None
        d = json.loads(zlib.decompress(payload))
    except (OSError, ValueError, zlib.error):
        return None
    if d.get("convert_fp") != convert_fp:
        return None
    return Converted(d["text"], Layout.from_json(d["layout"]), d.get("pages", 0), d.get("tables", 0))


def put(paths: TenantPaths, sha256: str, convert_fp: str, converted: Converted) -> int:
    """Store one conversion (the caller holds the tenant's writer); returns the bytes written (0 if present)."""
    require_held(paths.lock, f"conversion cache write of tenant {paths.name}")
    f = _path(paths, sha256, convert_fp)
    if f.exists():
        return 0
    payload = zlib.compress(json.dumps({"convert_fp": convert_fp, "text": converted.text, "layout": converted.layout.to_json(),
                                        "pages": converted.pages, "tables": converted.tables},
                                       ensure_ascii=False).encode("utf-8"), 6)
    f.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write_bytes(f, hashlib.sha256(payload).digest() + payload)
    return 32 + len(payload)


def gc(paths: TenantPaths, keep: set[tuple[str, str]]) -> list[str]:
    """Delete entries whose (sha256, fingerprint) is not in ``keep``; the caller holds the writer."""
    require_held(paths.lock, f"conversion cache gc of tenant {paths.name}")
    if not paths.conversions.is_dir():
        return []
    wanted = {(sha, fp[:16]) for sha, fp in keep}
    removed = []
    for f in sorted(paths.conversions.glob("*/*")):
        m = _NAME.fullmatch(f.name)
        if m is None:
            if f.name.startswith("."):  # a writer's temporary file left by a crash
                f.unlink(missing_ok=True)
            continue
        if (m.group(1), m.group(2)) not in wanted:
            f.unlink(missing_ok=True)
            removed.append(f.name)
    for d in paths.conversions.iterdir():
        if d.is_dir() and not any(d.iterdir()):
            os.rmdir(d)
    return removed
