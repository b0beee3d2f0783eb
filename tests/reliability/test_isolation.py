"""Property: for random pairs of tenants with overlapping content, no output of one tenant
(search, status, plan, eval, verify) ever contains the other's ids, paths or texts."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragindex.cli import main
from tests.support.data import passage_docs, write_jsonl

POOL = passage_docs(60)
names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True)


def _eval_set(folder, secret: list[dict]):
    """A BEIR eval set over the tenant's own secret documents: one query per document."""
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", secret)
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": d["text"]} for i, d in enumerate(secret)])
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\t{d['_id']}\t1\n" for i, d in enumerate(secret)))
    return folder


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(a=names, b=names, shared=st.integers(0, 20), own=st.integers(1, 10), seed=st.integers(0, 1000))
def test_no_output_of_one_tenant_mentions_the_other(tmp_path_factory, a, b, shared, own, seed):
    if a == b:
        return
    work = tmp_path_factory.mktemp("iso")
    os.environ["RAGINDEX_HOME"] = str(work / "home")
    common = POOL[:shared]
    secret_a = [{"_id": f"secret-{a}-{i}", "text": f"Only {a} knows marker-{seed}-{a}-{i}."} for i in range(own)]
    secret_b = [{"_id": f"secret-{b}-{i}", "text": f"Only {b} knows marker-{seed}-{b}-{i}."} for i in range(own)]
    src_a = write_jsonl(work / "a.jsonl", common + POOL[20 : 20 + own] + secret_a)
    src_b = write_jsonl(work / "b.jsonl", common + POOL[40 : 40 + own] + secret_b)
    run = CliRunner()
    outputs = {}
    for t, src, secret in ((a, src_a, secret_a), (b, src_b, secret_b)):
        res = run.invoke(main, ["tenants", "add", t, "--source", str(src), "--eval-set", str(_eval_set(work / f"eval-{t}", secret))])
        assert res.exit_code == 0, res.output
        res = run.invoke(main, ["--model", "hash", "reindex", "-t", t, "--source", str(src), "--chunker", "recursive-200@1", "--json"])
        assert res.exit_code == 0, res.output
        outputs[t] = [res.output]
    for t, src in ((a, src_a), (b, src_b)):
        for args in (["search", "-t", t, "knows marker", "-k", "50", "--json"], ["status", "-t", t, "--json"],
                     ["plan", "-t", t, "--source", str(src), "--chunker", "recursive-200@1", "--json"], ["verify", "-t", t, "--json"],
                     ["eval", "tenant", "-t", t, "--json"]):
            res = run.invoke(main, ["--model", "hash", *args])
            assert res.exit_code == 0, res.output
            outputs[t].append(res.output)
    gen = {t: json.loads(outputs[t][0])["generation"] for t in (a, b)}
    for t in (a, b):
        scored = json.loads(outputs[t][-1])
        assert scored["generation"] == gen[t] and 0.0 <= scored["metrics"]["ndcg@10"] <= 1.0
    chunk_ids = {}
    for t in (a, b):
        hits = json.loads(outputs[t][1])
        chunk_ids[t] = {h["chunk_id"] for h in hits}
        assert all(h["generation"] == gen[t] for h in hits)
    for t, other in ((a, b), (b, a)):
        text = "\n".join(outputs[t])
        assert f"secret-{other}-" not in text and f"marker-{seed}-{other}-" not in text
        assert f"/tenants/{other}/" not in text and gen[other] not in text
        assert not (chunk_ids[other] & set(json.dumps(outputs[t]).split('"')))
