"""What context headers change (issue 15): the same chunks embedded bare and below their document's title.

SciFact is the evaluation data that has titles (the chunking-evaluation corpora have
neither titles nor markdown headings, so a schema with headers embeds exactly what
one without them does there). Both schemas cut identical spans
(``recursive-200@1`` and ``recursive-200-ctx@1``); only what the model and BM25 see
differs. Measured on SciFact's 300 test queries, document level (a document scores
its best chunk), in every mode, the hybrid with the shipped fusion (DEFAULT_HYBRID,
chosen on the chunking set's tuning half, so nothing here is tuned on test queries).

Usage:
    python benchmarks/context_headers.py     # writes benchmarks/results/context_headers.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragindex.evaluate import datasets  # noqa: E402
from ragindex.evaluate.metrics import bootstrap_se  # noqa: E402
from ragindex.evaluate.runner import evaluate  # noqa: E402
from ragindex.evaluate.vectors import CachedEmbedder, eval_cache_path  # noqa: E402
from ragindex.search.hybrid import DEFAULT_HYBRID  # noqa: E402

SCHEMAS = ("recursive-200@1", "recursive-200-ctx@1")
MODES = ("dense", "bm25", "hybrid")


def main() -> None:
    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.schemas import SchemaRegistry

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "context_headers.json")
    args = ap.parse_args()
    t0 = time.time()
    test = datasets.load_beir(datasets.resolve("scifact"), "scifact", "test")
    emb = CachedEmbedder(eval_cache_path("scifact"), EmbedderConfig("default").build, label="eval-scifact")
    reg = SchemaRegistry()
    out: dict = {"dataset": "scifact test (300 queries)", "hybrid": DEFAULT_HYBRID.label(), "rows": {}, "paired": {}}
    per_q: dict = {}
    for ref in SCHEMAS:
        for mode in MODES:
            res = evaluate(test, reg.get(ref), emb, k=10, mode=mode, params=DEFAULT_HYBRID)
            per_q[ref, mode] = res.per_question
            out["rows"][f"{ref} {mode}"] = {"chunks": res.chunks, **{m: round(v, 5) for m, v in res.metrics.items()},
                                            "noise": {m: round(v, 5) for m, v in res.noise.items()}}
            print(f"[{time.time() - t0:.0f}s] {ref} {mode}: {json.dumps(out['rows'][f'{ref} {mode}'])}", flush=True)
    # Headers minus bare, per question (the same queries), with a 95% interval from the bootstrap standard error.
    import numpy as np

    for mode in MODES:
        plain, ctx = per_q[SCHEMAS[0], mode], per_q[SCHEMAS[1], mode]
        out["paired"][mode] = {}
        for m in ("ndcg@10", "recall@10", "mrr@10"):
            d = np.array([ctx[q][m] - plain[q][m] for q in test.query_ids])
            se = bootstrap_se(d)
            out["paired"][mode][m] = {"delta": round(float(d.mean()), 5), "ci95": [round(float(d.mean() - 1.96 * se), 5),
                                                                                 round(float(d.mean() + 1.96 * se), 5)]}
    out["seconds"] = round(time.time() - t0, 1)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["paired"], indent=1))


if __name__ == "__main__":
    main()
