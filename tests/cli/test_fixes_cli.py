"""CLI fixes: `chunk` previews every schema (cluster included), `eval --whole-docs` defaults to the default
configuration's mode, and an unpriced model's plan money is unknown (JSON null, "unknown"), never $0."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ragindex.cli import main
from tests.support.data import passage_docs, write_jsonl

# -- 1. `ragindex chunk` works for every listed schema -------------------------------------------------------


@pytest.fixture
def preview_file(tmp_path):
    """A markdown file long enough for every kind to cut it several times, and its text as the preview reads it."""
    from ragindex.ingest.documents import normalise

    docs = passage_docs(6)
    raw = "\n\n".join(f"# {d['title']}\n\n{d['text']}\n\n## Notes\n\n{d['text'][:300]}" for d in docs) + "\n"
    path = tmp_path / "doc.md"
    path.write_text(raw, encoding="utf-8")
    return path, normalise(path.read_text(encoding="utf-8"))


def test_chunk_previews_every_listed_schema_with_exact_offsets(preview_file, model, tmp_path, monkeypatch):
    from ragindex.indexing.chunk import build_with_vectors
    from ragindex.schemas import SchemaRegistry
    from ragindex.schemas.registry import DEFAULT_SCHEMA

    monkeypatch.delenv("RAGINDEX_MODEL", raising=False)  # no --model: the bundled default embeds the pieces

    path, text = preview_file
    reg = SchemaRegistry()
    refs = list(reg.files())
    assert "cluster-200@1" in refs  # the kind that needs embeddings is among them
    listed = json.loads(CliRunner().invoke(main, ["schemas", "list", "--json"]).stdout)
    assert [r["ref"] for r in listed] == refs
    assert [r["ref"] for r in listed if r["default"]] == [DEFAULT_SCHEMA]
    for ref in refs:
        res = CliRunner().invoke(main, ["chunk", "--schema", ref, str(path), "--json"])
        assert res.exit_code == 0, f"{ref}: {res.output}"
        out = json.loads(res.stdout)
        chunks = out["chunks"]
        assert out["schema"] == ref and len(chunks) > 1, ref
        for c in chunks:
            assert text[c["start"] : c["end"]] == c["text"], (ref, c["i"])
        sf = reg.get(ref)
        if sf.needs_embeddings:
            # The pieces were embedded with the bundled default model: the same cut as chunking with it directly.
            assert out["embedder"] == model.name
            direct = build_with_vectors(sf, [text], model.embed).chunk(text)
            assert [(c["start"], c["end"]) for c in chunks] == [(s.start, s.end) for s in direct]
        text_out = CliRunner().invoke(main, ["chunk", "--schema", ref, str(path)])
        assert text_out.exit_code == 0 and f"{len(chunks)} chunks" in text_out.output, (ref, text_out.output)
    assert not (tmp_path / "home" / "tenants").exists()  # a preview writes nothing to any tenant


# -- 2. `eval --whole-docs` without --mode uses the default configuration's mode ----------------------------


@pytest.fixture
def beir_folder(tmp_path):
    docs = passage_docs(12)
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", [{"_id": d["_id"], "title": d["title"], "text": d["text"]} for d in docs])
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": d["title"]} for i, d in enumerate(docs[:6])])
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\t{d['_id']}\t1\n" for i, d in enumerate(docs[:6])), encoding="utf-8")
    return folder


def test_eval_whole_docs_defaults_to_the_default_configurations_mode(beir_folder):
    from ragindex.evaluate.gate import default_configuration
    from ragindex.schemas.registry import DEFAULT_SCHEMA
    from ragindex.search.searcher import DEFAULT_MODE, tenant_mode

    _, default_mode = default_configuration()

    class _OnDefaultSchema:
        chunker, mode = DEFAULT_SCHEMA, None

    assert default_mode == DEFAULT_MODE == tenant_mode(_OnDefaultSchema())
    for cmd in (["eval"], ["eval", "run"]):
        res = CliRunner().invoke(main, ["--model", "hash", *cmd, "--dataset", str(beir_folder), "--whole-docs", "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert out["chunker"] == "whole-docs" and out["mode"] == default_mode, (cmd, out["mode"])
        assert (out["hybrid"] is not None) == default_mode.startswith("hybrid")
    # an explicit --mode still wins, and a chosen --chunker still defaults to dense (its baseline's mode)
    res = CliRunner().invoke(main, ["--model", "hash", "eval", "run", "--dataset", str(beir_folder), "--whole-docs",
                                    "--mode", "bm25", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["mode"] == "bm25"
    res = CliRunner().invoke(main, ["--model", "hash", "eval", "run", "--dataset", str(beir_folder), "--chunker",
                                    "token-200@1", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["mode"] == "dense"


# -- 3. an unpriced hosted model: its plan's money is unknown, never 0.0 -------------------------------------

MODEL = "openai:text-embedding-3-small"


@pytest.fixture
def unpriced_api(monkeypatch, tmp_path):
    """A fake OpenAI-compatible server on localhost: no price table knows a model there (no override file)."""
    from tests.support.fake_openai import Behaviour, FakeOpenAI

    with FakeOpenAI(Behaviour()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-unpriced")
        monkeypatch.setenv("RAGINDEX_API_TIMEOUT_S", "5")
        monkeypatch.setenv("RAGINDEX_PRICE_OVERRIDES", str(tmp_path / "no-overrides.toml"))
        yield server


@pytest.fixture
def corpus(tmp_path):
    return write_jsonl(tmp_path / "c.jsonl", passage_docs(20))


def _cli(*args):
    return CliRunner().invoke(main, ["--model", MODEL, "--dimensions", "64", *args])


@pytest.mark.parametrize("chunker", ["recursive-200@1", "cluster-200@1"])
def test_an_unpriced_plan_says_null_in_json(unpriced_api, corpus, chunker):
    res = _cli("plan", "-t", "acme", "--source", str(corpus), "--chunker", chunker, "--json")
    assert res.exit_code == 0, res.output
    p = json.loads(res.stdout)
    assert p["cost_known"] is False and p["texts_to_embed"] > 0
    assert p["cost_usd"] is None and p["chunker_cost_usd"] is None
    assert p["hosted_usd"] and all(v > 0 for v in p["hosted_usd"].values())  # other providers' prices stay known
    assert not unpriced_api.requests  # planning sent nothing


@pytest.mark.parametrize("chunker", ["recursive-200@1", "cluster-200@1"])
def test_an_unpriced_plan_says_unknown_in_text(unpriced_api, corpus, chunker):
    res = _cli("plan", "-t", "acme", "--source", str(corpus), "--chunker", chunker)
    assert res.exit_code == 0, res.output
    assert "  cost       unknown" in res.output and "$0.000000" not in res.output
    if chunker.startswith("cluster"):  # the pieces a clustering chunker embeds first cost the unknown price too
        chunker_line = next(line for line in res.output.splitlines() if line.startswith("  chunker "))
        assert chunker_line.endswith(", unknown"), chunker_line
    assert not unpriced_api.requests


def test_an_unpriced_reindex_still_refuses_a_money_budget(unpriced_api, corpus):
    # --max-cost against an unknown cost is refused, as before: exit 3, nothing sent, and the plan shown has no $0
    over = _cli("reindex", "-t", "acme", "--source", str(corpus), "--chunker", "recursive-200@1", "--max-cost", "1", "--json")
    assert over.exit_code == 3, over.output
    err = json.loads(over.stdout)
    assert "cannot be checked" in err["error"]["message"] and err["plan"]["cost_usd"] is None
    over_text = _cli("reindex", "-t", "acme", "--source", str(corpus), "--chunker", "recursive-200@1", "--max-cost", "1")
    assert over_text.exit_code == 3 and "cannot be checked" in over_text.output
    assert "  cost       unknown" in over_text.output and "$0.000000" not in over_text.output
    assert not unpriced_api.requests


def test_an_unpriced_reindex_reports_null_money_in_json(store, unpriced_api, corpus):
    from ragindex.store.manifests import live_manifest

    done = _cli("reindex", "-t", "acme", "--source", str(corpus), "--chunker", "recursive-200@1", "--json")
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    assert out["status"] == "promoted" and out["ledger"]["texts"] > 0
    assert out["plan"]["cost_usd"] is None and out["plan"]["cost_known"] is False
    assert out["ledger"]["cost_usd"] is None and out["ledger"]["planned_cost_usd"] is None
    run = live_manifest(store.paths("acme")).run
    assert run["plan"]["cost_usd"] is None and run["ledger"]["cost_usd"] is None


def test_an_unpriced_reindex_says_unknown_in_text(unpriced_api, corpus):
    res = _cli("reindex", "-t", "acme", "--source", str(corpus), "--chunker", "recursive-200@1")
    assert res.exit_code == 0, res.output
    embedded = next(line for line in res.output.splitlines() if line.startswith("  embedded "))
    assert "(unknown)" in embedded and "$" not in embedded, embedded


def test_the_budget_gate_metadata_has_no_money_for_an_unpriced_plan(store, unpriced_api, corpus):
    from ragindex.api import Ragindex
    from ragindex.indexing.checks import budget_gate
    from ragindex.indexing.plan import Budget

    plan = Ragindex(store.root, model=MODEL, dimensions=64).tenant("acme").plan(source=corpus, chunker="recursive-200@1")
    assert not plan.cost_known and plan.report()["cost_usd"] is None
    gate = budget_gate(plan, Budget())
    assert gate.passed and gate.metadata["planned_cost_usd"] is None
    refused = budget_gate(plan, Budget(cost_usd=1.0))
    assert not refused.passed and "cannot be checked" in refused.summary
