"""The ONNX variants of the bundled model (issue 25): quantisation chosen for the CPU, an identity of
their own, one export shared by every process and made once even when two start together, and vectors
that agree with the torch model's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ragindex.embedders import onnx
from ragindex.embedders.onnx import INT8, ONNX_FP32, OnnxEmbedder, choose_quantization, ensure_export
from ragindex.embedders.registry import EmbedderConfig
from tests.support.data import REPO, passage_docs


def test_the_quantisation_follows_the_cpu_and_can_be_forced(monkeypatch):
    monkeypatch.delenv("RAGINDEX_ONNX_QUANT", raising=False)
    assert choose_quantization({"avx2", "avx512f", "avx512_vnni"}) == "vnni"
    assert choose_quantization({"avx2", "avx_vnni"}) == "vnni"
    assert choose_quantization({"avx2", "fma"}) == "fp32"  # int8 without VNNI only when asked for
    assert choose_quantization({"sse4_2"}) == "fp32"
    monkeypatch.setenv("RAGINDEX_ONNX_QUANT", "avx2")
    assert choose_quantization({"avx512_vnni"}) == "avx2"
    monkeypatch.setenv("RAGINDEX_ONNX_QUANT", "int4")
    with pytest.raises(ValueError, match="RAGINDEX_ONNX_QUANT"):
        choose_quantization()


def test_each_variant_has_its_own_identity_known_without_exporting(monkeypatch, tmp_path, model):
    monkeypatch.setenv("RAGINDEX_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("RAGINDEX_ONNX_QUANT", "vnni")
    vnni = OnnxEmbedder(INT8)
    monkeypatch.setenv("RAGINDEX_ONNX_QUANT", "avx2")
    avx2 = OnnxEmbedder(INT8)
    fp32 = OnnxEmbedder(ONNX_FP32)
    fps = {model.fingerprint, vnni.fingerprint, avx2.fingerprint, fp32.fingerprint}
    assert len(fps) == 4  # the cache never mixes int8, ONNX fp32 and torch fp32 vectors
    assert (vnni.dim, vnni.max_seq_length) == (model.dim, model.max_seq_length)
    assert "vnni quantisation" in vnni.detail and "onnxruntime" in vnni.detail
    assert not (tmp_path / "models").exists()  # nothing exported, no session opened
    assert "_session" not in vnni.__dict__
    assert vnni.full_token_counts(["hello world"]) == model.full_token_counts(["hello world"])


def test_vectors_agree_with_the_torch_model(model):
    texts = [d["text"] for d in passage_docs(60)] + ["lighthouse " * 400]  # the last is truncated by both
    want = model.embed(texts)
    fp32 = EmbedderConfig(ONNX_FP32).build().embed(texts)
    assert np.min(np.sum(fp32 * want, axis=1)) > 0.9999  # same graph, same pooling, same truncation
    int8 = EmbedderConfig(INT8).build().embed(texts)
    cos = np.sum(int8 * want, axis=1)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-4)
    assert cos.mean() > 0.98 and cos.min() > 0.95, (cos.mean(), cos.min())


EXPORT_AND_EMBED = """
import json, sys
from ragindex.embedders.onnx import OnnxEmbedder
e = OnnxEmbedder("all-MiniLM-L6-v2-int8")
v = e.embed(["the same text in every process"])
print(json.dumps({"vector": v[0][:8].tolist(), "folder": str(e.spec.folder)}))
"""


@pytest.mark.slow
def test_two_processes_export_once_and_a_broken_export_is_made_again(tmp_path, monkeypatch):
    models = tmp_path / "models"
    env = {**os.environ, "RAGINDEX_MODELS": str(models), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", EXPORT_AND_EMBED], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-2000:] for _, e in outs]
    got = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert got[0] == got[1]  # the same export, the same vector
    folder = models / os.path.basename(got[0]["folder"])
    exports = [p for p in models.iterdir() if p.is_dir()]
    assert exports == [folder]  # one export, no temporary folder left behind
    meta = json.loads((folder / "export.json").read_text())
    assert meta["quantization"] == choose_quantization() and meta["onnxruntime"]
    made = (folder / "model.onnx").stat().st_mtime_ns

    monkeypatch.setenv("RAGINDEX_MODELS", str(models))
    emb = OnnxEmbedder(INT8)
    calls = []
    monkeypatch.setattr(onnx, "_export", lambda *a: calls.append(a))
    assert ensure_export(emb.spec, emb.model_dir) == folder and not calls  # reused, not exported again
    monkeypatch.undo()
    monkeypatch.setenv("RAGINDEX_MODELS", str(models))

    with open(folder / "model.onnx", "r+b") as f:  # a torn file (a crash of an older version, a bad disk)
        f.truncate(1000)
    again = OnnxEmbedder(INT8).embed(["the same text in every process"])
    assert (folder / "model.onnx").stat().st_mtime_ns != made
    assert np.allclose(again[0][:8], got[0]["vector"], atol=1e-6)


def _cli(*args):
    from click.testing import CliRunner

    from ragindex.cli import main

    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout) if "--json" in args else res.output


@pytest.mark.slow
def test_a_tenant_moves_to_the_int8_variant_as_a_priced_model_change(tmp_path):
    from ragindex.store.manifests import live_manifest
    from ragindex.store.tenants import TenantStore
    from tests.support.folders import make_folder

    docs = passage_docs(8)
    folder = make_folder(tmp_path / "docs", docs)
    _cli("--model", "default", "reindex", "--tenant", "acme", "--source", str(folder))  # the torch model, as older tenants
    _cli("tenants", "add", "acme", "--source", str(folder), "--model", INT8)
    plan = _cli("plan", "--tenant", "acme", "--json")
    assert plan["embedder"] == INT8 and "quantisation" in plan["embedder_detail"]
    assert plan["texts_to_embed"] == plan["unique_texts"] > 0 and plan["vectors_reused"] == 0  # nothing reused across models
    assert f"{INT8} (ONNX int8" in _cli("plan", "--tenant", "acme")
    _cli("reindex", "--tenant", "acme")
    live = live_manifest(TenantStore(tmp_path / "home").paths("acme"))
    assert live.embedder == INT8 and live.run["embedder_detail"] == plan["embedder_detail"]
    hits = _cli("search", "--tenant", "acme", docs[3]["title"], "-k", "3", "--json")
    assert hits[0]["doc_id"].startswith(docs[3]["_id"])


def test_eval_takes_the_variant(tmp_path):
    from tests.support.data import write_jsonl

    docs = passage_docs(12)
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", docs)
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": d["title"]} for i, d in enumerate(docs[:6])])
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\t{d['_id']}\t1\n" for i, d in enumerate(docs[:6])))
    out = _cli("--model", INT8, "eval", "--dataset", str(folder), "--whole-docs", "--mode", "dense", "--json")
    assert out["embedder_fingerprint"] == OnnxEmbedder(INT8).fingerprint
    assert out["metrics"]["ndcg@10"] > 0.8


def test_new_tenants_get_the_int8_variant_and_live_tenants_keep_theirs(tmp_path, monkeypatch):
    from ragindex.api import Ragindex
    from ragindex.embedders.registry import new_tenant_model
    from tests.support.folders import make_folder

    monkeypatch.delenv("RAGINDEX_NEW_TENANT_MODEL", raising=False)
    monkeypatch.setenv("RAGINDEX_ONNX_QUANT", "vnni")  # as on this project's machines (VNNI), whatever runs the test
    assert new_tenant_model() == INT8
    assert new_tenant_model("cuda") == "default"  # a GPU runs the torch model in fp16
    monkeypatch.setenv("RAGINDEX_ONNX_QUANT", "fp32")
    assert new_tenant_model() == "default"  # no int8 on this CPU: the torch model
    monkeypatch.setenv("RAGINDEX_ONNX_QUANT", "vnni")

    folder = make_folder(tmp_path / "docs", passage_docs(4))
    rx = Ragindex()
    fresh = rx.tenant("fresh")
    fresh.reindex(source=str(folder))
    assert fresh.settings.model == INT8 and rx.embedder_for("fresh").name == INT8  # recorded by its first build
    fresh.add(source=str(folder))  # re-registering without --model keeps it
    assert fresh.settings.model == INT8
    assert fresh.reindex().status == "unchanged"

    Ragindex(model="default").tenant("legacy").reindex(source=str(folder))  # built with the torch model, no setting
    assert Ragindex().tenant("legacy").settings.model is None
    assert Ragindex().embedder_for("legacy").name == "all-MiniLM-L6-v2"  # a live tenant keeps its model
    assert Ragindex().tenant("legacy").plan().texts_to_embed == 0
