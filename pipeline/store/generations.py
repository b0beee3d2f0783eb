"""Generation lifecycle: list, roll back, garbage-collect.

Generations are small manifests over shared, immutable segments. Rolling back
moves CURRENT to an older manifest (its segments are still there, gc keeps
them); gc deletes the manifests outside the retention window, then every
segment and deletion file that no remaining manifest names. Verification and
repair live in ``pipeline.store.repair``.
"""

from __future__ import annotations

import os
import shutil

from ragindex._faults import fault_point
from ragindex.store import conversions
from ragindex.store.locking import require_held
from ragindex.store.manifests import GenerationError, current_id, list_generations, promote, read_manifest
from ragindex.store.paths import TenantPaths
from ragindex.store.segments import DELETIONS_RE, SEGMENT_RE, SegmentError, read_docs, read_info

KEEP_GENERATIONS = 5  # newest generations gc keeps by default, besides the live one and the one before it


def describe(paths: TenantPaths) -> list[dict]:
    """Every generation, oldest first, with its manifest summary (and the error, if it is unreadable)."""
    try:
        live = current_id(paths)
    except GenerationError:
        live = None
    out = []
    for gen in list_generations(paths):
        try:
            m = read_manifest(paths, gen)
        except GenerationError as exc:
            out.append({"generation": gen, "live": gen == live, "error": str(exc)})
            continue
        out.append({
            "generation": gen, "live": gen == live, "created_at": m.created_at, "kind": m.kind, "parent": m.parent,
            "chunker": m.chunker, "embedder": m.embedder, "documents": m.documents, "vectors": m.chunks,
            "segments": len(m.segments), "deleted_rows": sum(r.deleted_rows for r in m.segments),
            "index_type": _index_types(paths, m), "gates": {k: v.get("passed") for k, v in m.gates.items()}, "eval": m.eval,
        })
    return out


def _index_types(paths: TenantPaths, m) -> str:

    kinds = []
    for r in m.segments:
        try:
            kinds.append(read_info(paths, r.id).index_type)
        except SegmentError:
            kinds.append("?")
    return "+".join(sorted(set(kinds))) or "empty"


def rollback_target(paths: TenantPaths) -> str | None:
    """The generation that was live before the live one's content: its parent, skipping merges and
    repairs (they keep the content of their parent). None when there is none."""
    live = current_id(paths)
    if live is None:
        return None
    m = read_manifest(paths, live)
    while m.kind in ("merge", "repair") and m.parent:
        try:
            m = read_manifest(paths, m.parent)
        except GenerationError:
            return None
    return m.parent


def rollback(paths: TenantPaths, to: str | None = None) -> str:
    """Make ``to`` (default: the generation live before the current content) live again. Caller holds the lock."""
    gens = list_generations(paths)
    if to is None:
        to = rollback_target(paths)
        if to is None:
            raise GenerationError(f"generation {current_id(paths)} of tenant {paths.name} has no earlier generation to roll back to")
        if to not in gens:
            raise GenerationError(f"the previous generation {to} of tenant {paths.name} was removed by gc; "
                                  f"pass --to GEN (one of: {', '.join(gens)})")
    if to not in gens:
        raise GenerationError(f"no generation {to!r} for tenant {paths.name}; see `ragindex generations --tenant {paths.name}`")
    promote(paths, to)
    return to


def retained(paths: TenantPaths, keep: int) -> set[str]:
    """The generations gc keeps: the newest ``keep``, the live one, and what a rollback would go to."""
    gens = list_generations(paths)
    keep_set = set(gens[-keep:]) if keep > 0 else set()
    try:
        live = current_id(paths)
        back = rollback_target(paths)
    except GenerationError:
        return set(gens)  # CURRENT or the live manifest is unreadable: keep everything until repair
    keep_set.update(g for g in (live, back) if g in gens)
    return keep_set


def gc(paths: TenantPaths, keep: int = KEEP_GENERATIONS) -> list[str]:
    """Delete generations outside the retention window, then unreferenced segments and deletion files.

    Manifests go first, so a crash part-way leaves only unreferenced files, which
    the next gc removes. A segment named by any remaining manifest is never
    deleted; if a remaining manifest is unreadable, no segment is (it may name
    them). Also removes temporary files of builds that died. Caller holds the lock.
    """
    require_held(paths.lock, f"gc of tenant {paths.name}")
    removed = []
    keep_set = retained(paths, keep)
    for gen in list_generations(paths):
        if gen not in keep_set:
            paths.manifest(gen).unlink()
            removed.append(gen)

    fault_point("gc-manifests")
    referenced_segments: set[str] = set()
    referenced_deletions: set[str] = set()
    for gen in list_generations(paths):
        try:
            m = read_manifest(paths, gen)
        except GenerationError:
            return removed + _tmp_leftovers(paths)
        for r in m.segments:
            referenced_segments.add(r.id)
            if r.deletions:
                referenced_deletions.add(r.deletions)
    if paths.segments.is_dir():
        for d in sorted(paths.segments.iterdir()):
            if SEGMENT_RE.fullmatch(d.name) and d.name not in referenced_segments:
                shutil.rmtree(d)
                removed.append(d.name)
    if paths.deletions.is_dir():
        for f in sorted(paths.deletions.iterdir()):
            if DELETIONS_RE.fullmatch(f.name) and f.name not in referenced_deletions:
                f.unlink()
                removed.append(f.name)
    removed += _conversions_gc(paths, referenced_segments)
    return removed + _tmp_leftovers(paths)


def _conversions_gc(paths: TenantPaths, segments: set[str]) -> list[str]:
    """Drop cached conversions no retained segment's documents came from (store.conversions).

    A segment whose documents cannot be read keeps every entry: it may refer to them.
    """
    if not paths.conversions.is_dir():
        return []
    keep: set[tuple[str, str]] = set()
    for seg in sorted(segments):
        try:
            docs = read_docs(paths, seg)
        except SegmentError:
            return []
        keep.update((sha, fp) for sha, fp in zip(docs.column("source_sha256").to_pylist(), docs.column("convert_fp").to_pylist())
                    if sha and fp)
    return conversions.gc(paths, keep)


def _tmp_leftovers(paths: TenantPaths) -> list[str]:
    """Temporary directories and files of writers that died (never named by anything)."""
    out = []
    for parent in (paths.segments, paths.generations, paths.deletions):
        if not parent.is_dir():
            continue
        for p in parent.glob(".*tmp*"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    continue
            out.append(p.name)
    return out


def disk_usage(paths: TenantPaths) -> dict[str, int]:
    """Bytes under each part of the tenant's directory."""
    out = {}
    for name in ("segments", "deletions", "generations", "cache"):
        d = paths.root / name
        out[name] = sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) if d.is_dir() else 0
    return out
