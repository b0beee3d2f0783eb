"""Chunk invariants of every shipped schema on the real evaluation corpora (DESIGN, "Chunker schemas").

Corpora: the five chunking-study corpora (benchmarks/data/chroma_chunking/corpora, in
the repository) and every passage record cut from them (tests/support/data.py: ~800
abstract-sized documents, text = title + " " + text), for what many short documents
show and five long ones do not.

Determinism: every (schema, corpus) is chunked a second time in another
interpreter with another hash seed, with a fresh chunker and (passages) the
documents in reverse order, while this process reuses one chunker per schema
across corpora (tests/chunkers/rechunk.py); the chunks must be identical. The
second interpreter starts with the module and runs alongside the checks here, so
on two cores the repeat costs little wall time.

The end of the file holds hand-written documents for what real corpora do not
show: markdown heading paths (with fenced code) and sentence packing.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ragindex.chunkers import build_chunker
from ragindex.chunkers.probe import probe_embed
from ragindex.chunkers.sentence import sentences
from ragindex.chunkers.tokenizers import get_tokenizer
from ragindex.schemas.chunker import _ADAPTER
from ragindex.schemas.registry import PACKAGE_DIR, SchemaRegistry
from tests.chunkers.invariants import spans_digest, violations
from tests.chunkers.rechunk import read_passages
from tests.support.data import CHROMA, CORPORA, REPO

CORPORA_DIR = CHROMA / "corpora"
CHROMA_CORPORA = CORPORA

SCHEMAS = SchemaRegistry(PACKAGE_DIR).files()  # the shipped schemas, whatever $RAGINDEX_SCHEMAS says
REFS = sorted(SCHEMAS)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"evaluation data missing: {path} (the repository carries it in benchmarks/data/chroma_chunking)")
    return path


@functools.lru_cache(maxsize=None)
def _shared_chunker(ref: str):
    """One chunker per schema for the whole module, reused across corpora on purpose."""
    return build_chunker(SCHEMAS[ref].spec, embed=probe_embed)  # cluster: deterministic stand-in vectors


def test_shipped_schemas_are_found():
    assert len(REFS) >= 7 and "default@1" in REFS, REFS


# --------------------------------------------------------------------------- the second interpreter


class _Rerun:
    """The second interpreter: the digest of its chunks for each key, read as it goes."""

    def __init__(self, keys: list[str]) -> None:
        self._err = tempfile.TemporaryFile(mode="w+")
        env = {**os.environ, "PYTHONHASHSEED": "4242", "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.chunkers.rechunk", *keys],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self._err, text=True,
        )  # fmt: skip
        self.digests: dict[str, str] = {}

    def digest(self, ref: str, corpus: str) -> str:
        key = f"{ref}/{corpus}"
        while key not in self.digests:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                self._err.seek(0)
                pytest.fail(f"re-chunking process ended (rc {self.proc.returncode}) before {key}:\n{self._err.read()[-3000:]}")
            got, digest = line.split()
            self.digests[got] = digest
        return self.digests[key]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self._err.close()


@pytest.fixture(scope="module")
def rerun(request):
    """Started once for the module, for the selected (schema, corpus) pairs in run order."""
    _require(CORPORA_DIR)
    keys = []
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "originalname", None) == "test_chroma_corpus_invariants":
            keys.append(f"{params['ref']}/{params['corpus']}")
        elif getattr(item, "originalname", None) == "test_passage_invariants":
            keys.append(f"{params['ref']}/passages")
    proc = _Rerun(keys)
    yield proc
    proc.close()


# --------------------------------------------------------------------------- chunking-study corpora


@pytest.fixture(scope="module")
def chroma_texts() -> dict[str, str]:
    return {name: _require(CORPORA_DIR / f"{name}.md").read_text(encoding="utf-8") for name in CHROMA_CORPORA}


@pytest.mark.parametrize("corpus", CHROMA_CORPORA)
@pytest.mark.parametrize("ref", REFS)
def test_chroma_corpus_invariants(ref, corpus, chroma_texts, rerun):
    spec = SCHEMAS[ref].spec
    text = chroma_texts[corpus]
    spans = _shared_chunker(ref).chunk(text)
    assert spans, f"{ref} made no chunk of {corpus}"
    problems = violations(text, spans, spec, limit=10)
    assert not problems, f"{ref} on {corpus}:\n  " + "\n  ".join(problems)
    assert spans_digest([spans]) == rerun.digest(ref, corpus), (
        f"{ref} on {corpus}: chunking twice differs (fresh chunker in another process vs. the reused one here)"
    )


# --------------------------------------------------------------------------- many short documents


@pytest.fixture(scope="module")
def passages() -> list[tuple[str, str]]:
    docs = read_passages()
    assert len(docs) > 800, f"expected every passage record, found {len(docs)} documents"
    return docs


@pytest.mark.slow
@pytest.mark.parametrize("ref", REFS)
def test_passage_invariants(ref, passages, rerun):
    spec = SCHEMAS[ref].spec
    chunker = _shared_chunker(ref)
    per_doc = [chunker.chunk(text) for _, text in passages]
    bad = []
    for (doc_id, text), spans in zip(passages, per_doc):
        problems = violations(text, spans, spec, limit=3)
        if problems:
            bad.append(f"doc {doc_id}: " + "; ".join(problems))
    assert not bad, f"{ref}: {len(bad)} of {len(passages)} passages break invariants:\n  " + "\n  ".join(bad[:10])
    assert spans_digest(per_doc) == rerun.digest(ref, "passages"), (
        f"{ref}: another process (other hash seed, reverse document order) chunks the passages differently"
    )


# --------------------------------------------------------------------------- markdown heading paths

MARKDOWN_DOC = """\
Preamble text before any heading. It has no heading path.

