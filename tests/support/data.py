"""Evaluation data for tests and benchmarks, from what the repository itself carries.

The tests read only ``benchmarks/data/chroma_chunking`` (the chunking-evaluation set,
MIT, carried in the repository) and what this module generates from it, so a clone
with nothing beside it passes the suite:

* :func:`passage_docs`: BEIR-like records (``{"_id", "title", "text"}``) cut from the
  five chunking-study corpora, abstract-sized, in a fixed order (then, for volume,
  seeded mixes of their sentences): the stand-in for a real document collection
  wherever a test needs "real text". Deterministic: the same records on every run.
* :func:`chroma_beir`: document labels for those records, from the set's own
  questions (a question is relevant to the passages its reference spans fall in), and
  :func:`write_beir` to write them as a BEIR folder.
* :func:`write_span_set`: a small span dataset of passages with the questions whose
  references lie inside them (offsets re-based to the passage).

:func:`scifact_docs` is for the benchmarks only: BEIR SciFact is CC BY-NC, never copied
into the repository, and read from ``$RAGINDEX_DATA_ROOT`` or the shared folder beside the
checkout (:func:`shared_data`). No test uses either (tests/layout/test_self_contained.py).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMA = REPO / "benchmarks" / "data" / "chroma_chunking"
CORPORA = ("chatlogs", "finance", "pubmed", "state_of_the_union", "wikitexts")
SHORT = {"chatlogs": "chat", "finance": "fin", "pubmed": "med", "state_of_the_union": "sotu", "wikitexts": "wiki"}

# Passage lengths cycle through these targets (characters), so records vary in size the way
# abstracts do (SciFact: 220 to 10,000 characters, median ~1,400).
TARGETS = (900, 1500, 1100, 2000, 700, 1300, 1700)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Passage:
    """A window ``[start, end)`` of one corpus file, and the record made of it."""

    corpus: str
    start: int
    end: int
    id: str
    title: str
    text: str


def chroma_texts() -> dict[str, str]:
    """The five corpora (file stem -> text), read as the ``chroma`` preset reads them."""
    return {name: (CHROMA / "corpora" / f"{name}.md").read_text(encoding="utf-8") for name in CORPORA}


def _units(text: str) -> list[tuple[int, int]]:
    """Lines, with lines longer than the smallest target cut after sentence ends (or spaces)."""
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        start, end = pos, pos + len(line)
        pos = end
        while end - start > min(TARGETS):
            piece = text[start : start + min(TARGETS)]
            cuts = [m.end() for m in _SENTENCE_END.finditer(piece)] or [m.end() for m in re.finditer(r"\s+", piece)]
            cut = start + (cuts[-1] if cuts and cuts[-1] > 100 else min(TARGETS))
            out.append((start, cut))
            start = cut
        out.append((start, end))
    return out


def _title_and_text(window: str) -> tuple[str, str]:
    """The window's first sentences (at least 6 words, at most ~120 characters, cut at a word) as title,
    the rest as text: titles as distinct as the passages, like a paper's."""
    stop = 0
    for m in re.finditer(r"[.!?](?=\s)|\n", window):
        if m.end() > 120:
            break
        stop = m.end()
        if len(window[:stop].split()) >= 6:
            break
    if len(window[:stop].split()) < 6:
        cut = window.rfind(" ", 0, 120)
        stop = cut if cut > 20 else min(len(window), 120)
    return " ".join(window[:stop].split()), window[stop:].strip()


def _windows(name: str, text: str) -> list[Passage]:
    out: list[Passage] = []
    units = _units(text)
    i = 0
    while i < len(units):
        target = TARGETS[len(out) % len(TARGETS)]
        start, end = units[i]
        i += 1
        while i < len(units) and end - start < target:
            end = units[i][1]
            i += 1
        raw = text[start:end]
        lead = len(raw) - len(raw.lstrip())
        start, end = start + lead, end - (len(raw) - len(raw.rstrip()))
        if end - start < 200:  # a heading or the tail of a file: too short to be a record
            continue
        title, body = _title_and_text(text[start:end])
        if body:
            out.append(Passage(name, start, end, f"{SHORT[name]}-{len(out):04d}", title, body))
    return out


@functools.lru_cache(maxsize=1)
def _passages() -> tuple[Passage, ...]:
    """Every passage of the five corpora, interleaved (one of each corpus in turn while it lasts)."""
    texts = chroma_texts()
    per_corpus = [_windows(name, texts[name]) for name in CORPORA]
    order: list[Passage] = []
    for k in range(max(map(len, per_corpus))):
        order += [ps[k] for ps in per_corpus if k < len(ps)]
    seen_titles, seen_texts, out = set(), set(), []
    for p in order:  # distinct titles and texts, as in a real collection
        if p.title not in seen_titles and p.text not in seen_texts:
            seen_titles.add(p.title)
            seen_texts.add(p.text)
            out.append(p)
    return tuple(out)


def passages(n: int | None = None) -> list[Passage]:
    """The first ``n`` passages (all when None)."""
    ps = _passages()
    if n is not None and n > len(ps):
        raise ValueError(f"the chroma corpora give {len(ps)} passages, fewer than the {n} asked for")
    return list(ps[:n])


