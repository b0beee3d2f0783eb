"""The retrieval-regression gate: baselines per gated schema, ``record`` and ``diff``.

A baseline ``benchmarks/baselines/<NAME@VERSION>.json`` holds the metrics of one
schema on one dataset, the fingerprints that make them comparable (dataset,
chunker, embedder), each metric's bootstrap noise and tolerance, the per-question
scores (for "who lost"), the diff against the baseline it replaced, and an
optional ``accepted_regression`` reason.

``diff`` judges each baseline:

* every fingerprint unchanged -> skipped, nothing embedded (the model is not
  even loaded); it still fails if the recorded diff is a regression nobody accepted;
* otherwise the schema is evaluated and compared: a metric below baseline minus
  tolerance is a regression, and a changed fingerprint without a re-recorded
  baseline fails in any case, with the ``ragindex eval record`` command to run.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from ragindex.embedders.registry import model_identity
from ragindex.embedders.registry import EmbedderConfig
from ragindex.evaluate import datasets
from ragindex.evaluate.metrics import paired_bootstrap_ci
from ragindex.evaluate.runner import EvalResult, evaluate
from ragindex.evaluate.vectors import CachedEmbedder, eval_cache_path
from ragindex.fsutil import atomic_write_text
from ragindex.project import baselines_root
from ragindex.schemas import SchemaError, SchemaRegistry
from ragindex.schemas.chunker import parse_ref
from ragindex.schemas.registry import DEFAULT_SCHEMA
from ragindex.search.hybrid import MODES, params_for  # noqa: F401  (MODES: the modes the gate judges)
from ragindex.search.searcher import DEFAULT_MODE

BASELINES_ENV = "RAGINDEX_BASELINES"
GATED = ("default@1", "recursive-250@1", "recursive-200@1", "token-250-125@1", "token-200@1")


def config_name(ref: str, mode: str = "dense") -> str:
    """A gated configuration's name (and baseline file stem): ``NAME@VERSION``, ``+MODE`` unless dense."""
    return ref if mode == "dense" else f"{ref}+{mode}"


def parse_config(name: str) -> tuple[str, str]:
    ref, _, mode = name.partition("+")
    return ref, mode or "dense"


def default_configuration() -> tuple[str, str]:
    """What users get: the default schema and the default search mode."""

    return DEFAULT_SCHEMA, DEFAULT_MODE
GATE_DATASET = "chroma"
TOLERANCE_SE = 1.0  # default tolerance = this many bootstrap standard errors of the baseline mean
MIN_TOLERANCE = 0.002  # a metric with (almost) no spread still gets a few tenths of a point
LOSERS = 5


def baselines_dir(path: Path | None = None, write: bool = False) -> Path:
    """``path``, else the project's baselines, else the ones shipped with ragindex (read-only: ``write`` refuses)."""

    if path:
        return Path(path)
    where = baselines_root()
    return where.require_writable("recording a baseline") if write else where.path


def baseline_path(ref: str, root: Path | None = None, mode: str = "dense") -> Path:
    return baselines_dir(root) / f"{config_name(ref, mode)}.json"


@dataclass
class GateConfig:
    """Where baselines, data and the eval caches are, and which embedder to use."""

    baselines: Path | None = None
    data_root: Path | None = None
    model: str = "default"
    cache_root: Path | None = None  # default $RAGINDEX_HOME
    progress: object = None
    _embedders: dict = field(default_factory=dict)

    def embedder_for(self, dataset_key: str) -> CachedEmbedder:
        """One cached embedder per dataset; the model is built on the first cache miss only."""
        if dataset_key not in self._embedders:

            key = dataset_key if dataset_key in datasets.PRESETS else "path-" + _slug(dataset_key)
            self._embedders[dataset_key] = CachedEmbedder(
                eval_cache_path(key, self.cache_root), EmbedderConfig(self.model).build, label=f"eval-{key}", progress=self.progress
            )
        return self._embedders[dataset_key]


def _slug(s: str) -> str:
    import hashlib

    return Path(s).name[:40] + "-" + hashlib.sha256(str(Path(s).absolute()).encode()).hexdigest()[:8]


