"""Does the moonshot's winner carry over to data no choice looked at? Two checks on SciFact (issue 26).

SciFact is read from ``$RAGINDEX_DATA_ROOT`` or ``../shared/data`` (CC BY-NC: never copied into the project).
Its claims were written by annotators, who also marked the rationale sentences in each cited abstract; the
chunking-evaluation set's choices never saw it. Every configuration is chunked from the same documents
(title + abstract, as BEIR embeds them), all-MiniLM-L6-v2 through the evaluation cache:

* **document level**: nDCG@10 over the 5,183 abstracts, chunked (a document ranks by its best chunk), train
  (809) and test (300) queries, with the paired bootstrap interval of each configuration's difference from
  today's default (default@2 hybrid);
* **whole documents**: nDCG@10 with each abstract one chunk (the project's SciFact figure, target >= 0.70);
* **span level**: the claims with rationale sentences (``evidence_spans_derived.jsonl``: 505 train, 188 test
  claims) scored like the chunking-evaluation set: recall and IoU of the characters of the top 5 chunks
  against the rationale sentences, over the whole corpus.

``hybrid-ctx`` is BM25 over each chunk's window; the two ``neighbour bonus`` rows are the mode's earlier forms
(the first let the neighbours move whole documents; the second keeps each document's rank).

Usage: python benchmarks/carryover.py [--out results/carryover.json]  (standalone; benchmarks/moonshot.py
also calls it)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragindex.evaluate import datasets  # noqa: E402
from ragindex.evaluate.datasets import Dataset, Span, _jsonl  # noqa: E402
from ragindex.evaluate.metrics import paired_bootstrap_ci  # noqa: E402
from ragindex.evaluate.runner import chunk_dataset, score, summarize, whole_docs  # noqa: E402
from ragindex.evaluate.vectors import CachedEmbedder, eval_cache_path  # noqa: E402
from ragindex.search.hybrid import CTX_HYBRID, DEFAULT_HYBRID, NEIGHBOUR_BONUS  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
# (label, schema, mode, fusion)
CONFIGS = [
    ("default@2 hybrid", "default@2", "hybrid", DEFAULT_HYBRID),
    ("default@3 hybrid", "default@3", "hybrid", DEFAULT_HYBRID),
    ("default@3 neighbour bonus (neighbours move documents)", "default@3", "hybrid-ctx",
     dataclasses.replace(NEIGHBOUR_BONUS, keep_doc_order=False)),
    ("default@3 neighbour bonus (documents keep their rank)", "default@3", "hybrid-ctx", NEIGHBOUR_BONUS),
    ("default@3 hybrid-ctx", "default@3", "hybrid-ctx", CTX_HYBRID),
]
BASE = CONFIGS[0][0]


def evidence_spans(root: Path, split: Dataset, label: str) -> Dataset:
    """SciFact's rationale sentences as a span dataset over the documents and claims of ``split`` (the BEIR
    split ``label``), whose texts are title + " " + abstract: each span's offsets into the abstract are shifted
    by where the abstract starts in that text."""
    shift = {}
    for d, text in zip(_jsonl(root / "corpus.jsonl"), split.texts):
        full = d.get("title", "") + " " + d.get("text", "")
        shift[str(d["_id"])] = len(d.get("title", "")) + 1 - (len(full) - len(full.lstrip()))
        assert text[shift[str(d["_id"])]:].startswith(d["text"][:50]), d["_id"]
    spans: dict[str, list[Span]] = {}
    for s in _jsonl(root / "evidence_spans_derived.jsonl"):
        o = shift[s["doc_id"]]
        spans.setdefault(s["query_id"], []).append(Span(s["doc_id"], s["start"] + o, s["end"] + o))
    queries = dict(zip(split.query_ids, split.queries))
    keep = sorted(q for q in spans if q in queries)
    return Dataset(name=f"scifact-evidence:{label}", path=root, kind="spans", doc_ids=split.doc_ids, texts=split.texts,
                   query_ids=keep, queries=[queries[q] for q in keep], spans={q: spans[q] for q in keep})


def run(reg, emb: CachedEmbedder) -> dict:
    root = datasets.resolve("scifact")
    out: dict = {"documents_ndcg@10": {}, "evidence_spans": {}}
    for split in ("train", "test"):
        docs = datasets.load_beir(root, "scifact", split)
        spans = evidence_spans(root, docs, split)
        chunks = {ref: chunk_dataset(docs, reg.get(ref), emb.embed) for ref in {c[1] for c in CONFIGS}}
        vecs = {ref: emb.embed(c.embedded) for ref, c in chunks.items()}
        qd, qs = emb.embed(docs.queries), emb.embed(spans.queries)
        per_q = {}
        for label, ref, mode, params in CONFIGS:
            per_q[label] = score(docs, chunks[ref], qd, vecs[ref], 10, mode, params)
            # same documents, so the same chunks: the span set reads them with its own questions
            means, _ = summarize(spans, score(spans, chunks[ref], qs, vecs[ref], 5, mode, params))
            out["evidence_spans"].setdefault(label, {})[split] = {m: round(100 * means[m], 2) for m in ("recall", "iou")}
        base = np.array([per_q[BASE][q]["ndcg@10"] for q in docs.query_ids])
        for label, *_ in CONFIGS:
            v = np.array([per_q[label][q]["ndcg@10"] for q in docs.query_ids])
            row = {"ndcg@10": round(float(v.mean()), 4), "queries": len(v)}
            if label != BASE:
                row["vs_default@2_hybrid"] = round(float((v - base).mean()), 4)
                row["ci95"] = [round(x, 4) for x in paired_bootstrap_ci(v - base)]
            out["documents_ndcg@10"].setdefault(label, {})[split] = row
        whole = whole_docs(docs)  # each abstract one chunk: no neighbours, so hybrid-ctx must rank as hybrid
        for label, _, mode, params in CONFIGS:
            means, _ = summarize(docs, score(docs, whole, qd, emb.embed(whole.embedded), 10, mode, params))
            out.setdefault("whole_documents_ndcg@10", {}).setdefault(label, {})[split] = round(means["ndcg@10"], 4)
        print(f"{split}: " + json.dumps({k: out[k] and {lb: r[split] for lb, r in out[k].items()} for k in out}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "carryover.json")
    args = ap.parse_args()
    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.schemas import SchemaRegistry

    t0 = time.time()
    emb = CachedEmbedder(eval_cache_path("scifact"), EmbedderConfig("default").build, label="eval-scifact")
    out = run(SchemaRegistry(), emb)
    out["seconds"] = round(time.time() - t0, 1)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
