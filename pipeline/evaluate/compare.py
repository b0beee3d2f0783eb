"""Two recorded configurations side by side, with bootstrap confidence intervals, and the study's published rows.

``ragindex eval diff --schema default@2+hybrid --against default@1`` reads both
baselines (no evaluation runs: baselines keep every question's scores), and shows
for each metric the two means with 95% intervals (questions resampled with
replacement) and the paired 95% interval of the difference (the same questions,
resampled together). For the chunking-evaluation set it adds the rows of the
study's all-MiniLM-L6-v2 table (``PUBLISHED_RESULTS.md`` beside the ``chroma`` preset's data).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ragindex.evaluate.datasets import PRESETS, preset_roots
from ragindex.evaluate.metrics import paired_bootstrap_ci

PUBLISHED_SECTION = "## Main table, all-MiniLM-L6-v2, n=5 retrieved chunks"


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, questions resampled with replacement (fixed seed)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return (float(values.mean()) if len(values) else 0.0,) * 2
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def published_rows(data_root: Path | None = None) -> list[dict]:
    """The study's all-MiniLM-L6-v2 rows (k=5): label, recall and IoU in [0, 1]; empty if the file is absent.

    ``PUBLISHED_RESULTS.md`` is found where the ``chroma`` preset is (``datasets.preset_roots``):
    under ``data_root`` when given, else ``$RAGINDEX_DATA_ROOT``, the project's ``benchmarks/data/``
    or ``../shared/data``.
    """
    folder = PRESETS["chroma"]
    path = next((root / folder / "PUBLISHED_RESULTS.md" for root, _ in preset_roots(data_root)
                 if (root / folder / "PUBLISHED_RESULTS.md").exists()), None)
    if path is None:
        return []
    text = path.read_text(encoding="utf-8")
    start = text.find(PUBLISHED_SECTION)
    if start < 0:
        return []
    rows = []
    for line in text[start:].splitlines()[3:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        size = re.sub(r"\s*\(.*\)", "", cells[1])
        num = lambda c: float(c.split("±")[0]) / 100  # noqa: E731
        rows.append({"label": f"published {cells[0]} {size}/{cells[2]}", "recall": num(cells[3]), "precision": num(cells[4]),
                     "iou": num(cells[6])})
    return rows


def compare(new: dict, old: dict, data_root: Path | None = None) -> dict:
    """``new`` against ``old`` (two baseline dicts of the same dataset and k)."""
    if (new["dataset"], new["k"], new["dataset_fingerprint"]) != (old["dataset"], old["k"], old["dataset_fingerprint"]):
        raise ValueError(f"cannot compare: {new['schema']} was recorded on {new['dataset']} k={new['k']}, "
                         f"{old['schema']} on {old['dataset']} k={old['k']} (or the data changed since)")
    qs = sorted(set(new["per_question"]) & set(old["per_question"]))
    metrics = [m for m in new["metrics"] if m in old["metrics"]]
    out = {"new": label(new), "old": label(old), "dataset": new["dataset"], "k": new["k"], "questions": len(qs), "metrics": {}}
    for m in metrics:
        a = np.array([new["per_question"][q][m] for q in qs])
        b = np.array([old["per_question"][q][m] for q in qs])
        out["metrics"][m] = {"new": float(a.mean()), "new_ci95": bootstrap_ci(a), "old": float(b.mean()), "old_ci95": bootstrap_ci(b),
                             "delta": float((a - b).mean()), "delta_ci95": paired_bootstrap_ci(a - b)}
    out["published"] = published_rows(data_root) if new["dataset"] == "chroma" and new["k"] == 5 else []
    return out


def label(base: dict) -> str:
    mode = base.get("mode", "dense")
    return f"{base['schema']} {mode}" + (f" ({base['hybrid']})" if mode.startswith("hybrid") and base.get("hybrid") else "")


def render(c: dict, md: bool = False) -> str:
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    ci = lambda t: f"[{100 * t[0]:.2f}, {100 * t[1]:.2f}]"  # noqa: E731
    head = ["metric", c["new"], "95% CI", c["old"], "95% CI", "difference", "95% CI of difference"]
    rows = [[m, pct(d["new"]), ci(d["new_ci95"]), pct(d["old"]), ci(d["old_ci95"]), f"{100 * d['delta']:+.2f}", ci(d["delta_ci95"])]
            for m, d in c["metrics"].items()]
    title = f"{c['new']} against {c['old']}: {c['dataset']}, k={c['k']}, {c['questions']} questions (values in %)"
    lines = [("# " if md else "") + title, ""]
    lines += _table(head, rows, md)
    if c["published"]:
        lines += ["", ("## " if md else "") + "published rows (all-MiniLM-L6-v2, dense, same set and k)", ""]
        lines += _table(["row", "recall", "iou"], [[p["label"], pct(p["recall"]), pct(p["iou"])] for p in c["published"]], md)
    return "\n".join(lines) + "\n"


def _table(head: list[str], rows: list[list[str]], md: bool) -> list[str]:
    if md:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    return ["  " + "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [head, *rows]]
