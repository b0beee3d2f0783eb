"""Generation lifecycle: list, roll back, garbage-collect, verify and repair.

Generations are immutable. Repair never edits one in place: it writes a new
generation from the embedding cache (no re-embedding) and, if the damaged one
was live, promotes the new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field

from pathlib import Path

import faiss
import pyarrow.parquet as pq

from pipeline.cache import CacheError, EmbeddingCache
from pipeline.fsutil import sha256_file, sha256_text
from pipeline.index import (
    GenerationError,
    current_id,
    list_generations,
    promote,
    read_manifest,
    write_generation,
)
from pipeline.tenants import TenantPaths
from schemas.tables import GENERATION_IDS


def describe(paths: TenantPaths) -> list[dict]:
    """Every complete generation, oldest first, with its manifest summary."""
    live = current_id(paths)
    out = []
    for gen in list_generations(paths):
        try:
            m = read_manifest(paths, gen)
        except GenerationError as exc:
            out.append({"generation": gen, "live": gen == live, "error": str(exc)})
            continue
        out.append({
            "generation": gen, "live": gen == live, "created_at": m.get("created_at"), "chunker": m.get("chunker"),
            "index_type": m.get("index_type"), "vectors": m.get("vectors"), "documents": m.get("counts", {}).get("documents"),
            "eval": m.get("eval"),
        })
    return out


def rollback(paths: TenantPaths, to: str | None = None) -> str:
    """Make ``to`` (default: the generation before the live one) live again."""
    gens = list_generations(paths)
    live = current_id(paths)
    if to is None:
        if live not in gens:
            raise GenerationError(f"live generation {live!r} is missing; pass --to GEN (one of: {', '.join(gens) or 'none'})")
        i = gens.index(live)
        if i == 0:
            raise GenerationError(f"{live} is the oldest generation of tenant {paths.name}; nothing to roll back to")
        to = gens[i - 1]
    if to not in gens:
        raise GenerationError(f"no complete generation {to!r} for tenant {paths.name}; see `ragindex generations --tenant {paths.name}`")
    promote(paths, to)
    return to


def gc(paths: TenantPaths, keep: int) -> list[str]:
    """Delete old generations, keeping the newest ``keep``, the live one and the one before it.

    Also removes temporary directories of builds that died. Caller holds the tenant lock.
    """
    gens = list_generations(paths)
    live = current_id(paths)
    protected = set(gens[-keep:]) if keep > 0 else set()
    if live in gens:
        protected.add(live)
        i = gens.index(live)
        if i > 0:
            protected.add(gens[i - 1])
    removed = []
    for gen in gens:
        if gen not in protected:
            shutil.rmtree(paths.generations / gen)
            removed.append(gen)
    for tmp in paths.generations.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp.name)
    return removed


@dataclass
class GenerationReport:
    generation: str
    live: bool
    problems: list[str] = field(default_factory=list)
    repaired_as: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def check_generation(paths: TenantPaths, gen: str, cache: EmbeddingCache | None) -> list[str]:
    """Manifest <-> file checksums <-> FAISS ntotal <-> ids rows <-> cache, as a list of problems."""
    try:
        m = read_manifest(paths, gen)
    except GenerationError as exc:
        return [str(exc)]
    gdir = paths.generations / gen
    problems = []
    for name, digest in m.get("files", {}).items():
        f = gdir / name
        if not f.exists():
            problems.append(f"{name} is missing")
        elif sha256_file(f) != digest:
            problems.append(f"{name} does not match its manifest checksum (corrupt or truncated)")
    if problems:
        return problems
    index = faiss.read_index(str(gdir / "index.faiss"))
    rows = pq.read_table(gdir / "ids.parquet")
    if not (index.ntotal == rows.num_rows == m.get("vectors")):
        problems.append(f"counts differ: index {index.ntotal}, ids {rows.num_rows}, manifest {m.get('vectors')}")
    texts, hashes = rows.column("text").to_pylist(), rows.column("text_hash").to_pylist()
    bad = sum(1 for t, h in zip(texts, hashes) if sha256_text(t) != h)
    if bad:
        problems.append(f"{bad} rows whose text does not match its text_hash")
    if cache is not None:
        missing = len(set(hashes) - cache.cached_hashes(m["embedder_fp"], list(set(hashes))))
        if missing:
            problems.append(f"{missing} texts have no vector in the embedding cache (repair would need re-embedding)")
    return problems


def _rows_for_repair(paths: TenantPaths, gen: str, manifest: dict):
    """The damaged generation's rows: its own ids.parquet if intact, else the stage's chunks file."""
    f = paths.generations / gen / "ids.parquet"
    if f.exists() and sha256_file(f) == manifest.get("files", {}).get("ids.parquet"):
        return pq.read_table(f).cast(GENERATION_IDS)
    chunks = paths.chunks(manifest["chunker"])
    if chunks.exists():
        t = pq.read_table(chunks)
        if set(t.column("chunker_fp").to_pylist()) == {manifest.get("chunker_fp")}:
            from pipeline.reindex import build_rows

            return build_rows(t)
    raise GenerationError(f"cannot repair {gen}: its ids.parquet is damaged and {chunks} does not hold the same chunks; run `ragindex reindex`")


def check_stage_files(paths: TenantPaths) -> list[tuple[Path, str]]:
    """documents.parquet and chunks/*.parquet: derived files that must still read as their Arrow schema."""
    from pipeline.documents import read_documents
    from schemas.tables import CHUNKS

    bad = []
    if paths.documents.exists():
        try:
            read_documents(paths.documents)
        except ValueError as exc:
            bad.append((paths.documents, str(exc)))
    for f in sorted(paths.chunks_dir.glob("*.parquet")) if paths.chunks_dir.exists() else []:
        try:
            t = pq.read_table(f)
            if not CHUNKS.remove_metadata().equals(t.schema.remove_metadata()):
                raise ValueError(f"unexpected columns {t.column_names}")
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
            bad.append((f, f"{f}: corrupt chunks file ({exc})"))
    return bad


def _restore_cache(paths: TenantPaths, gens: list[str]) -> str:
    """Move a corrupt cache aside and refill a new one with the vectors stored in intact generations."""
    aside = paths.cache.with_name(f"embeddings.duckdb.corrupt-{int(time.time())}")
    os.replace(paths.cache, aside)
    wal = paths.cache.with_name(paths.cache.name + ".wal")
    if wal.exists():
        os.replace(wal, aside.with_name(aside.name + ".wal"))
    restored = 0
    with EmbeddingCache(paths.cache) as cache:
        for gen in gens:
            if check_generation(paths, gen, None):
                continue
            m = read_manifest(paths, gen)
            index = faiss.read_index(str(paths.generations / gen / "index.faiss"))
            rows = pq.read_table(paths.generations / gen / "ids.parquet", columns=["text_hash"])
            if index.ntotal:
                restored += cache.restore(m["embedder_fp"], rows.column("text_hash").to_pylist(), index.reconstruct_n(0, index.ntotal), gen)
    return f"moved the corrupt cache to {aside.name} and restored {restored} vectors from the generations (the old ledger stays in that file)"


def _rebuild(paths: TenantPaths, gen: str, cache: EmbeddingCache) -> str:
    """A new generation with the damaged one's rows and cached vectors (no embedding)."""
    m = read_manifest(paths, gen)
    rows = _rows_for_repair(paths, gen, m)
    vectors = cache.vectors(m["embedder_fp"], rows.column("text_hash").to_pylist(), m["dim"])
    info = {k: v for k, v in m.items() if k not in ("generation", "created_at", "files", "vectors", "index_type", "tenant")}
    info["repaired_from"] = gen
    return write_generation(paths, rows, vectors, info)


def verify(paths: TenantPaths, repair: bool = False) -> dict:
    """Check every generation, the CURRENT pointer, the cache and the stage files; ``repair`` fixes what it can.

    Repair never re-embeds: generations are rebuilt from the cache, a corrupt
    cache is refilled from the vectors stored in intact generations, and corrupt
    stage files (derived data) are removed so the next reindex rewrites them.
    """
    live = current_id(paths)
    gens = list_generations(paths)
    out: dict = {"tenant": paths.name, "current": live, "generations": [], "problems": [], "repairs": []}
    if live is not None and live not in gens:
        out["problems"].append(f"CURRENT names {live!r}, which is not a complete generation")
    for f, problem in check_stage_files(paths):
        out["problems"].append(problem)
        if repair:
            f.unlink()
            out["repairs"].append(f"removed {f.name}; the next reindex rewrites it (no re-embedding)")
    leftovers = sorted(p.name for p in paths.generations.glob(".tmp-*")) if paths.generations.exists() else []
    if leftovers:
        out["incomplete_builds"] = leftovers  # harmless: never live; `ragindex gc` removes them
    with contextlib.ExitStack() as stack:
        cache = None
        try:
            if paths.cache.exists():
                cache = stack.enter_context(EmbeddingCache(paths.cache, read_only=not repair))
        except CacheError as exc:
            out["problems"].append(str(exc))
            if repair:
                out["repairs"].append(_restore_cache(paths, gens))
                cache = stack.enter_context(EmbeddingCache(paths.cache))
        for gen in gens:
            rep = GenerationReport(gen, gen == live, check_generation(paths, gen, cache))
            if repair and not rep.ok and cache is not None:
                try:
                    rep.repaired_as = _rebuild(paths, gen, cache)
                except (GenerationError, KeyError) as exc:
                    rep.problems.append(f"not repairable: {exc}")
                if rep.repaired_as and rep.live:
                    promote(paths, rep.repaired_as)
            out["generations"].append(rep.__dict__ | {"ok": rep.ok})
        live_damaged = live not in gens or any(g["live"] and not g["ok"] and not g["repaired_as"] for g in out["generations"])
        if repair and live is not None and live_damaged:
            # The live generation is gone or beyond repair: fall back to the newest usable one.
            usable = [g["repaired_as"] or g["generation"] for g in out["generations"]
                      if (g["ok"] or g["repaired_as"]) and g["generation"] != live]
            if usable:
                promote(paths, usable[-1])
                out["repaired_current"] = usable[-1]
    out["ok"] = not out["problems"] and all(g["ok"] for g in out["generations"])
    out["current_after"] = current_id(paths)
    return out
