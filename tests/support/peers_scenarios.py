"""The scenario logic of the peers benchmark (benchmarks/peers.py), testable without the peers' packages.

The comparison is only as honest as its corpus edits, its stale-vector count and its stand-in
for a model change, so they live here, beside the other test helpers, and
tests/harness/test_peers_harness.py tests them. benchmarks/peers.py imports them from here;
it keeps what needs the real data or the peers (its loader, the three adapters, nDCG, the plot).

Nothing here reads a data set: every function takes its corpus as an argument. Only
:func:`rotated_model` needs more than numpy (sentence-transformers and torch, imported inside it).
"""

from __future__ import annotations

import collections
import random
import shutil
from pathlib import Path

import numpy as np

from tests.support.data import REPO

WORK = REPO / "benchmarks" / ".work"  # where the benchmark keeps what it builds (the rotated model among it)

Corpus = dict[str, str]  # doc id -> text (title + " " + abstract)


# ----------------------------------------------------------------------------- corpora


def base_corpus(full: Corpus, qrels, n: int) -> tuple[Corpus, list[str]]:
    """Every document a test query needs, then others in corpus order, up to n; and the unused ids."""
    needed = {d for rel in qrels.values() for d in rel}
    ids = [d for d in full if d in needed]
    ids += [d for d in full if d not in needed][: max(0, n - len(ids))]
    chosen = set(ids)
    return {d: full[d] for d in ids}, [d for d in full if d not in chosen]


def edited(corpus: Corpus, spare: list[str], full: Corpus, protected: set[str], rng: random.Random) -> tuple[Corpus, dict]:
    """1% of documents edited (a sentence appended), 0.5% deleted and 0.5% added (never a document a query needs)."""
    n = len(corpus)
    free = sorted(set(corpus) - protected)
    edit = rng.sample(sorted(corpus), max(1, n // 100))
    delete = rng.sample([d for d in free if d not in edit], max(1, n // 200))
    add = spare[: max(1, n // 200)]
    out = dict(corpus)
    for d in edit:
        out[d] = out[d] + " This record was revised after publication."
    for d in delete:
        del out[d]
    for d in add:
        out[d] = full[d]
    return out, {"edited": len(edit), "deleted": len(delete), "added": len(add)}


def with_duplicates(corpus: Corpus, protected: set[str], rng: random.Random) -> tuple[Corpus, dict]:
    """The same number of documents, 30% of them duplicates: 15% exact copies, 15% with one word changed.

    The originals kept are every document a query needs (``protected``), then others in corpus order.
    """
    n = len(corpus)
    n_dup = (30 * n) // 100
    ids = [d for d in corpus if d in protected] + [d for d in corpus if d not in protected]
    keep = ids[: n - n_dup]
    out = {d: corpus[d] for d in keep}
    sources = rng.sample(keep, n_dup)
    for i, src in enumerate(sources):
        text = corpus[src]
        if i % 2:  # near-exact: the last word changed
            words = text.split(" ")
            words[-1] = "(reprinted)."
            text = " ".join(words)
        out[f"dup-{i}-{src}"] = text
    return out, {"originals": len(keep), "exact_duplicates": (n_dup + 1) // 2, "near_duplicates": n_dup // 2}


# ----------------------------------------------------------------------------- models and counting


def rotated_model(base: Path, seed: int = 0, root: Path = WORK) -> Path:
    """all-MiniLM-L6-v2 + a fixed orthogonal rotation (Dense, no bias), saved once under ``root``."""
    target = root / f"all-MiniLM-L6-v2-rotated-{seed}"
    if (target / "modules.json").exists():
        return target
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize

    model = SentenceTransformer(str(base), device="cpu", local_files_only=True)
    mods = [m for m in model if type(m).__name__ != "Normalize"]
    dim = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    dense = Dense(dim, dim, bias=False, activation_function=torch.nn.Identity())
    with torch.no_grad():
        dense.linear.weight.copy_(torch.from_numpy(q.astype(np.float32)))
    tmp = target.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    SentenceTransformer(modules=[*mods, dense, Normalize()], device="cpu").save(str(tmp))
    tmp.rename(target)
    return target


class Meter:
    """Counts what one system sends to its embedding model: texts, and tokens as the model sees them."""

    def __init__(self, tokenizer, max_len: int) -> None:
        self.tokenizer, self.max_len = tokenizer, max_len
        self.texts = self.tokens = 0
        self.seen_by_model: dict[str, set[str]] = collections.defaultdict(set)  # model tag -> texts it embedded
        self.model = "A"

    def __call__(self, texts) -> None:
        texts = list(texts)
        if not texts:
            return
        ids = self.tokenizer(texts, add_special_tokens=True, truncation=False, return_attention_mask=False)["input_ids"]
        self.texts += len(texts)
        self.tokens += sum(min(len(i), self.max_len) for i in ids)
        self.seen_by_model[self.model].update(texts)

    def reset(self) -> None:
        self.texts = self.tokens = 0


# ----------------------------------------------------------------------------- measuring


def stale(system, corpus: Corpus, meter: Meter) -> dict:
    """Vectors a fresh index of ``corpus`` by this system, with its current settings, would not hold."""
    have = collections.Counter(system.vectors())
    want = system.expected(corpus)
    extra = sum(max(0, n - want.get(k, 0)) for k, n in have.items())
    old_model = 0
    if meter.model != "A":  # vectors kept from before the model change: their text was never embedded by the new one
        fresh = meter.seen_by_model[meter.model]
        old_model = sum(min(n, want.get(k, 0)) for k, n in have.items() if k[1] not in fresh)
    missing = sum(max(0, n - have.get(k, 0)) for k, n in want.items())
    return {"vectors": sum(have.values()), "expected": sum(want.values()), "stale": extra + old_model,
            "stale_outdated_chunks": extra, "stale_old_model": old_model, "missing": missing}


def render(result: dict) -> str:
    rows = result["rows"]
    systems = list(dict.fromkeys(r["system"] for r in rows))
    lines = ["| scenario | system | texts embedded | tokens embedded | wall s | stale vectors | vectors / expected | nDCG@10 |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['system']} | {r['texts_embedded']:,} | {r['tokens_embedded']:,} | {r['seconds']:.1f} "
                     f"| {r['stale']:,} | {r['vectors']:,} / {r['expected']:,} | {r['ndcg@10']:.4f} |")
    if "ragindex" in systems:
        lines += ["", "Ratios ragindex / peer (texts embedded; wall time). \"0/0\" means neither embedded anything.", "",
                  "| scenario | " + " | ".join(f"vs {s} texts | vs {s} wall" for s in systems if s != "ragindex") + " |",
                  "|---|" + "---:|---:|" * (len(systems) - 1)]
        by = {(r["scenario"], r["system"]): r for r in rows}
        for sc in dict.fromkeys(r["scenario"] for r in rows):
            ours = by[(sc, "ragindex")]
            cells = []
            for s in systems:
                if s == "ragindex":
                    continue
                peer = by[(sc, s)]
                cells.append(_ratio(ours["texts_embedded"], peer["texts_embedded"]))
                cells.append(_ratio(ours["seconds"], peer["seconds"]))
            lines.append(f"| {sc} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ratio(a: float, b: float) -> str:
    if a == 0 and b == 0:
        return "0/0"
    if b == 0:
        return f"{a:,} / 0"
    return f"{a / b:.2f}"