def load_baseline(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no baseline {path}; record one with `ragindex eval record --schema {path.stem}`") from None
    except ValueError as exc:
        raise ValueError(f"{path}: corrupt baseline ({exc}); re-record it with `ragindex eval record --schema {path.stem}`") from exc


def tolerances_from(noise: dict[str, float]) -> dict[str, float]:
    return {m: round(max(TOLERANCE_SE * se, MIN_TOLERANCE), 4) for m, se in noise.items()}


def compare(before: dict[str, float], after: dict[str, float], tol: dict[str, float]) -> dict[str, dict]:
    """Per metric: before, after, delta, tolerance and whether it is a regression."""
    out = {}
    for m, b in before.items():
        if m not in after:
            continue
        d = after[m] - b
        t = tol.get(m, MIN_TOLERANCE)
        out[m] = {"before": round(b, 6), "after": round(after[m], 6), "delta": round(d, 6), "tolerance": t, "regression": d < -t}
    return out


def record(ref: str, cfg: GateConfig, dataset: str = GATE_DATASET, k: int = 5, accepted_regression: str | None = None,
           mode: str = "dense") -> dict:
    """Evaluate ``ref`` in ``mode`` and write its baseline, keeping the diff against the one it replaces."""

    baselines_dir(cfg.baselines, write=True)  # never into the installed package
    path = baseline_path(ref, cfg.baselines, mode)
    old = load_baseline(path) if path.exists() else None
    if old is not None:
        dataset, k = old["dataset"], old["k"]
    ds = datasets.load(dataset, cfg.data_root)
    res = evaluate(ds, SchemaRegistry().get(ref), cfg.embedder_for(dataset), k, mode=mode)
    tolerances = (old or {}).get("tolerances") or tolerances_from(res.noise)
    previous = None
    same = old is not None and (old["chunker_fingerprint"], old["dataset_fingerprint"], old["embedder"].get("fingerprint")) == (
        res.chunker_fingerprint, res.dataset_fingerprint, res.embedder_fingerprint)
    if same:
        # Re-recording the same configuration (e.g. to add a reason) keeps the diff against
        # the last different baseline; otherwise a second record would erase the regression.
        previous = old.get("previous")
    elif old is not None:
        diff = compare(old["metrics"], res.metrics, tolerances)
        previous = {
            "chunker_fingerprint": old["chunker_fingerprint"],
            "embedder": old["embedder"],
            "dataset_fingerprint": old["dataset_fingerprint"],
            "recorded_at": old.get("recorded_at"),
            "metrics": old["metrics"],
            "diff": diff,
            "regressions": sorted(m for m, d in diff.items() if d["regression"]),
        }
    baseline = {
        "schema": ref,
        "mode": mode,
        "hybrid": res.hybrid,
        "dataset": dataset,
        "dataset_fingerprint": res.dataset_fingerprint,
        "k": k,
        "chunker_fingerprint": res.chunker_fingerprint,
        "embedder": {**model_identity(cfg.model), "fingerprint": res.embedder_fingerprint},
        "recorded_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "questions": len(res.per_question),
        "chunks": res.chunks,
        "metrics": {m: round(v, 6) for m, v in res.metrics.items()},
        "noise": {m: round(v, 6) for m, v in res.noise.items()},
        "tolerances": tolerances,
        "accepted_regression": accepted_regression,
        "previous": previous,
        "per_question": {q: {m: round(v, 4) for m, v in s.items()} for q, s in res.per_question.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(baseline, indent=1, sort_keys=False, ensure_ascii=False) + "\n")
    return baseline


@dataclass
class Verdict:
    """The gate's judgement of one schema."""

    schema: str
    status: str  # skipped | pass | regression | not-recorded | recorded-regression | missing
    ok: bool
    reasons: list[str] = field(default_factory=list)
    fix: str | None = None
    diff: dict[str, dict] = field(default_factory=dict)
    losers: list[dict] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    embedded: int = 0
    seconds: float = 0.0


def _losers(base: dict, res: EvalResult, ds, primary: str) -> list[dict]:
    text = dict(zip(ds.query_ids, ds.queries))
    rows = []
    for q, now in res.per_question.items():
        before = base.get("per_question", {}).get(q, {}).get(primary)
        if before is not None and round(now[primary], 4) < before:  # baselines store 4 decimals
            rows.append({"id": q, "question": text.get(q, ""), "metric": primary, "before": before, "after": round(now[primary], 4),
                         "delta": round(now[primary] - before, 4)})
    return sorted(rows, key=lambda r: (r["delta"], r["id"]))[:LOSERS]


def _add_paired_ci(diff: dict[str, dict], before: dict, after: dict) -> None:
    """95% bootstrap interval of each metric's mean change over the same questions (context, not the verdict)."""
    import numpy as np


    qs = [q for q in after if q in before]
    for m, d in diff.items():
        if qs and all(m in before[q] for q in qs):
            # Baselines store 4 decimals; round alike so an unchanged question contributes exactly 0.
            lo, hi = paired_bootstrap_ci(np.array([round(after[q][m], 4) - before[q][m] for q in qs]))
            d["ci95"] = [round(lo, 6), round(hi, 6)]


def judge(path: Path, cfg: GateConfig) -> Verdict:
    """Judge one baseline file (see the module docstring)."""
    import time


    t0 = time.perf_counter()
    base = load_baseline(path)
    ref, mode = base["schema"], base.get("mode", "dense")
    name = config_name(ref, mode)
    record_cmd = f"ragindex eval record --schema {ref}" + (f" --mode {mode}" if mode != "dense" else "")
    try:
        schema = SchemaRegistry().get(ref)
    except SchemaError as exc:
        return Verdict(name, "missing", False, [str(exc)], f"restore the schema file, or delete {path} if {ref} is retired")
    ds = datasets.load(base["dataset"], cfg.data_root)
    changed = []
    fp_now = schema.chunk_fingerprint(base["embedder"].get("fingerprint", "")) if schema.needs_embeddings else schema.fingerprint()
    if fp_now != base["chunker_fingerprint"]:
        changed.append(f"chunker {base['chunker_fingerprint'][:12]} -> {fp_now[:12]}")
    if ds.fingerprint() != base["dataset_fingerprint"]:
        changed.append(f"dataset {base['dataset_fingerprint'][:12]} -> {ds.fingerprint()[:12]}")
    ident = model_identity(cfg.model)
    if (mode != "bm25" or schema.needs_embeddings) and any(base["embedder"].get(key) != v for key, v in ident.items()):
        changed.append(f"embedder {base['embedder'].get('model')} -> {ident['model']} (weights differ)")
    if mode.startswith("hybrid") and base.get("hybrid") != _hybrid_label(mode):
        changed.append(f"fusion {base.get('hybrid')} -> {_hybrid_label(mode)}")
    if not changed:
        prev = base.get("previous") or {}
        if prev.get("regressions") and not base.get("accepted_regression"):
            return Verdict(name, "recorded-regression", False,
                           [f"the recorded baseline is worse than the one it replaced on {', '.join(prev['regressions'])}"],
                           f"fix the chunker, or re-record with a reason: {record_cmd} --accept-regression \"why\"",
                           diff=prev.get("diff", {}), seconds=time.perf_counter() - t0)
        note = [f"accepted regression: {base['accepted_regression']}"] if prev.get("regressions") else []
        return Verdict(name, "skipped", True, ["fingerprints unchanged; nothing evaluated"] + note, seconds=time.perf_counter() - t0)
    res = evaluate(ds, schema, cfg.embedder_for(base["dataset"]), base["k"], mode=mode)
    diff = compare(base["metrics"], res.metrics, base.get("tolerances") or tolerances_from(base.get("noise", {})))
    _add_paired_ci(diff, base.get("per_question", {}), res.per_question)
    regressions = [m for m, d in diff.items() if d["regression"]]
    primary = "recall" if "recall" in diff else "ndcg@10"
    reasons = [f"{m} dropped {-100 * diff[m]['delta']:.2f} points (tolerance {100 * diff[m]['tolerance']:.2f})" for m in regressions]
    reasons.append("changed since the baseline was recorded: " + "; ".join(changed))
    fix = (f"if the change is intended, re-record: {record_cmd}"
           + (" --accept-regression \"why\"" if regressions else ""))
    return Verdict(name, "regression" if regressions else "not-recorded", False, reasons, fix, diff,
                   _losers(base, res, ds, primary), changed, res.embed.embedded, time.perf_counter() - t0)


def _hybrid_label(mode: str = "hybrid") -> str:
    return params_for(mode).label()


def unbaselined(cfg: GateConfig) -> list[Verdict]:
    """New versions of a gated schema must arrive with their own baseline, and so must the default configuration."""

    have = {p.stem for p in baselines_dir(cfg.baselines).glob("*.json")}
    gated_names = {parse_ref(parse_config(r)[0])[0] for r in have}
    out = []
    for ref in sorted(SchemaRegistry().files()):
        if parse_ref(ref)[0] in gated_names and ref not in have:
            out.append(Verdict(ref, "missing", False, [f"{ref} is a new version of a gated schema and has no baseline"],
                               f"ragindex eval record --schema {ref}"))
    ref, mode = default_configuration()
    # A baselines folder that gates the default schema's family must hold the default configuration itself.
    if parse_ref(ref)[0] in gated_names and config_name(ref, mode) not in have:
        out.append(Verdict(config_name(ref, mode), "missing", False,
                           [f"the default configuration ({ref}, {mode}) has no baseline"],
                           f"ragindex eval record --schema {ref} --mode {mode}"))
    return out


def diff(cfg: GateConfig, refs: list[str] | None = None, mode: str | None = None) -> list[Verdict]:
    """Judge every baseline (or only ``refs``, or only ``mode``'s); the gate passes when every verdict is ok."""
    paths = sorted(baselines_dir(cfg.baselines).glob("*.json"))
    if mode:
        paths = [p for p in paths if parse_config(p.stem)[1] == mode]
    if refs:
        paths = [baseline_path(parse_config(r)[0], cfg.baselines, parse_config(r)[1]) for r in refs]
    if not paths:
        raise FileNotFoundError(f"no baselines in {baselines_dir(cfg.baselines)}; record them with `ragindex eval record --schema NAME@VERSION`")
    return [judge(p, cfg) for p in paths] + ([] if refs or mode else unbaselined(cfg))
