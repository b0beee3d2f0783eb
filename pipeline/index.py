"""Stage 4, tenant_index: immutable FAISS generations and the CURRENT pointer.

A generation is written completely in a temporary directory (data, then the
manifest with every file's sha256), fsynced and renamed into ``generations/``;
only then is ``CURRENT`` replaced atomically. A crash at any moment leaves the
previous generation live.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.faults import fault_point
from pipeline.fsutil import atomic_write_text, fsync_dir, sha256_file
from pipeline.tenants import TenantPaths
from schemas.tables import GENERATION_IDS

# Exact search up to here; above it an HNSW graph (see benchmarks/index_bench.py).
APPROX_THRESHOLD = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


class GenerationError(RuntimeError):
    """A generation is missing, incomplete or does not match its manifest."""


def choose_index(n: int, dim: int) -> tuple[faiss.Index, str]:
    """Exact inner product for small tenants, HNSW above APPROX_THRESHOLD vectors."""
    if n < APPROX_THRESHOLD:
        return faiss.IndexFlatIP(dim), "flat-ip"
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index, f"hnsw-m{HNSW_M}"


def new_generation_id(seed: str) -> str:
    """Sortable and content-derived: UTC time to the microsecond plus a hash of the content."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{hashlib.sha256(seed.encode()).hexdigest()[:8]}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_generation(paths: TenantPaths, rows: pa.Table, vectors: np.ndarray, info: dict) -> str:
    """Write a complete generation and return its id; CURRENT is not touched.

    ``rows`` follows GENERATION_IDS (one row per vector, in order); ``info`` goes
    into the manifest (chunker, fingerprints, counts, plan, eval metrics...).
    """
    if rows.num_rows != len(vectors):
        raise ValueError(f"{rows.num_rows} rows but {len(vectors)} vectors")
    gen_id = new_generation_id(info.get("embedder_fp", "") + "".join(rows.column("chunk_id").to_pylist()[:1000]))
    paths.generations.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = paths.generations / f".tmp-{gen_id}"
    tmp.mkdir(mode=0o700)
    try:
        dim = vectors.shape[1] if vectors.ndim == 2 else int(info.get("dim", 0))
        index, kind = choose_index(len(vectors), dim)
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        faiss.write_index(index, str(tmp / "index.faiss"))
        fault_point("index-build")
        pq.write_table(rows.cast(GENERATION_IDS), tmp / "ids.parquet", compression="zstd")
        for name in ("index.faiss", "ids.parquet"):
            _fsync_file(tmp / name)
        manifest = {
            "generation": gen_id,
            "tenant": paths.name,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "index_type": kind,
            "dim": dim,
            "vectors": int(len(vectors)),
            "files": {name: sha256_file(tmp / name) for name in ("index.faiss", "ids.parquet")},
            **info,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _fsync_file(tmp / "manifest.json")
        fsync_dir(tmp)
        os.rename(tmp, paths.generations / gen_id)
        fsync_dir(paths.generations)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return gen_id


def promote(paths: TenantPaths, gen_id: str) -> None:
    """Point CURRENT at ``gen_id`` atomically (the generation must be complete)."""
    if not (paths.generations / gen_id / "manifest.json").exists():
        raise GenerationError(f"cannot promote {gen_id}: no complete generation with that id in {paths.generations}")
    atomic_write_text(paths.current, gen_id + "\n")


def current_id(paths: TenantPaths) -> str | None:
    try:
        gen = paths.current.read_text().strip()
    except FileNotFoundError:
        return None
    return gen or None


def list_generations(paths: TenantPaths) -> list[str]:
    """Complete generations, oldest first (ids sort by creation time)."""
    if not paths.generations.is_dir():
        return []
    return sorted(d.name for d in paths.generations.iterdir() if not d.name.startswith(".") and (d / "manifest.json").exists())


def read_manifest(paths: TenantPaths, gen_id: str) -> dict:
    f = paths.generations / gen_id / "manifest.json"
    try:
        return json.loads(f.read_text())
    except FileNotFoundError:
        raise GenerationError(f"generation {gen_id} of tenant {paths.name} is missing ({f})") from None
    except ValueError as exc:
        raise GenerationError(f"{f}: corrupt manifest ({exc}); run `ragindex verify --tenant {paths.name} --repair`") from exc


@dataclass
class Generation:
    gen_id: str
    manifest: dict
    index: faiss.Index
    rows: pa.Table


def load_generation(paths: TenantPaths, gen_id: str) -> Generation:
    """Load a generation after checking its files against the manifest checksums.

    A truncated or corrupted index.faiss never reaches faiss.read_index.
    """
    manifest = read_manifest(paths, gen_id)
    gdir = paths.generations / gen_id
    for name, digest in manifest.get("files", {}).items():
        f = gdir / name
        if not f.exists():
            raise GenerationError(f"{f} is missing; run `ragindex verify --tenant {paths.name} --repair`")
        if sha256_file(f) != digest:
            raise GenerationError(f"{f} does not match its manifest checksum (corrupt or truncated); "
                                  f"run `ragindex verify --tenant {paths.name} --repair` or `ragindex rollback --tenant {paths.name}`")
    index = faiss.read_index(str(gdir / "index.faiss"))
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    rows = pq.read_table(gdir / "ids.parquet")
    if index.ntotal != rows.num_rows or index.ntotal != manifest.get("vectors"):
        raise GenerationError(f"generation {gen_id}: index has {index.ntotal} vectors, ids.parquet {rows.num_rows}, manifest {manifest.get('vectors')}")
    return Generation(gen_id, manifest, to_gpu_if_available(index), rows)


_GPU_RESOURCES = None


def to_gpu_if_available(index: faiss.Index) -> faiss.Index:
    """Serve a flat index from the GPU when the faiss GPU build and a GPU are present.

    Files on disk are always CPU indexes, so a generation written on a GPU
    machine loads anywhere. HNSW has no GPU implementation and stays on the CPU.
    Set RAGINDEX_FAISS_GPU=0 to force the CPU.
    """
    global _GPU_RESOURCES
    if os.environ.get("RAGINDEX_FAISS_GPU", "1") == "0" or not hasattr(faiss, "StandardGpuResources"):
        return index
    if faiss.get_num_gpus() < 1 or not isinstance(index, faiss.IndexFlat) or index.ntotal == 0:
        return index
    if _GPU_RESOURCES is None:
        _GPU_RESOURCES = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(_GPU_RESOURCES, 0, index)


def live_state(paths: TenantPaths) -> tuple[dict[str, str], set[str]]:
    """(doc_id -> doc_hash, chunk ids) of the live generation; empty when there is none."""
    gen = current_id(paths)
    if gen is None:
        return {}, set()
    f = paths.generations / gen / "ids.parquet"
    t = pq.read_table(f, columns=["doc_id", "doc_hash", "chunk_id"])
    return dict(zip(t.column("doc_id").to_pylist(), t.column("doc_hash").to_pylist())), set(t.column("chunk_id").to_pylist())
