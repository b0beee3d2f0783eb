"""The regression gate with the real model: planted regressions fail with a readable diff; a no-op passes unembedded.

All tests share one eval cache (module-scoped $RAGINDEX_HOME), so the span
set's queries and the baseline's chunks are embedded once per module.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from click.testing import CliRunner

from ragindex.cli import main
from ragindex.schemas.registry import PACKAGE_DIR
from tests.support.data import write_span_set

REF = "recursive-250@1"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    return {"home": root / "home", "dataset": write_span_set(root / "evidence")}


@pytest.fixture
def gate(shared, tmp_path, monkeypatch, model):
    """A private schemas root and baselines folder, the shared eval cache, and a recorded baseline."""
    monkeypatch.setenv("RAGINDEX_HOME", str(shared["home"]))
    schemas = tmp_path / "schemas"
    shutil.copytree(PACKAGE_DIR / "chunkers", schemas / "chunkers")
    shutil.copy(PACKAGE_DIR / "chunkers.lock", schemas / "chunkers.lock")
    monkeypatch.setenv("RAGINDEX_SCHEMAS", str(schemas))
    baselines = tmp_path / "baselines"
    res = invoke("eval", "record", "--schema", REF, "--dataset", str(shared["dataset"]), "--baselines", str(baselines), "--json")
    assert res.exit_code == 0, res.output
    return {"schemas": schemas, "baselines": baselines}


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def diff(gate, *extra):
    return invoke("eval", "diff", "--baselines", str(gate["baselines"]), *extra)


def no_model(monkeypatch):
    """Make any attempt to build an embedder fail the test."""
    from ragindex.embedders.registry import EmbedderConfig

    def refuse(self):
        raise AssertionError("the gate built an embedder for an unchanged schema")

    monkeypatch.setattr(EmbedderConfig, "build", refuse)


def test_baseline_file_holds_what_the_gate_needs(gate):
    b = json.loads((gate["baselines"] / f"{REF}.json").read_text())
    assert {"metrics", "dataset_fingerprint", "chunker_fingerprint", "embedder", "noise", "tolerances", "previous",
            "accepted_regression", "per_question"} <= set(b)
    assert b["embedder"]["model"] == "all-MiniLM-L6-v2" and len(b["embedder"]["fingerprint"]) == 64
    assert b["metrics"]["recall"] > 0.75  # the real model finds the questions' evidence (0.88 measured on the span set)


def test_noop_change_passes_without_embedding(gate, monkeypatch):
    f = gate["schemas"] / "chunkers" / "recursive-250.v1.toml"
    f.write_text("# reviewed: no behaviour change\n" + "\n".join(reversed(f.read_text().splitlines())) + "\n")
    no_model(monkeypatch)
    t0 = time.perf_counter()
    res = diff(gate, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ok"] and out["schemas"][0]["status"] == "skipped" and out["schemas"][0]["embedded"] == 0
    assert time.perf_counter() - t0 < 30


def test_32_token_chunks_fail_with_a_readable_diff(gate, monkeypatch, tmp_path):
    f = gate["schemas"] / "chunkers" / "recursive-250.v1.toml"
    f.write_text(f.read_text().replace("size = 250", "size = 32"))
    md = tmp_path / "gate.md"
    res = diff(gate, "--markdown", str(md))
    assert res.exit_code == 5, res.output
    out = res.output
    assert f"{REF}: FAIL (regression" in out and "REGRESSION" in out
    assert "recall" in out and "baseline" in out and "delta" in out
    assert "questions that lost most (recall)" in out
    assert f"ragindex eval record --schema {REF} --accept-regression" in out
    assert "| recall |" in md.read_text()

    # Re-recording without a reason keeps the gate red; with a reason it passes, without embedding.
    args = ("eval", "record", "--schema", REF, "--baselines", str(gate["baselines"]))
    assert invoke(*args).exit_code == 0
    res = diff(gate)
    assert res.exit_code == 5 and "recorded-regression" in res.output and "--accept-regression" in res.output
    assert invoke(*args, "--accept-regression", "smaller chunks for the citation UI").exit_code == 0
    no_model(monkeypatch)
    res = diff(gate)
    assert res.exit_code == 0, res.output
    assert "accepted regression: smaller chunks for the citation UI" in res.output
    b = json.loads((gate["baselines"] / f"{REF}.json").read_text())
    assert "recall" in b["previous"]["regressions"]


def test_chunker_dropping_every_last_chunk_fails(gate, monkeypatch):
    from ragindex.chunkers import recursive, registry

    class DropLast(recursive.RecursiveChunker):
        IMPL_VERSION = recursive.RecursiveChunker.IMPL_VERSION + 1

        def chunk(self, text):
            return list(super().chunk(text))[:-1]

    monkeypatch.setitem(registry.KINDS, "recursive", DropLast)
    registry._behaviour_hash.cache_clear()
    try:
        res = diff(gate, "--json")
    finally:
        registry._behaviour_hash.cache_clear()
    assert res.exit_code == 5, res.output
    v = json.loads(res.stdout)["schemas"][0]
    assert v["status"] == "regression" and "recall" in {m for m, d in v["diff"].items() if d["regression"]}
    assert v["embedded"] == 0  # every surviving chunk was in the cache already
    assert v["losers"] and v["losers"][0]["after"] < v["losers"][0]["before"]
    assert any(c.startswith("chunker ") for c in v["changed"])


def test_changed_fingerprint_without_rerecord_fails_even_if_not_worse(gate):
    # Same dataset, another baseline file claiming an older chunker fingerprint.
    p = gate["baselines"] / f"{REF}.json"
    b = json.loads(p.read_text())
    b["chunker_fingerprint"] = "0" * 64
    p.write_text(json.dumps(b))
    res = diff(gate)
    assert res.exit_code == 5 and "not-recorded" in res.output and f"ragindex eval record --schema {REF}" in res.output


def test_new_version_of_gated_schema_needs_a_baseline(gate):
    src = gate["schemas"] / "chunkers" / "recursive-250.v1.toml"
    (gate["schemas"] / "chunkers" / "recursive-250.v2.toml").write_text(src.read_text().replace("size = 250", "size = 240"))
    res = diff(gate)
    assert res.exit_code == 5 and "recursive-250@2: FAIL (missing" in res.output


def test_changed_embedder_is_evaluated_not_skipped(gate):
    p = gate["baselines"] / f"{REF}.json"
    b = json.loads(p.read_text())
    b["embedder"]["weights"] = "0" * 64  # as if the baseline was recorded with other weights
    p.write_text(json.dumps(b))
    res = diff(gate, "--json")
    assert res.exit_code == 5
    v = json.loads(res.stdout)["schemas"][0]
    assert v["status"] == "not-recorded" and any(c.startswith("embedder ") for c in v["changed"])


def test_the_gate_judges_the_int8_variant_against_fp32_baselines(gate):
    """`ragindex --model all-MiniLM-L6-v2-int8 eval diff`: the model change is named and the variant is evaluated,
    with the per-metric deltas and paired intervals the decision to make it a default rests on."""
    res = invoke("--model", "all-MiniLM-L6-v2-int8", "eval", "diff", "--baselines", str(gate["baselines"]), "--json")
    assert res.exit_code in (0, 5), res.output
    (v,) = json.loads(res.stdout)["schemas"]
    assert any("all-MiniLM-L6-v2 -> all-MiniLM-L6-v2-int8" in c for c in v["changed"]), v["changed"]
    recall = v["diff"]["recall"]
    assert v["embedded"] > 0 and recall["after"] > 0.5 and recall["after"] != recall["before"]  # int8 vectors, not fp32's
    lo, hi = recall["ci95"]
    assert lo <= recall["delta"] <= hi
