"""The CPU fast path (issue 25), one run: torch fp32, ONNX fp32 and ONNX int8 against raw sentence-transformers.

1. Embed stage: texts/s and tokens/s of each variant through its ragindex embedder on the first
   ``--texts`` SciFact abstracts, each against raw ``SentenceTransformer.encode`` fp32 (its defaults,
   batch_size=32) on the same texts. Raw runs first and last (its mean is the reference), so drift of
   the machine over the run shows in ``raw_drift``. Cosine of each variant's vectors to raw's.
2. Full build: the wall of a full ``reindex`` of ``--build-docs`` SciFact abstracts with the default
   schema, per variant, in fresh homes (the model loaded, exported and its throughput known beforehand).
3. Quality, the gate's rule: SciFact nDCG@10 (dense, whole documents) and the chunking-evaluation
   recall and IoU of the default configuration (default schema, default mode, k=5, all questions),
   per variant. The int8 variant may become the default for new tenants only if it loses at most
   0.005 nDCG@10 and 0.5 recall points against torch fp32.
4. No model loaded for nothing: wall of a no-op ``ragindex reindex`` of the README's docs tenant, of
   ``ragindex --help``, and ``python -X importtime`` of the CLI (median of 5 each).

Usage: python benchmarks/cpu_variants.py [--texts 2000] [--build-docs 1000] [--skip-quality] [--plot]
Writes benchmarks/results/cpu_variants.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.data import scifact_docs, shared_data, write_jsonl

RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "benchmarks" / ".work" / "cpu_variants"
VARIANTS = {"torch fp32": "all-MiniLM-L6-v2", "onnx fp32": "all-MiniLM-L6-v2-onnx", "onnx int8": "all-MiniLM-L6-v2-int8"}
CLI = [str(Path(sys.executable).parent / "ragindex")]


def _texts(n: int) -> list[str]:
    from ragindex.evaluate.datasets import beir_text

    return [beir_text(d) for d in scifact_docs(n)]


def embed_stage(texts: list[str]) -> dict:
    from sentence_transformers import SentenceTransformer

    from ragindex.embedders.local import default_model_dir
    from ragindex.embedders.registry import EmbedderConfig

    raw_model = SentenceTransformer(str(default_model_dir()), device="cpu", local_files_only=True)
    embedders = {name: EmbedderConfig(model).build() for name, model in VARIANTS.items()}
    tokens = sum(embedders["torch fp32"].token_counts(texts))
    for e in embedders.values():
        e.embed(texts[:32])  # warm-up: loads the model, opens the session (the export was made beforehand)
    raw_model.encode(texts[:32], show_progress_bar=False)

    def raw() -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        v = raw_model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        return time.perf_counter() - t0, v

    raw_first, ref = raw()
    rows = {}
    for name, e in embedders.items():
        t0 = time.perf_counter()
        v = e.embed(texts)
        s = time.perf_counter() - t0
        cos = np.sum(v * ref, axis=1)
        rows[name] = {"seconds": round(s, 2), "texts_per_s": round(len(texts) / s, 1), "tokens_per_s": round(tokens / s, 1),
                      "cosine_to_raw_mean": round(float(cos.mean()), 5), "cosine_to_raw_min": round(float(cos.min()), 5),
                      "detail": getattr(e, "detail", f"torch {getattr(e, 'dtype_class', '')} on {e.device}")}
    raw_last, _ = raw()
    raw_s = (raw_first + raw_last) / 2
    for r in rows.values():
        r["speedup_vs_raw_encode"] = round(raw_s / r["seconds"], 3)
    return {"texts": len(texts), "tokens": tokens, "raw_encode": {"seconds": round(raw_s, 2), "texts_per_s": round(len(texts) / raw_s, 1),
            "tokens_per_s": round(tokens / raw_s, 1), "first_s": round(raw_first, 2), "last_s": round(raw_last, 2)},
            "raw_drift": round(raw_last / raw_first, 3), "variants": rows}


def full_build(n_docs: int) -> dict:
    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.indexing.plan import Throughput
    from ragindex.indexing.run import reindex
    from ragindex.schemas.registry import DEFAULT_SCHEMA
    from ragindex.store.tenants import TenantStore

    src = write_jsonl(WORK / "build.jsonl", scifact_docs(n_docs))
    out = {}
    for name, model in VARIANTS.items():
        emb = EmbedderConfig(model).build()
        store = TenantStore(WORK / f"build-{model}")
        Throughput(store.root).get(emb)  # calibrated outside the timing, as on a machine that ran before
        t0 = time.perf_counter()
        res = reindex(store, "t", source=src, chunker=DEFAULT_SCHEMA, embedder=emb)
        wall = time.perf_counter() - t0
        out[name] = {"wall_s": round(wall, 2), "embed_s": round(res.ledger.get("seconds", 0.0), 2),
                     "texts_embedded": res.ledger.get("texts", 0), "tokens_embedded": res.ledger.get("tokens", 0)}
    for r in out.values():
        r["wall_vs_torch_fp32"] = round(r["wall_s"] / out["torch fp32"]["wall_s"], 3)
    return {"docs": n_docs, "schema": DEFAULT_SCHEMA, **out}


def quality() -> dict:
    from ragindex.evaluate import datasets
    from ragindex.evaluate.gate import GateConfig, default_configuration
    from ragindex.evaluate.runner import evaluate
    from ragindex.schemas import SchemaRegistry

    schema_ref, mode = default_configuration()
    schema = SchemaRegistry().get(schema_ref)
    scifact, chroma = datasets.load("scifact", shared_data()), datasets.load("chroma", shared_data())
    out = {"scifact": {"setting": "dense, whole documents"}, "chroma": {"setting": f"{schema_ref} {mode}, k=5, all questions"}}
    for name, model in VARIANTS.items():
        cfg = GateConfig(model=model, cache_root=WORK / "eval")
        s = evaluate(scifact, None, cfg.embedder_for("scifact"), 10, mode="dense")
        c = evaluate(chroma, schema, cfg.embedder_for("chroma"), 5, mode=mode)
        out["scifact"][name] = {"ndcg@10": round(s.metrics["ndcg@10"], 4)}
        out["chroma"][name] = {"recall": round(100 * c.metrics["recall"], 2), "iou": round(100 * c.metrics["iou"], 2)}
    base_s, base_c = out["scifact"]["torch fp32"], out["chroma"]["torch fp32"]
    int8_s, int8_c = out["scifact"]["onnx int8"], out["chroma"]["onnx int8"]
    loss = {"ndcg@10": round(base_s["ndcg@10"] - int8_s["ndcg@10"], 4), "recall_points": round(base_c["recall"] - int8_c["recall"], 2)}
    out["int8_loss_vs_torch_fp32"] = loss
    out["int8_passes_the_gate"] = loss["ndcg@10"] <= 0.005 and loss["recall_points"] <= 0.5
    return out


def _median_wall(cmd: list[str], env: dict, n: int = 5) -> float:
    walls = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    return round(statistics.median(walls), 3)


def no_model_for_nothing() -> dict:
    home = WORK / "noop"
    env = {**os.environ, "RAGINDEX_HOME": str(home)}
    env.pop("RAGINDEX_MODEL", None)
    env.pop("RAGINDEX_MODELS", None)
    subprocess.run([*CLI, "reindex", "--tenant", "docs", "--source", str(REPO / "docs")], env=env, check=True, capture_output=True)
    noop = _median_wall([*CLI, "reindex", "--tenant", "docs"], env)
    helps = _median_wall([*CLI, "--help"], env)
    imp = subprocess.run([sys.executable, "-X", "importtime", "-c", "import ragindex.cli"], env=env, capture_output=True, text=True)
    total_us = max(int(m.group(1)) for m in re.finditer(r"\|\s*(\d+) \| ragindex\.cli$", imp.stderr, re.MULTILINE))
    probe = ("import sys; from ragindex.cli.root import main\ntry: main(['reindex', '--tenant', 'docs'])\n"
             "except SystemExit: pass\nprint('torch' in sys.modules)")
    torch_loaded = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout.strip().endswith("True")
    return {"noop_reindex_wall_s": noop, "help_wall_s": helps, "import_ragindex_cli_ms": round(total_us / 1000, 1),
            "noop_reindex_imports_torch": torch_loaded, "targets": {"noop_le_1s": noop <= 1.0, "help_le_0.5s": helps <= 0.5}}


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    st = out["embed_stage"]
    names = ["raw encode"] + list(st["variants"])
    tps = [st["raw_encode"]["texts_per_s"]] + [r["texts_per_s"] for r in st["variants"].values()]
    axes[0].bar(names, tps, color=["#999999", "#4c72b0", "#55a868", "#c44e52"])
    for i, v in enumerate(tps):
        axes[0].text(i, v, f"{v:.0f}" + ("" if i == 0 else f"\n{v / tps[0]:.2f}x"), ha="center", va="bottom")
    axes[0].set_ylim(0, max(tps) * 1.25)
    axes[0].set_ylabel("texts/s (SciFact abstracts, 2 CPU cores)")
    axes[0].set_title("embed stage vs raw SentenceTransformer.encode fp32")
    if "quality" in out:
        q = out["quality"]
        rows = [(n, q["scifact"][n]["ndcg@10"], q["chroma"][n]["recall"], q["chroma"][n]["iou"]) for n in VARIANTS]
        axes[1].axis("off")
        table = axes[1].table(cellText=[[n, f"{a:.4f}", f"{b:.2f}", f"{c:.2f}"] for n, a, b, c in rows],
                              colLabels=["variant", "SciFact nDCG@10", "chroma recall", "chroma IoU"], loc="center")
        table.scale(1, 1.6)
        axes[1].set_title("quality (gate: int8 loses <= 0.005 nDCG, <= 0.5 recall)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--build-docs", type=int, default=1000)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "cpu_variants.json")
    ap.add_argument("--plot", action="store_true", help="redraw the plot from the results file, run nothing")
    args = ap.parse_args()
    if args.plot:
        plot(json.loads(args.out.read_text()), args.out.with_suffix(".png"))
        return
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    os.environ["RAGINDEX_HOME"] = str(WORK / "home")
    os.environ["RAGINDEX_MODELS"] = str(WORK / "models")
    from ragindex.embedders.onnx import choose_quantization, cpu_flags

    t0 = time.perf_counter()
    from ragindex.embedders.registry import EmbedderConfig

    t_export = time.perf_counter()
    EmbedderConfig("all-MiniLM-L6-v2-int8").build().embed(["export"])  # the one-off export, timed apart
    export_s = time.perf_counter() - t_export
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "vnni": bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"}), "quantization": choose_quantization()},
           "int8_export_s": round(export_s, 1)}
    out["embed_stage"] = embed_stage(_texts(args.texts))
    print(json.dumps(out["embed_stage"], indent=1), flush=True)
    out["full_build"] = full_build(args.build_docs)
    print(json.dumps(out["full_build"], indent=1), flush=True)
    if not args.skip_quality:
        out["quality"] = quality()
        print(json.dumps(out["quality"], indent=1), flush=True)
    out["no_model_for_nothing"] = no_model_for_nothing()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    plot(out, args.out.with_suffix(".png"))
    print(json.dumps(out["no_model_for_nothing"], indent=1))


if __name__ == "__main__":
    main()
