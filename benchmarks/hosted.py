"""Hosted embedding under a rate limit (issue 14): ragindex vs LangChain's OpenAIEmbeddings, one fake API.

The fake OpenAI-compatible server of the tests (tests/support/fake_openai.py, real
HTTP on localhost) answers every request after 200 ms, enforces a tokens-per-minute
limit (token bucket, five seconds of burst; 429 with Retry-After past it) and
answers 20% of requests with a random 429 besides. Both clients embed the same
SciFact chunk texts (recursive-250@1 over --docs documents) with
text-embedding-3-small at 64 dimensions:

* ragindex: ``reindex`` of a new tenant through ``--model openai:...`` with
  RAGINDEX_API_TPM set to the server's limit (its client paces under it);
* LangChain: ``OpenAIEmbeddings(...).embed_documents(texts)`` as its docs show it,
  with ``check_embedding_ctx_length=False`` (its tiktoken path would download an
  encoding) and its own retries (the openai client's, max_retries=6).

Reported per client: wall, requests (sent, 200, 429), billed tokens, texts billed
more than once, failures, and throughput as a fraction of the allowed TPM: billed
tokens / (wall x TPM / 60), with and without the bucket's initial burst.

Usage (the bench venv: .venv-bench/bin/pip install -e '.[bench,api]'):
    .venv-bench/bin/python benchmarks/hosted.py            # writes benchmarks/results/hosted.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.fake_openai import Behaviour, FakeOpenAI  # noqa: E402

DATA = Path(os.environ.get("RAGINDEX_DATA_ROOT", REPO.parent / "shared" / "data")) / "scifact"
MODEL = "text-embedding-3-small"
DIMS = 64


def corpus(n: int, work: Path) -> tuple[Path, list[str]]:
    from ragindex.indexing.chunk import chunk_documents
    from ragindex.schemas import SchemaRegistry
    from tests.support.documents import load_documents

    src = work / "corpus.jsonl"
    with open(DATA / "corpus.jsonl", encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for i, line in enumerate(f):
            if i >= n:
                break
            out.write(line)
    docs, _ = load_documents(src)
    chunks = chunk_documents("bench", docs, SchemaRegistry().get("recursive-250@1"))
    return src, list(dict.fromkeys(chunks.column("text").to_pylist()))


def summary(server: FakeOpenAI, wall: float, tpm: int, burst_tokens: float, failures: list[str]) -> dict:
    statuses = Counter(r.status for r in server.requests)
    billed = server.billed_tokens()
    counts = Counter(server.billed_texts())
    return {
        "wall_s": round(wall, 2), "requests": len(server.requests), "requests_200": statuses[200],
        "requests_429": statuses[429], "requests_other": sum(v for k, v in statuses.items() if k not in (200, 429)),
        "billed_tokens": billed, "texts_billed_twice": sum(1 for n in counts.values() if n > 1),
        "failures": failures,
        "tpm_fraction": round(billed / (wall * tpm / 60), 3),
        "tpm_fraction_without_burst": round(max(billed - burst_tokens, 0) / (wall * tpm / 60), 3),
    }


def run_ours(src: Path, work: Path, behaviour: Behaviour, tpm: int) -> tuple[dict, int]:
    from ragindex.embedders.limits import PROBE_TEXTS
    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.indexing.run import reindex
    from ragindex.store.tenants import TenantStore

    with FakeOpenAI(behaviour) as server:
        os.environ.update({"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench-key",
                           "RAGINDEX_API_TPM": str(tpm), "RAGINDEX_API_CONCURRENCY": "8"})
        emb = EmbedderConfig(f"openai:{MODEL}", dimensions=DIMS).build()
        store = TenantStore(work / "home")
        failures = []
        t0 = time.perf_counter()
        try:
            res = reindex(store, "bench", source=src, chunker="recursive-250@1", embedder=emb)
            texts = res.plan.texts_to_embed
        except Exception as exc:  # noqa: BLE001 - a failed run is a result here
            failures.append(f"{type(exc).__name__}: {exc}")
            texts = 0
        wall = time.perf_counter() - t0
        out = summary(server, wall, tpm, tpm / 60 * behaviour.bucket_s, failures)
        out["texts_billed_twice"] -= sum(1 for t in PROBE_TEXTS if Counter(server.billed_texts())[t] > 1)
        out["retries"] = emb.stats["retries"]
        return out, texts


def run_langchain(texts: list[str], behaviour: Behaviour, tpm: int) -> dict:
    from langchain_openai import OpenAIEmbeddings

    with FakeOpenAI(behaviour) as server:
        lc = OpenAIEmbeddings(model=MODEL, dimensions=DIMS, base_url=server.base_url, api_key="sk-bench-key",
                              check_embedding_ctx_length=False, max_retries=6)
        failures = []
        t0 = time.perf_counter()
        try:
            vectors = lc.embed_documents(texts)
            assert len(vectors) == len(texts)
        except Exception as exc:  # noqa: BLE001 - a failed run is a result here
            failures.append(f"{type(exc).__name__}: {str(exc)[:300]}")
        wall = time.perf_counter() - t0
        return summary(server, wall, tpm, tpm / 60 * behaviour.bucket_s, failures)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--tpm", type=int, default=300_000)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "hosted.json")
    args = ap.parse_args()
    behaviour = dict(latency_s=0.2, tpm=args.tpm, bucket_s=5.0, rate_429=0.2, retry_after_s=0.5, seed=7)
    from importlib.metadata import version

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src, texts = corpus(args.docs, work)
        ours, planned = run_ours(src, work, Behaviour(**behaviour), args.tpm)
        print(f"ragindex:  {json.dumps(ours)}", flush=True)
        theirs = run_langchain(texts, Behaviour(**behaviour), args.tpm)
        print(f"langchain: {json.dumps(theirs)}", flush=True)
    result = {
        "setup": {"documents": args.docs, "texts": len(texts), "texts_planned_by_ragindex": planned, "model": MODEL,
                  "dimensions": DIMS, "server": behaviour, "ragindex_client": {"RAGINDEX_API_TPM": args.tpm,
                                                                               "RAGINDEX_API_CONCURRENCY": 8}},
        "ragindex": ours, "langchain": theirs,
        "versions": {p: version(p) for p in ("openai", "tenacity", "langchain-openai")},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
