"""Evaluation datasets: BEIR folders (document labels) and span datasets (character labels).

Labels are document ids or character spans, never chunk ids, so any two chunkers
are scored on the same questions (DESIGN: evaluation is chunker-invariant).

Formats:

* BEIR folder: ``corpus.jsonl`` ({"_id", "title", "text"}), ``queries.jsonl``
  ({"_id", "text"}) and ``qrels/test.tsv`` (query-id, corpus-id, score).
* Span folder: a corpus (``corpus/*.md|*.txt`` with doc id = file stem, or a
  ``corpus.jsonl`` whose ``text`` field the offsets index) plus ``questions.jsonl``, one line each
  ``{"id", "question", "references": [{"doc_id", "start", "end"}]}``.
* The chunking-evaluation set (``corpora/*.md`` + ``questions_df.csv``), read as a
  span dataset with code-point offsets.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ragindex.errors import DatasetError  # noqa: F401  (raised here; defined with the rest)
from ragindex.project import DATA_ROOT_ENV, data_roots

PRESETS = {"scifact": "scifact", "chroma": "chroma_chunking"}


@dataclass(frozen=True)
class Span:
    doc_id: str
    start: int
    end: int


@dataclass
class Dataset:
    """Documents plus questions labelled by document (``qrels``) or by span (``spans``)."""

    name: str
    path: Path
    kind: str  # "docs" | "spans"
    doc_ids: list[str]
    texts: list[str]
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    spans: dict[str, list[Span]] = field(default_factory=dict)
    # Each document's title where the data has one (BEIR). Not fingerprinted: a BEIR text already
    # begins with its title; a schema with context headers also puts it above every chunk.
    titles: list[str | None] | None = None

    def subset(self, query_ids: list[str], suffix: str) -> "Dataset":
        """The same documents with only ``query_ids`` (a tuning or a held-out half)."""
        keep = set(query_ids)
        pairs = [(q, t) for q, t in zip(self.query_ids, self.queries) if q in keep]
        return Dataset(name=f"{self.name}:{suffix}", path=self.path, kind=self.kind, doc_ids=self.doc_ids, texts=self.texts,
                       query_ids=[q for q, _ in pairs], queries=[t for _, t in pairs],
                       qrels={q: v for q, v in self.qrels.items() if q in keep},
                       spans={q: v for q, v in self.spans.items() if q in keep}, titles=self.titles)

    def fingerprint(self) -> str:
        """sha256 over documents, questions and labels: a baseline is only comparable on the same data."""
        h = hashlib.sha256()
        for d, t in zip(self.doc_ids, self.texts):
            h.update(f"D\0{d}\0{t}\0".encode())
        for q, t in zip(self.query_ids, self.queries):
            h.update(f"Q\0{q}\0{t}\0".encode())
            for d, s in sorted(self.qrels.get(q, {}).items()):
                h.update(f"R\0{d}\0{s}\0".encode())
            for sp in self.spans.get(q, []):
                h.update(f"S\0{sp.doc_id}\0{sp.start}\0{sp.end}\0".encode())
        return h.hexdigest()


def preset_roots(data_root: Path | None = None) -> list[tuple[Path, str]]:
    """Where a preset's folder is looked for, in order: ``data_root`` alone when given (``--data-root``),
    else ``$RAGINDEX_DATA_ROOT`` if set, else the project's ``benchmarks/data/`` then ``../shared/data``."""
    if data_root:
        return [(Path(data_root), f"--data-root or ${DATA_ROOT_ENV}")]
    return data_roots()


def resolve(name_or_path: str, data_root: Path | None = None) -> Path:
    """A preset name (``chroma``, ``scifact``) looked up per folder (:func:`preset_roots`), or a path."""
    if name_or_path not in PRESETS:
        path = Path(name_or_path)
        if not path.exists():
            raise DatasetError(f"dataset {name_or_path!r} not found: tried {path.absolute()} (path); "
                               f"give a dataset folder, or a preset name ({', '.join(sorted(PRESETS))})")
        return path
    folder = PRESETS[name_or_path]
    roots = preset_roots(data_root)
    for root, _ in roots:
        if (root / folder).exists():
            return root / folder
    tried = "; ".join(f"{(root / folder).absolute()} ({how})" for root, how in roots)
    raise DatasetError(
        f"dataset {name_or_path!r} not found: tried {tried}. "
        f"Put its {folder}/ folder {'in one of those places' if len(roots) > 1 else 'there'}, "
        f"or set ${DATA_ROOT_ENV} (or --data-root) to the folder that holds {folder}/"
        + (" (SciFact is not shipped with ragindex: its licence is CC BY-NC)" if name_or_path == "scifact" else "")
    )


