"""Chunk counts and mean tokens per shipped schema on the five chunking-evaluation corpora.

Usage: python benchmarks/chunk_stats.py  (writes benchmarks/results/chunk_stats.json)
"""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragindex.chunkers import build_chunker, needs_embeddings  # noqa: E402
from ragindex.embedders.registry import EmbedderConfig  # noqa: E402
from ragindex.ingest.documents import normalise  # noqa: E402
from ragindex.schemas import SchemaRegistry  # noqa: E402

corpora = sorted((REPO / "benchmarks" / "data" / "chroma_chunking" / "corpora").glob("*.md"))  # carried in the repository
texts = [normalise(p.read_text(encoding="utf-8")) for p in corpora]
rows = []
model = None  # the bundled default, loaded only for a schema that cuts on embeddings (cluster)
for ref, sf in SchemaRegistry().files().items():
    if needs_embeddings(sf.spec):
        model = model or EmbedderConfig("default").build()
    chunker = build_chunker(sf.spec, embed=model.embed if needs_embeddings(sf.spec) else None)
    spans = [s for t in texts for s in chunker.chunk(t)]
    n = len(spans)
    rows.append({"schema": ref, "tokenizer": sf.spec.tokenizer, "chunks": n, "mean_tokens": sum(s.token_count for s in spans) / n,
                 "max_tokens": max(s.token_count for s in spans)})
    print(f"{ref:<18} {sf.spec.tokenizer:<17} chunks {n:>6}  mean {rows[-1]['mean_tokens']:6.1f}  max {rows[-1]['max_tokens']}")
(REPO / "benchmarks" / "results" / "chunk_stats.json").write_text(json.dumps(rows, indent=2))
