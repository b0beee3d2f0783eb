"""The shared evaluation data (../shared/data or $RAGINDEX_DATA_ROOT), as tests and benchmarks read it."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("RAGINDEX_DATA_ROOT") or REPO.parent / "shared" / "data")


def scifact_docs(n: int | None = None) -> list[dict]:
    """The first ``n`` SciFact corpus records (all when None), as BEIR gives them."""
    out = []
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line))
            if n is not None and len(out) >= n:
                break
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path