def load(name_or_path: str, data_root: Path | None = None) -> Dataset:
    """Load a dataset by preset name or path, detecting its format."""
    path = resolve(name_or_path, data_root)
    name = name_or_path if name_or_path in PRESETS else path.name
    if (path / "questions_df.csv").exists():
        return load_chroma(path, name)
    if (path / "questions.jsonl").exists():
        return load_spans(path, name)
    if (path / "corpus.jsonl").exists() and (path / "queries.jsonl").exists():
        return load_beir(path, name)
    raise DatasetError(
        f"{path}: not a dataset: expected corpus.jsonl + queries.jsonl + qrels/test.tsv (BEIR), "
        "questions.jsonl + a corpus (span set), or questions_df.csv + corpora/ (chunking-evaluation set)"
    )


def _jsonl(path: Path) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from exc


def beir_text(doc: dict) -> str:
    """What MTEB embeds for a BEIR document: title + " " + text (stripped when there is no title)."""
    return (doc.get("title", "") + " " + doc.get("text", "")).strip()


def load_beir(path: Path, name: str | None = None, split: str = "test") -> Dataset:
    """A BEIR folder; only queries with qrels in ``split`` are kept, as BEIR and MTEB do."""
    qrels_file = path / "qrels" / f"{split}.tsv"
    if not qrels_file.exists():
        raise DatasetError(f"{path}: no qrels/{split}.tsv")
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_file, encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t"):
            if not row or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    corpus = _jsonl(path / "corpus.jsonl")
    queries = {q["_id"]: q["text"] for q in _jsonl(path / "queries.jsonl")}
    qids = [q for q in queries if q in qrels]
    return Dataset(
        name=name or path.name, path=path, kind="docs",
        doc_ids=[str(d["_id"]) for d in corpus], texts=[beir_text(d) for d in corpus],
        query_ids=qids, queries=[queries[q] for q in qids], qrels={q: qrels[q] for q in qids},
        titles=[d.get("title") or None for d in corpus],
    )


def _corpus_folder(path: Path) -> tuple[list[str], list[str]]:
    if (path / "corpus.jsonl").exists():
        # Span offsets index the "text" field itself, so no title is prepended here.
        docs = _jsonl(path / "corpus.jsonl")
        return [str(d["_id"]) for d in docs], [d["text"] for d in docs]
    folder = next((p for p in (path / "corpus", path / "corpora") if p.is_dir()), None)
    if folder is None:
        raise DatasetError(f"{path}: a span dataset needs corpus.jsonl or a corpus/ folder of .md/.txt files")
    files = sorted(p for p in folder.iterdir() if p.suffix in {".md", ".txt"})
    return [p.stem for p in files], [p.read_text(encoding="utf-8") for p in files]


def _check_spans(path: Path, doc_ids: list[str], texts: list[str], spans: dict[str, list[Span]]) -> None:
    lengths = dict(zip(doc_ids, map(len, texts)))
    for q, refs in spans.items():
        for s in refs:
            if s.doc_id not in lengths or not 0 <= s.start < s.end <= lengths[s.doc_id]:
                raise DatasetError(f"{path}: question {q}: reference {s} lies outside its document")


def load_spans(path: Path, name: str | None = None) -> Dataset:
    """A corpus folder plus questions.jsonl with character-span references."""
    doc_ids, texts = _corpus_folder(path)
    rows = _jsonl(path / "questions.jsonl")
    spans = {str(r["id"]): [Span(str(x["doc_id"]), int(x["start"]), int(x["end"])) for x in r["references"]] for r in rows}
    _check_spans(path, doc_ids, texts, spans)
    return Dataset(name=name or path.name, path=path, kind="spans", doc_ids=doc_ids, texts=texts,
                   query_ids=[str(r["id"]) for r in rows], queries=[r["question"] for r in rows], spans=spans)


def load_chroma(path: Path, name: str | None = None) -> Dataset:
    """The chunking-evaluation set: question ids are row numbers of questions_df.csv (q0000...)."""
    doc_ids, texts = _corpus_folder(path)
    qids, questions, spans = [], [], {}
    with open(path / "questions_df.csv", encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            qid = f"q{i:04d}"
            qids.append(qid)
            questions.append(row["question"])
            spans[qid] = [Span(row["corpus_id"], int(r["start_index"]), int(r["end_index"])) for r in json.loads(row["references"])]
    _check_spans(path, doc_ids, texts, spans)
    return Dataset(name=name or path.name, path=path, kind="spans", doc_ids=doc_ids, texts=texts,
                   query_ids=qids, queries=questions, spans=spans)
