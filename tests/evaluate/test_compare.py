"""`eval diff --against`: two recorded configurations with bootstrap intervals, and the study's published rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ragindex.cli import main
from ragindex.evaluate.compare import bootstrap_ci, compare, published_rows
from tests.support.data import CHROMA, REPO


def _baseline(schema: str, scores: dict[str, float], **extra) -> dict:
    return {"schema": schema, "dataset": "chroma", "k": 5, "dataset_fingerprint": "f", "mode": "dense",
            "metrics": {"recall": float(np.mean(list(scores.values())))},
            "per_question": {q: {"recall": v} for q, v in scores.items()}, **extra}


def test_intervals_contain_the_mean_and_a_consistent_gain_excludes_zero():
    rng = np.random.default_rng(1)
    old = {f"q{i}": float(rng.random()) for i in range(200)}
    new = {q: min(1.0, v + 0.1) for q, v in old.items()}  # every question better by up to 0.1
    c = compare(_baseline("new@1", new), _baseline("old@1", old))
    m = c["metrics"]["recall"]
    assert m["new_ci95"][0] <= m["new"] <= m["new_ci95"][1]
    assert m["delta"] > 0 and m["delta_ci95"][0] > 0, "a gain on every question must have an interval above zero"
    noise = {q: float(rng.random()) for q in old}
    m2 = compare(_baseline("n@1", noise), _baseline("o@1", old))["metrics"]["recall"]
    assert m2["delta_ci95"][0] < 0 < m2["delta_ci95"][1], "two unrelated runs of equal mean: the interval spans zero"
    lo, hi = bootstrap_ci(np.array([0.5] * 10))
    assert lo == hi == 0.5


def test_different_datasets_are_refused():
    a = _baseline("a@1", {"q": 1.0})
    b = _baseline("b@1", {"q": 1.0}, **{"k": 10})
    with pytest.raises(ValueError, match="cannot compare"):
        compare(a, b)


def test_published_rows_are_read_from_the_data_root(tmp_path, monkeypatch):
    rows = {r["label"]: r for r in published_rows(CHROMA.parent)}
    assert len(rows) == 8
    monkeypatch.setenv("RAGINDEX_PROJECT", str(REPO))  # no root given: found where the chroma preset is
    assert published_rows() == list(rows.values())
    assert published_rows(tmp_path) == []  # a root given is the only place looked at
    assert rows["published Recursive 200/0"]["recall"] == pytest.approx(0.757)
    assert rows["published Cluster 200/0"]["iou"] == pytest.approx(0.072)


def test_cli_compares_two_shipped_baselines_without_evaluating(tmp_path):
    res = CliRunner().invoke(main, ["eval", "diff", "--schema", "recursive-200@1", "--against", "default@1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["new"] == "recursive-200@1 dense" and out["old"] == "default@1 dense" and out["questions"] == 472
    assert set(out["metrics"]) >= {"recall", "iou"} and len(out["published"]) == 8
    assert not (tmp_path / "home" / "eval").exists(), "nothing was evaluated"
    two = CliRunner().invoke(main, ["eval", "diff", "--against", "default@1"])
    assert two.exit_code == 2 and "exactly one --schema" in two.output