@functools.lru_cache(maxsize=1)
def _sentences() -> tuple[str, ...]:
    """Every sentence (or line) of 40 to 400 characters in the passages, once each, in passage order."""
    seen: dict[str, None] = {}
    for p in _passages():
        for line in (p.title + " " + p.text).splitlines():
            for s in _SENTENCE_END.split(line):
                s = " ".join(s.split())
                if 40 <= len(s) <= 400:
                    seen.setdefault(s)
    return tuple(seen)


def _mixed(k: int) -> dict:
    """Record ``k`` beyond the passages: sentences drawn (seeded by ``k``) from all corpora."""
    rng = random.Random(k)
    pool = _sentences()
    target = TARGETS[k % len(TARGETS)]
    picked: list[str] = []
    while sum(map(len, picked)) < target:
        picked.append(pool[rng.randrange(len(pool))])
    return {"_id": f"mix-{k:04d}", "title": picked[0][:120].rsplit(" ", 1)[0] if len(picked[0]) > 120 else picked[0],
            "text": " ".join(picked[1:])}


def passage_docs(n: int | None = None) -> list[dict]:
    """The first ``n`` records (every passage when None): ``{"_id", "title", "text"}`` as BEIR gives them.

    The passages come first; beyond them (``n`` over ~800, for tests that need volume rather than
    coherent text) each record is a seeded mix of sentences from all corpora, distinct from every other.
    """
    ps = _passages()
    out = [{"_id": p.id, "title": p.title, "text": p.text} for p in ps[:n]]
    if n is not None and n > len(ps):
        texts = {d["text"] for d in out}
        k = 0
        while len(out) < n:
            d = _mixed(k)
            k += 1
            if d["text"] not in texts:
                texts.add(d["text"])
                out.append(d)
    return out


def chroma_questions() -> list[tuple[str, str, str, list[tuple[int, int]]]]:
    """(question id, question, corpus, [(start, end), ...]) per row of questions_df.csv (ids as the preset: q0000...)."""
    out = []
    with open(CHROMA / "questions_df.csv", encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            refs = [(int(r["start_index"]), int(r["end_index"])) for r in json.loads(row["references"])]
            out.append((f"q{i:04d}", row["question"], row["corpus_id"], refs))
    return out


def chroma_beir(docs: list[dict]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Queries and qrels over the passage records ``docs``: each question of the set whose reference
    spans all overlap passages among ``docs``, relevant to exactly those passages (score 1)."""
    by_corpus: dict[str, list[Passage]] = {}
    for p in _passages():
        by_corpus.setdefault(p.corpus, []).append(p)
    have = {d["_id"] for d in docs}
    queries, qrels = {}, {}
    for qid, question, corpus, refs in chroma_questions():
        rel = {p.id for s, e in refs for p in by_corpus.get(corpus, []) if p.start < e and s < p.end}
        if rel and rel <= have and all(any(p.start < e and s < p.end for p in by_corpus[corpus]) for s, e in refs):
            queries[qid] = question
            qrels[qid] = dict.fromkeys(sorted(rel), 1)
    return queries, qrels


def write_beir(folder: Path, docs: list[dict], queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> Path:
    """A BEIR folder: corpus.jsonl, queries.jsonl and qrels/test.tsv."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", docs)
    write_jsonl(folder / "queries.jsonl", [{"_id": q, "text": t} for q, t in queries.items()])
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, rel in qrels.items() for d, s in rel.items()),
        encoding="utf-8")
    return folder


def write_span_set(folder: Path, n_docs: int = 50) -> Path:
    """A span folder (corpus.jsonl + questions.jsonl): the first ``n_docs`` passages (whole window text)
    holding a reference of the set's questions, in question order, and every question whose references
    each lie inside one of them (offsets re-based to the passage)."""
    texts = chroma_texts()
    by_corpus: dict[str, list[Passage]] = {}
    for p in _passages():
        by_corpus.setdefault(p.corpus, []).append(p)
    chosen: dict[str, Passage] = {}
    questions = []
    for qid, question, corpus, refs in chroma_questions():
        holders = [next((p for p in by_corpus.get(corpus, []) if p.start <= s and e <= p.end), None) for s, e in refs]
        if None in holders:
            continue
        new = {p.id for p in holders} - set(chosen)
        if len(chosen) + len(new) > n_docs:
            continue
        chosen.update((p.id, p) for p in holders)
        questions.append({"id": qid, "question": question,
                          "references": [{"doc_id": p.id, "start": s - p.start, "end": e - p.start} for p, (s, e) in zip(holders, refs)]})
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", [{"_id": p.id, "text": texts[p.corpus][p.start : p.end]} for p in chosen.values()])
    write_jsonl(folder / "questions.jsonl", questions)
    return folder


def shared_data() -> Path:
    """The shared data folder beside the checkout (benchmarks only): ``$RAGINDEX_DATA_ROOT`` or ``../shared/data``."""
    return Path(os.environ.get("RAGINDEX_DATA_ROOT") or REPO.parent / "shared" / "data")


def scifact_docs(n: int | None = None) -> list[dict]:
    """Benchmarks only: the first ``n`` SciFact corpus records (all when None), as BEIR gives them."""
    out = []
    with open(shared_data() / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
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
