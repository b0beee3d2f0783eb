"""No model loaded for nothing (issue 25, point 4).

1. The local model's identity (dimension, max_seq_length, fingerprint) is read from the identity file
   its first load wrote, and equals what the loaded model reports; a wrong file is caught at load.
2. In a fresh process with the real default model, the commands whose plan embeds nothing (a no-op
   reindex, plan of no change, a reindex that only deletes, one whose chunks are all in the cache,
   status, generations, verify, keys list, tenants list) never import torch or sentence-transformers;
   a reindex with a new text does (the check can fail).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ragindex.embedders.local import SentenceTransformerEmbedder
from ragindex.errors import ModelDriftError
from tests.support.data import REPO, passage_docs

# Runs the CLI in a fresh interpreter, then says which heavy modules the command imported.
PROBE = """
import json, sys
from ragindex.cli.root import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers", "onnxruntime") if m in sys.modules)
print("\\nPROBE " + json.dumps({"code": code, "heavy": heavy}))
"""


def test_the_identity_is_known_without_loading_and_matches_the_loaded_model(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGINDEX_MODELS", str(tmp_path / "models"))
    first = SentenceTransformerEmbedder()  # a fresh home: loads the model to learn its identity
    assert first._model is not None
    (ident,) = (tmp_path / "models").glob("identity-*.json")
    again = SentenceTransformerEmbedder()
    assert again._model is None  # read from the file, not loaded
    assert (again.dim, again.max_seq_length, again.fingerprint) == (first.dim, first.max_seq_length, first.fingerprint)
    assert again.embed(["hello world"]).shape == (1, first.dim)  # loads on first use
    assert again._model is not None and again.fingerprint == first.fingerprint

    # an identity file that lies is caught when the model is loaded, before a vector is used
    data = json.loads(ident.read_text())
    ident.write_text(json.dumps({**data, "fingerprint": "0" * 64}))
    liar = SentenceTransformerEmbedder()
    assert liar.fingerprint == "0" * 64 and liar._model is None
    with pytest.raises(ModelDriftError, match="delete that file"):
        liar.embed(["hello"])
    ident.write_text("{not json")  # unreadable: load once and rewrite it
    fixed = SentenceTransformerEmbedder()
    assert fixed._model is not None and json.loads(ident.read_text())["fingerprint"] == first.fingerprint


def _cli(home: Path, *args: str) -> dict:
    env = {**os.environ, "RAGINDEX_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("RAGINDEX_MODEL", None)
    env.pop("RAGINDEX_MODELS", None)  # $RAGINDEX_HOME/models: the first build learns the identity
    out = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("PROBE ")), None)
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    got = json.loads(line[6:])
    assert got["code"] in (0, None), (args, out.stdout[-2000:], out.stderr[-2000:])
    return got


@pytest.mark.slow
def test_commands_that_embed_nothing_never_import_torch(tmp_path):
    home, src = tmp_path / "home", tmp_path / "docs"
    src.mkdir()
    docs = passage_docs(4)
    for d in docs:
        (src / f"{d['_id']}.md").write_text(f"# {d['title']}\n\n{d['text']}\n")
    assert "torch" in _cli(home, "--model", "default", "reindex", "--tenant", "docs", "--source", str(src))["heavy"]  # it embeds

    shutil.rmtree(home / "throughput")  # as on a machine that never measured the model: a no-op plan measures nothing
    nothing = [("reindex", "--tenant", "docs"), ("plan", "--tenant", "docs"), ("status", "--tenant", "docs"),
               ("generations", "--tenant", "docs"), ("verify", "--tenant", "docs"), ("keys", "list", "--tenant", "docs"),
               ("tenants", "list")]
    for args in nothing:
        assert _cli(home, *args)["heavy"] == [], args

    gone = src / f"{docs[0]['_id']}.md"
    kept = gone.read_text()
    gone.unlink()
    assert _cli(home, "reindex", "--tenant", "docs")["heavy"] == []  # deletions only
    gone.write_text(kept)
    assert _cli(home, "reindex", "--tenant", "docs")["heavy"] == []  # back again: every chunk is in the cache

    (src / "new.md").write_text("# New\n\nA sentence nobody embedded before, about lighthouses.\n")
    assert "torch" in _cli(home, "reindex", "--tenant", "docs")["heavy"]  # a new text: the model is loaded


def test_token_counts_without_the_model_equal_the_models_own(model):
    """Plans count every staged text; they do it with tokenizer.json, which must count as the loaded tokenizer does."""
    texts = [d["text"] for d in passage_docs(200)] + ["", " ", "naïve café — 東京 🚀 x" * 40, "word " * 600, "\t\n\u00a0"]
    hf = model.model.tokenizer(texts, add_special_tokens=True, truncation=False, return_attention_mask=False,
                               return_token_type_ids=False)["input_ids"]
    assert model._fast_tokenizer is not None
    assert model.full_token_counts(texts) == [len(ids) for ids in hf]
    assert max(model.token_counts(texts)) == model.max_seq_length  # the long ones are truncated to the model's input


@pytest.mark.slow
def test_an_int8_tenant_embeds_without_torch_and_its_no_op_loads_nothing(tmp_path, monkeypatch):
    """A new tenant gets the int8 variant (on a VNNI CPU): once exported, embedding needs onnxruntime, not torch."""
    monkeypatch.setenv("RAGINDEX_ONNX_QUANT", "vnni")  # subprocesses inherit it: the same choice on any CPU
    home, src = tmp_path / "home", tmp_path / "docs"
    src.mkdir()
    for d in passage_docs(3):
        (src / f"{d['_id']}.md").write_text(f"# {d['title']}\n\n{d['text']}\n")
    assert "onnxruntime" in _cli(home, "reindex", "--tenant", "fast", "--source", str(src))["heavy"]  # exports, embeds
    assert _cli(home, "reindex", "--tenant", "fast")["heavy"] == []
    assert _cli(home, "plan", "--tenant", "fast")["heavy"] == []
    (src / "new.md").write_text("# New\n\nA sentence nobody embedded before, about lighthouses.\n")
    assert _cli(home, "reindex", "--tenant", "fast")["heavy"] == ["onnxruntime"]  # the export is there: no torch
