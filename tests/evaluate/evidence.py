"""A small real span dataset for gate tests: SciFact abstracts and their claims' rationale spans.

The spans come from ../shared/data/scifact/evidence_spans_derived.jsonl (character
offsets into the abstract text). Abstracts are short, so a chunker that loses a
document's last chunk loses much of the evidence: a regression the gate must see.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import DATA, write_jsonl


def write_evidence_set(folder: Path, n_docs: int = 50) -> Path:
    """Write a span folder (corpus.jsonl + questions.jsonl) of the first ``n_docs`` abstracts with evidence."""
    spans: dict[str, list[dict]] = {}
    docs: list[str] = []
    with open(DATA / "scifact" / "evidence_spans_derived.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["doc_id"] not in docs:
                if len(docs) >= n_docs:
                    continue
                docs.append(r["doc_id"])
            spans.setdefault(r["query_id"], []).append({"doc_id": r["doc_id"], "start": r["start"], "end": r["end"]})
    keep = set(docs)
    corpus = {}
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["_id"] in keep:
                corpus[d["_id"]] = d["text"]
    claims = {}
    with open(DATA / "scifact" / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            claims[q["_id"]] = q["text"]
    questions = [{"id": q, "question": claims[q], "references": refs} for q, refs in sorted(spans.items())
                 if all(r["doc_id"] in keep for r in refs)]
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", [{"_id": d, "text": corpus[d]} for d in docs])
    write_jsonl(folder / "questions.jsonl", questions)
    return folder
