"""GPU path check for the embedder (run on a CUDA machine; the project never requires one).

Measures, in one process on one GPU, on SciFact chunk texts:
  raw sentence-transformers encode (fp32, batch_size=32), raw encode after .half(),
  and ragindex's SentenceTransformerEmbedder (fp16, token-budget batches, order restored);
then forces CUDA out-of-memory with a tiny memory fraction and checks that the
embedder halves its batch instead of failing, and returns the same vectors.

Usage: python benchmarks/gpu_check.py MODEL_DIR TEXTS_JSON [--n 12000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def timed(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("texts")
    ap.add_argument("--n", type=int, default=12000)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    from ragindex.embedders.local import SentenceTransformerEmbedder

    texts = json.load(open(a.texts))[: a.n]
    res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "texts": len(texts)}
    raw = SentenceTransformer(a.model_dir, device="cuda")
    raw.encode(texts[:256], batch_size=32)
    v32, t32 = timed(lambda: raw.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False))
    raw16 = SentenceTransformer(a.model_dir, device="cuda").half()
    raw16.encode(texts[:256], batch_size=32)
    v16raw, t16raw = timed(lambda: raw16.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False))
    ours = SentenceTransformerEmbedder(a.model_dir, device="cuda")
    ours.embed(texts[:256])
    tokens = sum(ours.token_counts(texts))
    vo, to = timed(lambda: ours.embed(texts))
    res.update(
        tokens=tokens,
        raw_fp32_texts_per_s=len(texts) / t32,
        raw_fp16_b32_texts_per_s=len(texts) / t16raw,
        ours_fp16_texts_per_s=len(texts) / to,
        ours_tokens_per_s=tokens / to,
        ratio_ours_over_raw_fp32=t32 / to,
        ratio_ours_over_raw_fp16_b32=t16raw / to,
        token_budget=ours.token_budget,
        dtype_class=ours.dtype_class,
        cos_ours_vs_fp32_mean=float((vo * v32).sum(1).mean()),
        cos_ours_vs_fp32_min=float((vo * v32).sum(1).min()),
    )
    # Out-of-memory fallback: leave the model ~nothing to work with, ask for a huge batch.
    sub = texts[:4096]
    expect = ours.embed(sub)
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    used = torch.cuda.memory_allocated()
    frac = (used + 64 * 2**20) / total  # 64 MiB headroom above what the weights use
    torch.cuda.set_per_process_memory_fraction(frac)
    ours.token_budget = 4 * 1024 * 1024
    start_budget = ours.token_budget
    got = ours.embed(sub)
    torch.cuda.set_per_process_memory_fraction(1.0)
    res.update(oom_start_budget=start_budget, oom_end_budget=ours.token_budget,
               oom_halved=ours.token_budget < start_budget,
               oom_same_vectors_min_cos=float((got * expect).sum(1).min()))
    print(json.dumps(res, indent=2))
    if a.out:
        a.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
