"""Embedding cost-control benchmark (issue 3), one run, ratios only.

1. Embed-stage throughput vs raw ``SentenceTransformer.encode`` on the same texts
   (SciFact chunks from recursive-250@1): ours = ragindex.indexing.embed.embed_missing into
   a fresh DuckDB cache (token-budget batches, commits, ledger), raw = encode with
   its defaults (batch_size=32). Alternated A/B/A/B to spread machine noise.
2. A 1%-edit reindex vs a full reindex of the same tenant: tokens and wall time.

Usage: python benchmarks/embed_bench.py [--docs 600] [--texts 1200] [--out benchmarks/results/embed_bench.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragindex.embedders.registry import EmbedderConfig  # noqa: E402
from ragindex.indexing.chunk import chunk_documents  # noqa: E402
from ragindex.indexing.embed import embed_missing  # noqa: E402
from ragindex.indexing.plan import Throughput, make_plan  # noqa: E402
from ragindex.indexing.prices import Prices
from ragindex.indexing.run import reindex  # noqa: E402
from ragindex.schemas import SchemaRegistry  # noqa: E402
from ragindex.store.cache import EmbeddingCache  # noqa: E402
from ragindex.store.tenants import TenantStore  # noqa: E402
from tests.support.documents import load_documents  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def scifact(n):
    out = []
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line))
            if len(out) >= n:
                break
    return out


def write_jsonl(path, docs):
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def throughput(work: Path, emb, texts, rounds: int) -> dict:
    schema = SchemaRegistry().get("recursive-250@1")
    prices = Prices.load()
    ours, raw = [], []
    tokens = sum(emb.token_counts(texts))
    emb.model.encode(texts[:64], show_progress_bar=False)  # warm-up
    for r in range(rounds):
        t0 = time.perf_counter()
        emb.model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        raw.append(time.perf_counter() - t0)
        # ours: the real embed stage, from plan to committed cache rows
        staged = _staged(work, schema, emb, texts)
        with EmbeddingCache(work / f"cache-{r}.duckdb") as cache:
            t0 = time.perf_counter()
            plan = make_plan(staged, set(), emb, prices, Throughput(work))
            cache.start_run(f"r{r}", "bench", schema.ref, emb.fingerprint, emb.device, plan)
            embed_missing(cache, emb, plan, f"r{r}", prices)
            cache.finish_run(f"r{r}")
            ours.append(time.perf_counter() - t0)
    best_raw, best_ours = min(raw), min(ours)
    return {
        "texts": len(texts), "tokens": tokens, "rounds": rounds,
        "raw_seconds": raw, "ours_seconds": ours,
        "raw_texts_per_s": len(texts) / best_raw, "ours_texts_per_s": len(texts) / best_ours,
        "ratio_ours_over_raw_best": best_raw / best_ours,
        "ratio_ours_over_raw_median": sorted(raw)[len(raw) // 2] / sorted(ours)[len(ours) // 2],
    }


def _staged(work: Path, schema, emb, texts: list[str]):
    """The texts as the chunk stage would hand them over: one document each, one chunk each."""
    from ragindex.fsutil import sha256_text
    from ragindex.indexing.chunk import chunk_changes
    from ragindex.ingest.changeset import ChangeSet, DocChange, RunConfig
    from ragindex.store.manifests import SourceState
    from ragindex.store.paths import TenantPaths

    cfg = RunConfig("bench", str(work), schema.ref, schema.fingerprint(), emb.name, emb.fingerprint, schema.spec.tokenizer)
    ups = [DocChange(f"t{i}", "new", sha256_text(t), "{}", text=t) for i, t in enumerate(texts)]
    cs = ChangeSet(cfg, None, 0, 0, None, None, SourceState(path=str(work), kind="folder"), upserts=ups)
    return chunk_changes(TenantPaths("bench", work / "unused"), cs, schema)


def incremental(work: Path, emb, n_docs: int) -> dict:
    docs = scifact(n_docs)
    store = TenantStore(work / "home")
    src = write_jsonl(work / "full.jsonl", docs)
    Throughput(store.root).record(emb, 100000, 40.0)  # skip calibration in the timing
    t0 = time.perf_counter()
    full = reindex(store, "bench", source=src, chunker="recursive-250@1", embedder=emb)
    full_s = time.perf_counter() - t0
    rng = random.Random(1)
    for i in rng.sample(range(len(docs)), k=max(1, len(docs) // 100)):
        docs[i] = dict(docs[i], text=docs[i]["text"] + " An edited closing sentence for the benchmark.")
    src2 = write_jsonl(work / "edited.jsonl", docs)
    t0 = time.perf_counter()
    inc = reindex(store, "bench", source=src2, chunker="recursive-250@1", embedder=emb)
    inc_s = time.perf_counter() - t0
    return {
        "documents": n_docs, "edited": max(1, n_docs // 100),
        "full": {"texts": full.ledger["texts"], "tokens": full.ledger["tokens"], "wall_s": full_s, "embed_s": full.ledger["seconds"]},
        "incremental": {"texts": inc.ledger["texts"], "tokens": inc.ledger["tokens"], "wall_s": inc_s, "embed_s": inc.ledger["seconds"],
                        "planned_texts": inc.plan.texts_to_embed, "planned_tokens": inc.plan.tokens_to_embed},
        "tokens_fraction": inc.ledger["tokens"] / full.ledger["tokens"],
        "wall_fraction": inc_s / full_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=600)
    ap.add_argument("--texts", type=int, default=1200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "embed_bench.json")
    args = ap.parse_args()
    emb = EmbedderConfig("default").build()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        docs_table, _ = load_documents(write_jsonl(work / "tp.jsonl", scifact(args.texts)))
        chunks = chunk_documents("bench", docs_table, SchemaRegistry().get("recursive-250@1"))
        texts = list(dict.fromkeys(chunks.column("text").to_pylist()))[: args.texts]
        result = {
            "machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count(), "device": emb.device},
            "throughput": throughput(work, emb, texts, args.rounds),
            "incremental": incremental(work, emb, args.docs),
        }
    args.out.write_text(json.dumps(result, indent=2))
    t, inc = result["throughput"], result["incremental"]
    print(f"embed stage vs raw encode ({t['texts']} texts, {t['tokens']} tokens, device {emb.device}): "
          f"ours {t['ours_texts_per_s']:.1f} texts/s, raw {t['raw_texts_per_s']:.1f} texts/s, "
          f"ratio best {t['ratio_ours_over_raw_best']:.3f}, median {t['ratio_ours_over_raw_median']:.3f}")
    print(f"1% edit of {inc['documents']} docs: {inc['incremental']['texts']} texts / {inc['incremental']['tokens']} tokens "
          f"vs full {inc['full']['texts']} / {inc['full']['tokens']}: tokens {inc['tokens_fraction']:.4f}, wall {inc['wall_fraction']:.4f} of full")


if __name__ == "__main__":
    main()