# Alpha

Alpha body. #hashtag is not a heading, and neither is the next line.
####### seven hashes

## Beta

Beta body with enough words to need more than one small chunk: the quick brown fox
jumps over the lazy dog, again and again, until the section is long enough.

```python
# not a heading: a comment in a code block
x = 1
```

### Gamma
Gamma body.
#### Delta is level 4, outside the configured levels
Delta body stays in the Gamma section.

## Epsilon ##
~~~
```
## also not a heading: inside a tilde fence
~~~
Epsilon body after the tilde fence.

```
~~~
# inside after tilde: tildes do not close a backtick fence
```python
# still code: a line with an info string does not close a fence
```
Epsilon tail.

# Zeta
````markdown
```python
# nested, not a heading
```
````
Zeta body.
"""

# Hand-written oracle: each real heading line and the path of the section it opens.
MARKDOWN_SECTIONS = (
    ("# Alpha\n", ("Alpha",)),
    ("## Beta\n", ("Alpha", "Beta")),
    ("### Gamma\n", ("Alpha", "Beta", "Gamma")),
    ("## Epsilon ##\n", ("Alpha", "Epsilon")),
    ("# Zeta\n", ("Zeta",)),
)
NOT_HEADINGS = {
    "#hashtag": ("Alpha",),
    "####### seven": ("Alpha",),
    "# not a heading": ("Alpha", "Beta"),
    "#### Delta": ("Alpha", "Beta", "Gamma"),
    "## also not a heading": ("Alpha", "Epsilon"),
    "# inside after tilde": ("Alpha", "Epsilon"),
    "# still code": ("Alpha", "Epsilon"),
    "# nested, not a heading": ("Zeta",),
}


def _sections(doc: str) -> list[tuple[int, tuple[str, ...]]]:
    starts = [(0, ())]
    for line, path in MARKDOWN_SECTIONS:
        assert doc.count("\n" + line) == 1, line
        starts.append((doc.index("\n" + line) + 1, path))
    return starts


MARKDOWN_SPECS = {
    "shipped": SCHEMAS["markdown@1"].spec if "markdown@1" in SCHEMAS else None,
    "minilm-16": _ADAPTER.validate_python(dict(kind="markdown", tokenizer="all-MiniLM-L6-v2", size=16)),
    "cl100k-16": _ADAPTER.validate_python(dict(kind="markdown", tokenizer="cl100k_base", size=16)),
    "cl100k-24-8": _ADAPTER.validate_python(dict(kind="markdown", tokenizer="cl100k_base", size=24, overlap=8)),
}


@pytest.mark.parametrize("name", MARKDOWN_SPECS)
def test_markdown_heading_path_is_the_enclosing_headings(name):
    spec = MARKDOWN_SPECS[name]
    assert spec is not None, "markdown@1 is not shipped any more"
    doc = MARKDOWN_DOC
    spans = build_chunker(spec).chunk(doc)
    problems = violations(doc, spans, spec)
    assert not problems, "\n".join(problems)

    sections = _sections(doc)
    bounds = [s for s, _ in sections[1:]] + [len(doc)]
    for sp in spans:
        i = max(k for k, (start, _) in enumerate(sections) if start <= sp.start)
        chunk = doc[sp.start : sp.end]
        assert sp.end <= bounds[i], f"chunk {chunk!r} crosses into the next section"
        assert sp.heading_path == sections[i][1], f"chunk {chunk!r}: {sp.heading_path} != {sections[i][1]}"

    # The lines that look like headings but are not: their chunk has the real path.
    for marker, path in NOT_HEADINGS.items():
        at = doc.index(marker)
        holders = [sp for sp in spans if sp.start <= at < sp.end]
        assert holders, marker
        assert all(sp.heading_path == path for sp in holders), (marker, [sp.heading_path for sp in holders])
    assert {sp.heading_path for sp in spans} == {p for _, p in sections}


def test_markdown_small_size_splits_sections():
    """The small specs above really exercise the fallback (several chunks per section)."""
    spans = build_chunker(MARKDOWN_SPECS["minilm-16"]).chunk(MARKDOWN_DOC)
    per_path = {}
    for sp in spans:
        per_path[sp.heading_path] = per_path.get(sp.heading_path, 0) + 1
    assert per_path[("Alpha", "Beta")] > 1


# --------------------------------------------------------------------------- sentence packing


def test_sentence_keeps_closing_quotes_and_brackets():
    text = 'He said "Stop." Then (it rained.) We left! [Done.]\n\nNext paragraph'
    assert [text[s:e] for s, e in sentences(text)] == [
        'He said "Stop."',
        "Then (it rained.)",
        "We left!",
        "[Done.]",
        "Next paragraph",
    ]


# 13 tokens a sentence in both tokenizers' eyes (cl100k: 13, MiniLM: 12-13); the
# "\n \n" between them costs cl100k one token that the sentence counts miss.
SENTENCE_TEXT = "\n \n".join(
    f"Sentence number {i} talks about topic {i * 7 % 13} at some length." for i in range(30)
)


@pytest.mark.parametrize("tokenizer", ["cl100k_base", "all-MiniLM-L6-v2"])
@pytest.mark.parametrize("overlap", [0, 12])
def test_sentence_chunks_are_whole_sentences(tokenizer, overlap):
    # Three sentences sum to 39 <= 40 tokens, but cl100k counts 41 for the joined
    # text; packing on the sum used to overshoot and re-cut in mid-sentence.
    spec = _ADAPTER.validate_python(dict(kind="sentence", tokenizer=tokenizer, size=40, overlap=overlap))
    spans = build_chunker(spec).chunk(SENTENCE_TEXT)
    assert not violations(SENTENCE_TEXT, spans, spec)
    sents = sentences(SENTENCE_TEXT)
    assert max(get_tokenizer(tokenizer).count(SENTENCE_TEXT[s:e]) for s, e in sents) <= 40
    starts, ends = {s for s, _ in sents}, {e for _, e in sents}
    for sp in spans:
        assert sp.start in starts and sp.end in ends, SENTENCE_TEXT[sp.start : sp.end]


@pytest.mark.parametrize("tokenizer", ["cl100k_base", "all-MiniLM-L6-v2"])
def test_sentence_overlap_repeats_trailing_sentences(tokenizer):
    # Each sentence costs more than a third of the overlap-free room, and about the
    # overlap itself: the old test counted the next sentence against the overlap
    # and so repeated nothing here.
    spec = _ADAPTER.validate_python(dict(kind="sentence", tokenizer=tokenizer, size=40, overlap=16))
    tok = get_tokenizer(tokenizer)
    spans = build_chunker(spec).chunk(SENTENCE_TEXT)
    assert len(spans) > 3
    for a, b in zip(spans, spans[1:]):
        assert a.start < b.start < a.end, "consecutive chunks should share trailing sentences"
        assert tok.count(SENTENCE_TEXT[b.start : a.end]) <= spec.overlap
