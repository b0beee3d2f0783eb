"""A run costs what changed (issue 12): full build vs no-op vs small and larger edits, measured in one process.

Two scales, each a folder of Markdown files (one document each, sharded 1,000 per
folder), made from SciFact sentences (every document a different mix, so texts
are unique; generated under benchmarks/.work/, never committed):

  hash    100,000 documents, the hash embedder at 384 dimensions (MiniLM's vector
          size, so bytes are realistic): everything but the model
  model   10,000 documents, the real all-MiniLM-L6-v2 on this machine's CPU

Scenarios, in order, on one tenant: full build; no-op; 1 file edited; 1% edited +
0.5% deleted + 0.5% added; 10% edited; then 20 runs of 1% edits in a row (default
gc, so disk shows what retention keeps). Per scenario: wall time, files read,
documents chunked, texts embedded, bytes written (the process's write() syscalls,
from /proc/self/io, independent of the pipeline's own accounting) and disk used.
Then search latency (p50/p99 over 200 SciFact queries, k=10) on the generation
left by the 20 runs, and on the same content after `compact`, with recall@10
against exact search over the same live vectors.

Usage:
    python benchmarks/incremental.py --scale hash      # ~15 min on 2 cores
    python benchmarks/incremental.py --scale model     # ~30 min on 2 cores
    python benchmarks/incremental.py --plot            # redraw results/incremental.png from the JSON
Results: benchmarks/results/incremental.json (one entry per scale) and incremental.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = Path(os.environ.get("RAGINDEX_DATA_ROOT", REPO.parent / "shared" / "data")) / "scifact"
WORK = REPO / "benchmarks" / ".work" / "incremental"
RESULTS = REPO / "benchmarks" / "results"
SCALES = {"hash": {"docs": 100_000, "model": "hash384"}, "model": {"docs": 10_000, "model": "default"}}
SCHEMA = "default@1"
TENANT = "bench"


# ----------------------------------------------------------------------------- corpus


def _scifact():
    titles, sentences = [], []
    with open(DATA / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            titles.append(d["title"])
            sentences += [s.strip() + "." for s in d["text"].split(". ") if len(s) > 30]
    queries = [json.loads(line)["text"] for line in open(DATA / "queries.jsonl", encoding="utf-8")]
    return titles, sentences, queries


def doc_text(i: int, titles, sentences, revision: int = 0) -> str:
    rng = random.Random(i)
    body = " ".join(rng.choice(sentences) for _ in range(rng.randint(4, 9)))
    extra = "" if not revision else "\n\n" + f"Revision {revision}: " + random.Random(i * 7919 + revision).choice(sentences)
    return f"# {rng.choice(titles)}\n\n{body}{extra}\n"


def doc_path(root: Path, i: int) -> Path:
    return root / f"shard-{i // 1000:04d}" / f"doc-{i:07d}.md"


class Corpus:
    def __init__(self, root: Path, n: int) -> None:
        self.root, self.titles, self.sentences, self.queries = root, *_scifact()
        self.live = list(range(n))
        self.next_id = n
        self.revision: dict[int, int] = {}
        shutil.rmtree(root, ignore_errors=True)
        for i in self.live:
            self.write(i)

    def write(self, i: int) -> None:
        p = doc_path(self.root, i)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(doc_text(i, self.titles, self.sentences, self.revision.get(i, 0)), encoding="utf-8")

    def edit(self, k: int, rng: random.Random) -> None:
        for i in rng.sample(self.live, k):
            self.revision[i] = self.revision.get(i, 0) + 1
            self.write(i)

    def delete(self, k: int, rng: random.Random) -> None:
        for i in rng.sample(self.live, k):
            doc_path(self.root, i).unlink()
            self.live.remove(i)

    def add(self, k: int) -> None:
        for _ in range(k):
            self.write(self.next_id)
            self.live.append(self.next_id)
            self.next_id += 1


# ----------------------------------------------------------------------------- measuring


def written_bytes() -> int:
    """Bytes this process has passed to write()-family syscalls (/proc/self/io wchar)."""
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("wchar")).split()[1])


def disk(paths) -> dict[str, int]:
    from ragindex.store.generations import disk_usage

    d = disk_usage(paths)
    d["index"] = d["segments"] + d["deletions"] + d["generations"]
    return d


def measure(name: str, fn, paths) -> dict:
    w0, t0 = written_bytes(), time.perf_counter()
    res = fn()
    wall = time.perf_counter() - t0
    w = written_bytes() - w0
    out = {"scenario": name, "wall_s": round(wall, 3), "bytes_written": w, "status": res.status,
           "files_seen": res.changes["files_seen"], "files_read": res.changes["files_read"],
           "docs_chunked": res.plan.docs_chunked, "texts_embedded": res.ledger["texts"],
           "bytes_accounted": res.bytes_written, "segments": None, "disk": disk(paths),
           "merges": [m["reason"] for m in res.maintenance.merges] if res.maintenance else [],
           "stages_s": {k: round(v, 3) for k, v in res.seconds.items()}}
    from ragindex.store.manifests import live_manifest

    out["segments"] = len(live_manifest(paths).segments)
    print(f"  {name:<28} {wall:8.2f} s  read {out['files_read']:>7}  chunked {out['docs_chunked']:>7}  "
          f"embedded {out['texts_embedded']:>7}  wrote {w / 1e6:9.2f} MB  segments {out['segments']}", flush=True)
    return out


def p50_ms(store, embedder, queries: list[str], k: int = 10) -> float:
    from ragindex.search.searcher import Searcher

    s = Searcher(store, embedder)
    s.search(TENANT, queries[0], k)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        s.search(TENANT, q, k)
        times.append(time.perf_counter() - t0)
    return round(1000 * float(np.percentile(times, 50)), 3)


def ann_check(store, embedder, queries: list[str], k: int = 10, deleted_share: float = 0.1) -> dict:
    """recall@k of the HNSW configuration segments use (M, efConstruction, efSearch), on this generation's
    live vectors with a random 10% of them filtered out at search time, against exact search."""
    import faiss

    from ragindex.search.searcher import Searcher
    from ragindex.store import segments

    gen = Searcher(store, embedder).generation(TENANT)
    vecs = np.concatenate([segments.vectors_of(v.seg.index)[v.mask if v.mask is not None else slice(None)] for v in gen.views])
    index = faiss.IndexHNSWFlat(vecs.shape[1], segments.HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = segments.HNSW_EF_CONSTRUCTION
    t0 = time.perf_counter()
    index.add(vecs)
    build_s = time.perf_counter() - t0
    keep = np.random.default_rng(0).random(len(vecs)) >= deleted_share
    bitmap = np.packbits(keep, bitorder="little")
    sel = faiss.IDSelectorBitmap(len(keep), faiss.swig_ptr(bitmap))
    qv = embedder.embed(queries).astype(np.float32)
    _, got = index.search(qv, k, params=faiss.SearchParametersHNSW(sel=sel, efSearch=segments.HNSW_EF_SEARCH))
    flat = faiss.IndexFlatIP(vecs.shape[1])
    flat.add(vecs)
    _, exact = flat.search(qv, k, params=faiss.SearchParameters(sel=sel))
    recall = sum(len(set(exact[i]) & set(got[i])) for i in range(len(queries))) / (k * len(queries))
    return {"vectors": int(len(vecs)), "filtered_share": deleted_share, "recall_at_10": round(recall, 4),
            "build_s": round(build_s, 1), "note": "" if embedder.name != "hash-384" else
            "random unit vectors (hash embedder) have no neighbourhood structure: recall is not meaningful here"}


def search_stats(store, embedder, queries: list[str], k: int = 10) -> dict:
    """p50/p99 of Searcher.search (query embedding included) and recall@k against exact search."""
    import faiss

    from ragindex.search.searcher import Searcher
    from ragindex.store.segments import vectors_of

    s = Searcher(store, embedder)
    s.search(TENANT, queries[0], k)  # load the generation outside the timing
    times = []
    for q in queries:
        t0 = time.perf_counter()
        s.search(TENANT, q, k)
        times.append(time.perf_counter() - t0)
    gen = s.generation(TENANT)
    vecs, keys = [], []
    for si, v in enumerate(gen.views):
        allv = vectors_of(v.seg.index)
        mask = v.mask if v.mask is not None else np.ones(len(allv), bool)
        vecs.append(allv[mask])
        keys += [(si, int(r)) for r in np.nonzero(mask)[0]]
    flat = faiss.IndexFlatIP(gen.manifest.dim)
    flat.add(np.concatenate(vecs))
    qv = embedder.embed(queries).astype(np.float32)
    _, exact = flat.search(qv, k)
    got = gen.search(qv, k)
    recall = sum(len({keys[i] for i in exact[j]} & {(c.seg, c.row) for c in got[j]}) for j in range(len(queries))) / (k * len(queries))
    return {"p50_ms": round(1000 * float(np.percentile(times, 50)), 3), "p99_ms": round(1000 * float(np.percentile(times, 99)), 3),
            "queries": len(queries), "recall_at_10": round(recall, 4), "segments": len(gen.views),
            "deleted_rows": int(sum(r.deleted_rows for r in gen.manifest.segments)), "rows": gen.ntotal}


# ----------------------------------------------------------------------------- the run


def build_embedder(name: str):
    from ragindex.embedders.local import HashEmbedder
    from ragindex.embedders.registry import EmbedderConfig

    return HashEmbedder(dim=384) if name == "hash384" else EmbedderConfig(name).build()


def run_scale(scale: str, n_docs: int | None = None, small_runs: int = 20) -> dict:
    from ragindex.indexing.plan import Throughput
    from ragindex.indexing.run import reindex
    from ragindex.store.locking import tenant_lock
    from ragindex.store.maintenance import compact
    from ragindex.store.tenants import TenantStore

    cfg = SCALES[scale]
    n = n_docs or cfg["docs"]
    work = WORK / scale
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    corpus = Corpus(work / "docs", n)
    print(f"[{scale}] {n:,} documents written in {time.perf_counter() - t0:.1f} s", flush=True)
    # A corpus exists before it is indexed: let its files leave the racy window (pipeline.ingest.changes.RACY_NS),
    # or the next run would read them all again. Edited files stay racy, as they are after a real edit.
    time.sleep(2.5)
    store = TenantStore(work / "home")
    emb = build_embedder(cfg["model"])
    Throughput(store.root).get(emb)  # calibrate (or load) outside the timing, as in production
    paths = store.paths(TENANT)
    rng = random.Random(12)

    def go():
        return reindex(store, TENANT, source=corpus.root, chunker=SCHEMA, embedder=emb)

    rows = [measure("full build", go, paths)]
    full_gen_bytes = rows[0]["disk"]["index"]
    rows.append(measure("no-op", go, paths))
    corpus.edit(1, rng)
    rows.append(measure("1 file edited", go, paths))
    corpus.edit(n // 100, rng)
    corpus.delete(n // 200, rng)
    corpus.add(n // 200)
    rows.append(measure("1% edit, 0.5% del, 0.5% add", go, paths))
    corpus.edit(n // 10, rng)
    rows.append(measure("10% edited", go, paths))
    series = []
    queries = corpus.queries[:200]
    for r in range(small_runs):
        corpus.edit(n // 100, rng)
        series.append(measure(f"1% edit, run {r + 1}", go, paths))
        series[-1]["search_p50_ms"] = p50_ms(store, emb, queries[:50])
    after_runs = disk(paths)
    from ragindex.store.generations import retained
    from ragindex.store.manifests import current_id, read_manifest

    live = current_id(paths)
    live_segs = {s.id for s in read_manifest(paths, live).segments}
    kept_segs = {s.id for g in retained(paths, 5) - {live} for s in read_manifest(paths, g).segments} - live_segs
    kept_only = sum(f.stat().st_size for sid in kept_segs for f in (paths.segments / sid).iterdir())
    fragmented = search_stats(store, emb, queries)
    with tenant_lock(paths.lock):
        t0 = time.perf_counter()
        done = compact(store, TENANT)
        compact_s = time.perf_counter() - t0
    compacted = search_stats(store, emb, queries)
    ann = ann_check(store, emb, queries)
    full = rows[0]
    small_walls = [s["wall_s"] for s in series]
    ratios = {
        "noop_wall_vs_full": round(rows[1]["wall_s"] / full["wall_s"], 4),
        "noop_bytes_written": rows[1]["bytes_written"],
        "one_file_wall_vs_full": round(rows[2]["wall_s"] / full["wall_s"], 4),
        "one_file_bytes_vs_full_generation": round(rows[2]["bytes_written"] / full_gen_bytes, 5),
        "edit_1pct_wall_vs_full": round(rows[3]["wall_s"] / full["wall_s"], 4),
        "edit_10pct_wall_vs_full": round(rows[4]["wall_s"] / full["wall_s"], 4),
        "small_runs_median_wall_vs_full": round(float(np.median(small_walls)) / full["wall_s"], 4),
        "disk_after_small_runs_vs_full_generation": round(after_runs["index"] / full_gen_bytes, 3),
        "disk_after_small_runs_minus_retention_vs_full_generation": round((after_runs["index"] - kept_only) / full_gen_bytes, 3),
        "search_p50_fragmented_vs_compacted": round(fragmented["p50_ms"] / compacted["p50_ms"], 3),
        # The run 20 happens to end on depends on the merge cycle: the spread over every run says more.
        "search_p50_over_runs_vs_compacted": {"median": round(float(np.median([s["search_p50_ms"] for s in series])) / compacted["p50_ms"], 3),
                                              "max": round(max(s["search_p50_ms"] for s in series) / compacted["p50_ms"], 3)},
    }
    targets = {
        "noop_wall_vs_full": ratios["noop_wall_vs_full"] <= 0.05,
        "noop_bytes_written": ratios["noop_bytes_written"] == 0,
        "one_file_wall_vs_full": ratios["one_file_wall_vs_full"] <= 0.10,
        "one_file_bytes_vs_full_generation": ratios["one_file_bytes_vs_full_generation"] <= 0.05,
        "disk_after_small_runs": ratios["disk_after_small_runs_minus_retention_vs_full_generation"] <= 1.5,
        "search_p50_after_small_runs": ratios["search_p50_fragmented_vs_compacted"] <= 1.5,
    }
    return {
        "scale": scale, "documents": n, "embedder": emb.name, "dim": emb.dim, "schema": SCHEMA,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "full_generation_bytes": full_gen_bytes, "scenarios": rows, "small_runs": series,
        "disk_after_small_runs": after_runs, "retained_for_rollback_bytes": kept_only,
        "search": {"after_small_runs": fragmented, "compacted": compacted, "compact_s": round(compact_s, 2),
                   "compact_merges": done.merges, "ann": ann},
        "ratios": ratios, "targets_met": targets,
    }


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = [s for s in ("hash", "model") if s in results]
    fig, axes = plt.subplots(len(scales), 2, figsize=(12, 4.2 * len(scales)), squeeze=False)
    for row, scale in enumerate(scales):
        r = results[scale]
        rows = r["scenarios"][1:] + [dict(s, scenario=s["scenario"].replace("1% edit, ", "")) for s in r["small_runs"]]
        names = [x["scenario"] for x in rows]
        full = r["scenarios"][0]
        ax = axes[row][0]
        ax.bar(range(len(rows)), [x["wall_s"] / full["wall_s"] for x in rows], color="#4c72b0")
        ax.axhline(0.05, color="grey", ls=":", lw=1)
        ax.axhline(0.10, color="grey", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xticks(range(len(rows)), names, rotation=75, fontsize=7)
        ax.set_ylabel("wall / full build")
        ax.set_title(f"{r['documents']:,} docs, {r['embedder']}: wall time relative to a full build ({full['wall_s']:.0f} s)", fontsize=9)
        ax = axes[row][1]
        ax.bar(range(len(rows)), [max(x["bytes_written"], 1) / r["full_generation_bytes"] for x in rows], color="#dd8452")
        ax.axhline(0.05, color="grey", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xticks(range(len(rows)), names, rotation=75, fontsize=7)
        ax.set_ylabel("bytes written / one full generation")
        ax.set_title(f"bytes written (full generation {r['full_generation_bytes'] / 1e6:.0f} MB); no-op wrote "
                     f"{r['scenarios'][1]['bytes_written']} B", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=list(SCALES) + ["both"], default=None)
    ap.add_argument("--docs", type=int, help="override the number of documents (a quick look)")
    ap.add_argument("--runs", type=int, default=20, help="small runs in a row (default 20)")
    ap.add_argument("--plot", action="store_true", help="redraw the plot from the results JSON")
    ap.add_argument("--out", type=Path, default=RESULTS / "incremental.json")
    args = ap.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for scale in (list(SCALES) if args.scale == "both" else [args.scale] if args.scale else []):
        results[scale] = run_scale(scale, args.docs, args.runs)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps({"ratios": results[scale]["ratios"], "targets_met": results[scale]["targets_met"]}, indent=1))
    if results and (args.plot or args.scale):
        plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
