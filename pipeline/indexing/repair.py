"""verify and repair: every piece of a tenant's index checked, each damaged piece fixed on its own.

verify checks CURRENT, every generation manifest, every segment they name
(checksums and counts), every deletion file, and the embedding cache (present,
readable, holding a vector for every row). Repair never re-embeds:

* a damaged ``index.faiss`` is rebuilt from the segment's rows and the cached vectors;
* a damaged ``docs.parquet`` is rebuilt from the rows;
* a damaged ``rows.parquet`` is rebuilt by chunking the segment's documents again
  from the tenant's source, if their content still has the recorded hashes;
* a missing or corrupt cache is refilled from the vectors the segments store;
* a generation that still names something broken (or whose manifest is corrupt)
  is moved aside as ``<gen>.json.damaged``, and CURRENT moves to the newest
  intact generation that passed its checks;
* ``CURRENT`` that is not a file, or ``segments``, ``deletions`` or ``generations``
  that is not a directory, is moved aside as ``<name>.damaged`` (structural damage
  is damage, exit 5, never a permissions problem).

A segment that is not this tenant's (``ForeignSegment``: written for another
tenant, or not the one its generation recorded) is reported under ``foreign`` and
never repaired, nor used to refill the cache: the generations naming it are moved
aside. A tenant without a live generation (none yet, or all moved aside) is never
reported ok. So after a repair that reports ``repaired``, a plain verify is ok again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ragindex.fsutil import atomic_write_bytes, atomic_write_text, sha256_text
from ragindex.indexing.chunk import chunk_changes, piece_stage
from ragindex.ingest.changeset import ChangeSet, DocChange, RunConfig, canonical_metadata
from ragindex.ingest.sources import read_source
from ragindex.schemas import SchemaRegistry
from ragindex.schemas.tables import SEGMENT_DOCS, SEGMENT_ROWS
from ragindex.store.cache import CacheBusy, CacheError, EmbeddingCache
from ragindex.store.lexical import LexicalIndex
from ragindex.store.locking import require_held
from ragindex.store.manifests import GenerationError, SourceState, check_ref, current_id, list_generations, promote, read_manifest
from ragindex.store.paths import TenantPaths
from ragindex.store.segments import (
    SEGMENT_RE,
    ForeignSegment,
    SegmentError,
    SegmentInfo,
    _parquet_bytes,
    build_index,
    check_segment,
    index_bytes,
    lexical_texts,
    load_segment,
    read_deletions,
    read_info,
    read_verified,
    segment_dir,
    vectors_of,
)
from ragindex.store.tenants import TenantStore


def verify(paths: TenantPaths, repair: bool = False, store=None) -> dict:
    """Check everything (see the module docstring); with ``repair``, fix what can be fixed. Caller holds the
    lock when repairing. ``status``: ok (nothing wrong), repaired (all fixed), partly repaired (consistent
    again, but generations that could not be made whole were moved aside) or damaged (problems remain)."""
    if repair:
        require_held(paths.lock, f"repairing tenant {paths.name}")
    out: dict = {"tenant": paths.name, "problems": [], "generations": [], "segments": {}, "foreign": [], "repairs": [],
                 "moved_aside": []}
    found = _inspect(paths, out)
    if repair and (out["problems"] or any(not g["ok"] for g in out["generations"]) or found["bad_current"]):
        _repair(paths, out, found, store or TenantStore(paths.root.parent.parent))
        after = verify(paths, repair=False)
        out["after"] = {"ok": after["ok"], "problems": after["problems"]}
        # "partly repaired": consistent again, but generations that could not be made whole were moved aside.
        out["status"] = ("partly repaired" if out["moved_aside"] else "repaired") if after["ok"] else "damaged"
        out["ok"] = False
    else:
        out["ok"] = not out["problems"] and all(g["ok"] for g in out["generations"]) and not found["bad_current"]
        out["status"] = "ok" if out["ok"] else "damaged"
    try:
        out["current_after"] = current_id(paths)
    except GenerationError:
        out["current_after"] = None
    return out


def _inspect(paths: TenantPaths, out: dict) -> dict:
    """Fill ``out`` with what is wrong; return the details repair needs."""
    found: dict = {"bad_current": False, "manifests": {}, "bad_segments": {}, "foreign": set(), "bad_deletions": set(),
                   "cache": "ok", "structure": _structure(paths)}
    out["problems"] += [f"{p} is not a directory (structural damage; --repair moves it aside)"
                        for p, kind in found["structure"] if kind == "directory"]  # CURRENT: current_id says it
    try:
        live = current_id(paths)
    except GenerationError as exc:
        live = None
        found["bad_current"] = True
        out["problems"].append(str(exc))
    out["current"] = live
    gens = list_generations(paths)
    if live is not None and live not in gens:
        found["bad_current"] = True
        out["problems"].append(f"CURRENT names {live!r}, which has no manifest")
    if live is None and gens and not found["bad_current"]:
        found["bad_current"] = True
        out["problems"].append(f"CURRENT is missing, but {len(gens)} generation(s) exist: search has no live generation")
    elif live is None and not found["bad_current"]:
        aside = sorted(paths.generations.glob("*.json.damaged*")) if paths.generations.is_dir() else []
        why = f"every generation was moved aside ({len(aside)} *.json.damaged)" if aside else "none was built yet"
        out["problems"].append(f"tenant {paths.name} has no live generation ({why}): search has nothing to serve; "
                               f"run `ragindex reindex --tenant {paths.name}`")
    for gen in gens:
        try:
            found["manifests"][gen] = read_manifest(paths, gen)
        except GenerationError as exc:
            found["manifests"][gen] = None
            out["generations"].append({"generation": gen, "live": gen == live, "ok": False, "problems": [str(exc)]})
    refs: dict[str, list] = {}
    for gen, m in found["manifests"].items():
        for r in (m.segments if m else []):
            refs.setdefault(r.id, []).append((gen, r))
    seg_ids = sorted(refs)
    for sid in seg_ids:
        try:
            for gen, r in refs[sid]:
                check_ref(paths, r, gen)  # this tenant's, and the segment each generation recorded
            problems = check_segment(paths, sid)
        except ForeignSegment as exc:
            found["foreign"].add(sid)
            out["problems"].append(str(exc))
            problems = [str(exc)]
        except SegmentError:
            problems = check_segment(paths, sid)  # says what is wrong with it
        out["segments"][sid] = problems
        if problems:
            found["bad_segments"][sid] = problems
    out["foreign"] = sorted(found["foreign"])
    for m in found["manifests"].values():
        for r in (m.segments if m else []):
            if r.deletions and r.deletions not in found["bad_deletions"]:
                try:
                    read_deletions(paths, r.deletions, r.deletions_sha256 or "")
                except SegmentError as exc:
                    found["bad_deletions"].add(r.deletions)
                    out["problems"].append(str(exc))
    for gen, m in found["manifests"].items():
        if m is None:
            continue
        problems = [f"segment {r.id}: {'; '.join(found['bad_segments'][r.id])}" for r in m.segments if r.id in found["bad_segments"]]
        problems += [f"deletion file {r.deletions} is damaged" for r in m.segments if r.deletions in found["bad_deletions"]]
        out["generations"].append({"generation": gen, "live": gen == live, "ok": not problems, "problems": problems})
    out["generations"].sort(key=lambda g: g["generation"])
    _inspect_cache(paths, out, found, seg_ids)
    leftovers = sorted(p.name for d in (paths.segments, paths.generations) if d.is_dir() for p in d.glob(".tmp-*"))
    if leftovers:
        out["incomplete_builds"] = leftovers  # harmless: never named by a generation; gc removes them
    return found


def _inspect_cache(paths: TenantPaths, out: dict, found: dict, seg_ids: list[str]) -> None:
    if not paths.cache.exists():
        if seg_ids:
            found["cache"] = "missing"
            out["problems"].append(f"the embedding cache {paths.cache} is missing, though the segments hold "
                                   "every vector; run `ragindex verify --repair` to refill it (a reindex would pay again)")
        return
    try:
        with EmbeddingCache(paths.cache, read_only=True) as cache:
            for sid in seg_ids:
                if sid in found["bad_segments"]:
                    continue
                info = read_info(paths, sid)
                hashes = _text_hashes(paths, sid, info)
                missing = len(set(hashes) - cache.cached_hashes(info.embedder_fp, list(set(hashes))))
                if missing:
                    found["cache"] = "incomplete"
                    out["problems"].append(f"segment {sid}: {missing} texts have no vector in the embedding cache; "
                                           "`ragindex verify --repair` refills them from the segments")
    except CacheBusy:
        raise  # a running reindex holds it: verify again afterwards; never "repair" a busy cache
    except CacheError as exc:
        found["cache"] = "corrupt"
        out["problems"].append(str(exc))


def _text_hashes(paths: TenantPaths, sid: str, info: SegmentInfo) -> list[str]:
    data = read_verified(segment_dir(paths, sid) / "rows.parquet", info.files["rows.parquet"])
    return pq.read_table(pa.BufferReader(data), columns=["text_hash"]).column("text_hash").to_pylist()


# -- repair -----------------------------------------------------------------------


def _structure(paths: TenantPaths) -> list[tuple[Path, str]]:
    """(path, what it should be) for each of CURRENT, segments, deletions and generations that is something else."""
    bad = [(paths.current, "file")] if paths.current.exists() and not paths.current.is_file() else []
    return bad + [(d, "directory") for d in (paths.segments, paths.deletions, paths.generations) if d.exists() and not d.is_dir()]


def _repair(paths: TenantPaths, out: dict, found: dict, store) -> None:
    for path, kind in found["structure"]:
        out["repairs"].append(f"{path.name} was not a {kind}: moved aside as {_aside(path)}")
        if kind == "directory":
            path.mkdir(mode=0o700)
    intact = [sid for sid in out["segments"] if sid not in found["bad_segments"]]
    if found["cache"] in ("missing", "corrupt", "incomplete"):
        out["repairs"].append(_refill_cache(paths, intact, aside=found["cache"] == "corrupt"))
    with contextlib.ExitStack() as stack:
        cache = stack.enter_context(EmbeddingCache(paths.cache, read_only=True)) if paths.cache.exists() else None
        for sid in found["bad_segments"]:
            if sid in found["foreign"]:
                out["repairs"].append(f"segment {sid}: not repaired and not used for any repair (not this tenant's)")
                continue
            try:
                what = repair_segment(paths, sid, cache, store)
                out["repairs"].append(f"segment {sid}: {what}")
            except (SegmentError, KeyError, GenerationError, ValueError) as exc:
                out["repairs"].append(f"segment {sid}: not repairable ({exc})")
    still_bad = {sid for sid in found["bad_segments"] if sid in found["foreign"] or check_segment(paths, sid)}
    for gen, m in found["manifests"].items():
        broken = m is None or any(r.id in still_bad or r.deletions in found["bad_deletions"] for r in m.segments)
        if broken:
            aside = _aside(paths.manifest(gen))
            out["moved_aside"].append(aside)
            out["repairs"].append(f"generation {gen} cannot be made whole; moved aside as {aside}")
    _repair_current(paths, out)


def _aside(src: Path) -> str:
    """Rename ``src`` to ``<name>.damaged`` (``.damaged-2``... if taken), for inspection; the new name."""
    dst = src.with_name(f"{src.name}.damaged")
    n = 1
    while dst.exists():
        n += 1
        dst = src.with_name(f"{src.name}.damaged-{n}")
    os.replace(src, dst)
    return dst.name


def _repair_current(paths: TenantPaths, out: dict) -> None:
    try:
        live = current_id(paths)
    except GenerationError:
        live = None
    gens = list_generations(paths)
    if live in gens:
        return
    usable = []
    for g in gens:
        m = read_manifest(paths, g)
        if all(v.get("passed", True) for v in m.gates.values()):
            usable.append(g)
    if usable:
        promote(paths, usable[-1])
        out["repaired_current"] = usable[-1]
        out["repairs"].append(f"CURRENT now names {usable[-1]}, the newest intact generation")
    elif paths.current.exists():
        paths.current.unlink()
        out["repairs"].append("no intact generation is left: CURRENT removed; run `ragindex reindex` to build one")


def _refill_cache(paths: TenantPaths, seg_ids: list[str], aside: bool) -> str:
    """Refill the cache with the vectors stored in intact segments (moving a corrupt one aside first)."""
    note = ""
    if aside:
        stamp = int(time.time())
        moved = paths.cache.with_name(f"embeddings.duckdb.corrupt-{stamp}")
        os.replace(paths.cache, moved)
        wal = paths.cache.with_name(paths.cache.name + ".wal")
        if wal.exists():
            os.replace(wal, moved.with_name(moved.name + ".wal"))
        note = f"moved the corrupt cache to {moved.name} (the old ledger stays in that file) and "
    restored = 0
    with EmbeddingCache(paths.cache) as cache:
        for sid in seg_ids:
            seg = load_segment(paths, sid)
            if seg.index.ntotal:
                restored += cache.restore(seg.info.embedder_fp, seg.rows.column("text_hash").to_pylist(), vectors_of(seg.index), sid)
    return f"{note}restored {restored} vectors into the cache from {len(seg_ids)} segment(s); nothing re-embedded"


def repair_segment(paths: TenantPaths, sid: str, cache: EmbeddingCache | None, store=None) -> str:
    """Restore a damaged file of segment ``sid`` to the content the segment already had."""
    if not SEGMENT_RE.fullmatch(sid):
        raise SegmentError(f"invalid segment id {sid!r}")
    info = read_info(paths, sid)  # a damaged segment.json is not repairable: it holds the checksums
    d = segment_dir(paths, sid)
    bad = []
    for name in info.files:
        try:
            read_verified(d / name, info.files[name])
        except SegmentError:
            bad.append(name)
    if not bad:
        problems = check_segment(paths, sid)
        raise SegmentError("; ".join(problems) or "no damaged file found")
    files = dict(info.files)
    done = []
    if "rows.parquet" in bad:
        rows = _rows_from_source(paths, info, store)
        files["rows.parquet"] = _replace(d / "rows.parquet", _parquet_bytes(rows, SEGMENT_ROWS))
        done.append("rows.parquet rebuilt by chunking its documents from the source (same content hashes)")
    rows = pq.read_table(d / "rows.parquet")
    if "docs.parquet" in bad:
        docs = _docs_from_rows(rows)
        files["docs.parquet"] = _replace(d / "docs.parquet", _parquet_bytes(docs, SEGMENT_DOCS))
        done.append("docs.parquet rebuilt from the rows (stats unknown: those files are read again next run)")
    if "lexical.npz" in bad:
        files["lexical.npz"] = _replace(d / "lexical.npz", LexicalIndex.build(lexical_texts(rows)).to_bytes())
        done.append("lexical.npz rebuilt from the rows")
    if "index.faiss" in bad:
        if cache is None:
            raise SegmentError("index.faiss is damaged and there is no embedding cache to rebuild it from")
        vectors = cache.vectors(info.embedder_fp, rows.column("text_hash").to_pylist(), info.dim)
        index, kind = build_index(vectors, info.dim)
        files["index.faiss"] = _replace(d / "index.faiss", index_bytes(index))
        done.append(f"index.faiss rebuilt from {len(vectors)} cached vectors ({kind}); nothing re-embedded")
    fixed = info.model_copy(update={"files": files, "repaired_at": dt.datetime.now(dt.timezone.utc).isoformat()})
    atomic_write_text(d / "segment.json", fixed.model_dump_json(indent=2))
    problems = check_segment(paths, sid)
    if problems:
        raise SegmentError("; ".join(problems))
    return "; ".join(done)


def _replace(path, data: bytes) -> str:
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _docs_from_rows(rows: pa.Table) -> pa.Table:
    ids, hashes, metas = (rows.column(c).to_pylist() for c in ("doc_id", "doc_hash", "metadata"))
    out = {name: [] for name in SEGMENT_DOCS.names}
    for i, (doc, h, meta) in enumerate(zip(ids, hashes, metas)):
        if i and ids[i - 1] == doc:
            out["n_rows"][-1] += 1
            continue
        for k in SEGMENT_DOCS.names:  # what the rows do not tell (stat, converted bytes) is unknown: read again next run
            out[k].append({"doc_id": doc, "doc_hash": h, "metadata": meta, "first_row": i, "n_rows": 1}.get(k, -1 if k in ("size", "mtime_ns") else None))
    return pa.Table.from_pydict(out, schema=SEGMENT_DOCS)


def _rows_from_source(paths: TenantPaths, info: SegmentInfo, store) -> pa.Table:
    """The segment's rows, made again: its documents read from the tenant's source and chunked with its schema."""
    if store is None:
        raise SegmentError("rows.parquet is damaged; rebuilding it needs the tenant's source")
    docs = pq.read_table(pa.BufferReader(read_verified(segment_dir(paths, info.segment) / "docs.parquet", info.files["docs.parquet"])))
    schema = SchemaRegistry().get(info.chunker)
    if schema.chunk_fingerprint(info.embedder_fp) != info.chunker_fp:
        raise SegmentError(f"rows.parquet is damaged and schema {info.chunker} has changed since; rebuild with `ragindex reindex --rebuild`")
    source = store.settings(paths.name).source
    if not source:
        raise SegmentError("rows.parquet is damaged and the tenant has no registered source to chunk again")
    report = read_source(source)
    texts = {d.doc_id: d for d in report.documents}
    ups = []
    for doc_id, h, meta, n in zip(*(docs.column(c).to_pylist() for c in ("doc_id", "doc_hash", "metadata", "n_rows"))):
        doc = texts.get(doc_id)
        if doc is None or sha256_text(doc.text) != h or canonical_metadata(doc.metadata) != meta:
            raise SegmentError(f"rows.parquet is damaged and document {doc_id!r} changed in the source since; "
                               "roll back or run `ragindex reindex --rebuild`")
        ups.append(DocChange(doc_id, "new", h, meta, text=doc.text, title=doc.title))

    cfg = RunConfig(paths.name, str(source), info.chunker, info.chunker_fp, info.embedder, info.embedder_fp,
                    schema.spec.tokenizer)
    cs = ChangeSet(cfg, None, 0, 0, None, None, SourceState(path=str(source), kind="folder"), upserts=ups)
    vectors = None
    if schema.needs_embeddings:  # a clustering chunker: its pieces' vectors are in the tenant's cache
        hashes = list(dict.fromkeys(piece_stage(cs, schema).rows.column("text_hash").to_pylist()))
        with EmbeddingCache(paths.cache, read_only=True) as cache:
            if len(cache.cached_hashes(info.embedder_fp, hashes)) < len(hashes):
                raise SegmentError("rows.parquet is damaged and the cache lacks the chunker's piece vectors to chunk again; "
                                   "run `ragindex reindex --rebuild`")
            table = dict(zip(hashes, cache.vectors(info.embedder_fp, hashes, info.dim))) if hashes else {}
        vectors = lambda ts: [table[sha256_text(t)] for t in ts]  # noqa: E731
    staged = chunk_changes(paths, cs, schema, vectors=vectors)
    if staged.rows.num_rows != info.rows or staged.docs.column("n_rows").to_pylist() != docs.column("n_rows").to_pylist():
        raise SegmentError("chunking the documents again gave different rows; run `ragindex reindex --rebuild`")
    return staged.rows
