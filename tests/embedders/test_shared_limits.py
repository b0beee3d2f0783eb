"""One API limit per provider account, shared by every process using it (issue 24, item 3).

Real processes (``tests/embedders/limits_worker.py``) embed through the hosted embedder against the fake
OpenAI-compatible server over real HTTP; the server records when each request arrived and what it carried.

How the windows are judged: the bucket holds one second of the rate (``burst_s``; a request carries about a
second of it), so in any window of W seconds the account may send W seconds of the limit plus that one second
of burst. ``RAGINDEX_API_TPM`` is per minute; the runs take ~10-20 s, so the windows are 8-10 s, where the
per-process buckets of before (three processes, each at the full rate) would send ~2.7x the allowance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ragindex.embedders.bucket import BucketState
from ragindex.embedders.shared_limits import FileBucket, MemoryBucket, account_id, shared_bucket
from ragindex.embedders.shared_limits_pg import TABLE, PgBucket
from ragindex.errors import SettingsError
from tests.support.data import REPO
from tests.support.hosted import KEY
from tests.support.postgres import local_postgres, require_postgres

TPM = 120_000  # 2,000 tokens/s: a request carries 2,000 tokens (about a second of it)
TEXT_TOKENS = 85  # what one of the worker's texts costs (checked below)


def run_workers(n: int, texts: int, **env_extra) -> list[dict]:
    """``n`` worker processes embedding ``texts`` texts each, all starting at the same wall time."""
    env = {**os.environ, "RAGINDEX_DIMENSIONS": "64", **env_extra}
    start_at = time.time() + 4.0  # after their imports (~2.5 s on a loaded 2-core machine)
    procs = [subprocess.Popen([sys.executable, "-m", "tests.embedders.limits_worker", f"p{i}", str(texts), str(start_at)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        assert p.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def check_windows(api, workers: list[dict], texts: int, window_s: float) -> dict:
    """Every text answered; no window over 1.05x its allowance; the busiest one at least 0.7x the limit."""
    assert [w["texts"] for w in workers] == [texts] * len(workers)
    sent = api.sent_tokens()
    assert sent >= 0.9 * TEXT_TOKENS * texts * len(workers), sent  # the texts are as long as the windows assume
    rate = TPM / 60
    peak = api.peak_tokens(window_s)
    allowance = rate * (window_s + 1.0)  # W seconds of the limit + the bucket's one second of burst
    assert peak <= 1.05 * allowance, (peak, allowance, workers)
    assert peak >= 0.7 * rate * window_s, (peak, rate * window_s, workers)  # the processes together keep it busy
    print(f"peak {peak} tokens in {window_s:g} s = {peak / (rate * window_s):.3f}x the limit, "
          f"{peak / allowance:.3f}x the allowance (limit + 1 s burst); {sent} tokens sent")
    return {"peak": peak, "allowance": allowance, "sent": sent}


def test_parallel_processes_together_stay_under_one_tokens_per_minute_limit(api, tmp_path):
    api.behaviour.latency_s = 0.05
    texts = 120  # 3 x 120 x ~85 tokens = ~31k tokens: ~16 s at 1,900 tokens/s (95% of the limit)
    workers = run_workers(3, texts, RAGINDEX_API_TPM=str(TPM))
    seen = check_windows(api, workers, texts, window_s=10.0)
    assert max(w["ended"] for w in workers) - min(w["started"] for w in workers) >= (seen["sent"] - 2 * TPM / 60) / (TPM / 60)
    state = tmp_path / "home" / "limits" / f"{account_id(api.base_url, KEY)}.json"
    assert {w["bucket"] for w in workers} == {str(state)}  # all three used the one state file of the account
    text = state.read_text()
    assert KEY not in text and set(json.loads(text)) == {"tokens", "requests", "t", "paused_until"}
    assert sum(w["waited_s"] for w in workers) > 10  # they waited for each other, not for the server (no 429s here)
    assert not [r for r in api.requests if r.status != 200]


def test_a_429_seen_by_one_process_pauses_every_process_of_the_account(api):
    pause_s = 2.5
    api.behaviour.latency_s = 0.05
    api.behaviour.throttle_request, api.behaviour.throttle_s = 12, pause_s
    texts = 160  # 40 requests of 4 texts per process, one at a time: a few seconds each without the pause
    workers = run_workers(3, texts, RAGINDEX_API_CONCURRENCY="1", RAGINDEX_API_MAX_INPUTS="4")
    assert [w["texts"] for w in workers] == [texts] * 3
    hit = next(r for r in api.requests if r.status == 429)
    who = hit.inputs[0].split()[0]
    assert next(w for w in workers if w["name"] == who)["retries"] == 1
    others = [r for r in api.requests if r.inputs[0].split()[0] != who]
    assert any(r.t < hit.t for r in others), "the other processes had started before the 429"
    # A request already on its way when the 429 came back may still arrive (one per process, latency 0.05 s);
    # after that, nobody using the account sends until Retry-After has passed.
    quiet = [r for r in others if hit.t + 0.5 <= r.t <= hit.t + pause_s - 0.1]
    assert not quiet, f"{len(quiet)} requests from other processes during the pause"
    assert any(r.t > hit.t + pause_s for r in others), "they resumed after the pause"


def test_the_postgres_bucket_is_shared_by_processes_the_same_way(api, tmp_path, monkeypatch):
    require_postgres()
    api.behaviour.latency_s = 0.05
    texts = 80  # ~20k tokens: ~11 s
    with local_postgres() as pg:
        monkeypatch.setenv("RAGINDEX_LIMITS_URL", pg.url())
        workers = run_workers(3, texts, RAGINDEX_API_TPM=str(TPM))
        check_windows(api, workers, texts, window_s=8.0)
        assert all(w["bucket"].startswith("postgres ") for w in workers)
        bucket = shared_bucket(api.base_url, KEY)
        assert isinstance(bucket, PgBucket)
        rows = bucket.transact(lambda st, now: (st.t, now))
        assert 0 < rows[0] <= rows[1]  # the row the workers wrote, in the database's clock
        conn = bucket._connect()
        with conn, conn.cursor() as cur:
            cur.execute(f"SELECT account FROM {TABLE}")
            assert [r[0] for r in cur.fetchall()] == [account_id(api.base_url, KEY)]
        bucket.close()
    assert not (tmp_path / "home" / "limits").exists()  # nothing went to the file backend


def test_the_backend_is_chosen_from_the_environment(monkeypatch, tmp_path):
    base = "http://127.0.0.1:9/v1"
    monkeypatch.delenv("RAGINDEX_LIMITS_URL", raising=False)
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    b = shared_bucket(base, KEY)
    assert isinstance(b, FileBucket) and b.path == tmp_path / "home" / "limits" / f"{account_id(base, KEY)}.json"
    assert account_id(base, KEY) != account_id(base, KEY + "x") != account_id(base + "2", KEY)
    assert KEY not in account_id(base, KEY) and account_id(base + "/", KEY) == account_id(base, KEY)
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://postgres@/dagster?host=/tmp/nowhere")
    assert isinstance(shared_bucket(base, KEY), PgBucket)  # the Dagster instance's Postgres, when it has one
    monkeypatch.setenv("RAGINDEX_LIMITS_URL", "process")
    assert isinstance(shared_bucket(base, KEY), MemoryBucket)
    monkeypatch.setenv("RAGINDEX_LIMITS_URL", str(tmp_path / "shared"))
    assert shared_bucket(base, KEY).path.parent == tmp_path / "shared"
    monkeypatch.setenv("RAGINDEX_LIMITS_URL", "redis://user:secret@host/0")
    with pytest.raises(SettingsError, match="RAGINDEX_LIMITS_URL") as err:
        shared_bucket(base, KEY)
    assert "secret" not in str(err.value)


def test_a_torn_state_file_starts_a_full_bucket_and_a_pause_is_kept(tmp_path):
    path = tmp_path / "limits" / "a.json"
    bucket = FileBucket(path)
    path.parent.mkdir()
    path.write_text('{"tokens": 12')  # a crash mid-write
    assert bucket.transact(lambda st, now: st) == BucketState()
    bucket.transact(lambda st, now: setattr(st, "paused_until", now + 60))
    assert bucket.transact(lambda st, now: st.paused_until - now) > 59


def test_a_folder_that_cannot_be_written_falls_back_to_a_bucket_of_this_process(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # a file where the limits folder should be: mkdir fails, as on a read-only home
    bucket = FileBucket(blocker / "a.json")
    assert bucket.transact(lambda st, now: st.paused_until) == 0.0
    assert bucket.where == "process" and "not shared with other runs" in caplog.text
