"""One owner for every write (TenantWriter), the pin that moves with the promotion, and keys beside the index.

The kill tests run the real CLI in a child process and SIGKILL it at a fault point
(``RAGINDEX_FAULT``, see ``ragindex._faults``) before and after the promotion of a
migration or a rollback; whatever the instant, the tenant's pin (schema, mode) and
its live generation agree, and the next plain reindex changes nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ragindex.api import Ragindex
from ragindex.errors import LockNotHeld, TenantBusy, TenantError
from ragindex.store.generations import gc
from ragindex.store.manifests import current_id, live_manifest, promote
from ragindex.store.tenants import TenantSettings
from ragindex.store.writer import TenantWriter
from tests.support.data import write_jsonl
from tests.support.tenants import register

TOPICS = ["faiss index", "embedding cache", "chunker schema", "tenant lock", "ledger row", "budget check"]


def _docs(n: int) -> list[dict]:
    """Small generated documents, a few sentences each, different enough for every chunker to cut."""
    return [{"_id": f"d{i}", "title": f"note {i}",
             "text": " ".join(f"Sentence {j} of note {i} is about the {TOPICS[(i + j) % len(TOPICS)]} and number {i * j}."
                              for j in range(12))}
            for i in range(n)]


def _cli(home: Path, *args: str, fault: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAGINDEX_HOME": str(home), "RAGINDEX_MODEL": "hash"}
    env.pop("RAGINDEX_FAULT", None)
    if fault:
        env["RAGINDEX_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "ragindex.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _pin_and_live(store, tenant: str) -> tuple[tuple[str, str], tuple[str, str]]:
    s = store.settings(tenant)
    m = live_manifest(store.paths(tenant))
    return (s.chunker, s.mode), (m.chunker, m.search_mode)


@pytest.fixture
def live_tenant(store, tmp_path, hash_embedder):
    """A tenant on recursive-200@1 (dense) with one live generation, made through the CLI."""
    src = write_jsonl(tmp_path / "docs.jsonl", _docs(24))
    register(store, "acme", TenantSettings(source=str(src), chunker="recursive-200@1", mode="dense"))
    done = _cli(store.root, "reindex", "-t", "acme", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["generation"]


# -- the lock is required -------------------------------------------------------------------


def test_writes_without_the_writer_lock_are_refused(store, live_tenant):
    paths = store.paths("acme")
    with pytest.raises(LockNotHeld, match="TenantWriter"):
        promote(paths, live_tenant)
    with pytest.raises(LockNotHeld):
        gc(paths)
    with pytest.raises(LockNotHeld):
        store.save_settings("acme", TenantSettings(source="elsewhere"))
    assert store.settings("acme").source != "elsewhere"
    with TenantWriter(store, "acme") as w:  # the same writes, holding the lock
        promote(paths, live_tenant)
        w.gc()
        w.save_settings(TenantSettings(source="elsewhere", chunker="recursive-200@1", mode="dense"))
    assert store.stored_settings("acme").source == "elsewhere"


def test_a_second_writer_is_refused_while_one_holds_the_tenant(store, live_tenant):
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom ragindex.store.tenants import TenantStore\nfrom ragindex.store.writer import TenantWriter\n"
        f"with TenantWriter(TenantStore({str(store.root)!r}), 'acme'):\n    print('held', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(TenantBusy):
            with TenantWriter(store, "acme"):
                pass
        assert _cli(store.root, "rollback", "-t", "acme").returncode == 4
        assert _cli(store.root, "gc", "-t", "acme").returncode == 4
    finally:
        child.kill()
        child.wait()


def test_key_revocation_does_not_wait_behind_a_writer(store, live_tenant):
    rx = Ragindex(store.root)
    key, rec = rx.tenant("acme").create_key("frontend")
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom ragindex.store.tenants import TenantStore\nfrom ragindex.store.writer import TenantWriter\n"
        f"with TenantWriter(TenantStore({str(store.root)!r}), 'acme'):\n    print('held', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"  # a "reindex" holds the writer lock from now on
        revoked = _cli(store.root, "keys", "revoke", "-t", "acme", rec["id"], "--json", timeout=60)
        assert revoked.returncode == 0, revoked.stderr  # the index lock would have made this exit 4 after 10 s
        assert json.loads(revoked.stdout)["revoked_at"]
        created = _cli(store.root, "keys", "create", "-t", "acme", "--json", timeout=60)
        assert created.returncode == 0, created.stderr
        assert child.poll() is None, "the writer still holds the tenant"
    finally:
        child.kill()
        child.wait()
    from ragindex.store import keys

    assert not keys.check(store, "acme", key)


# -- the pin is the live generation's --------------------------------------------------------


def test_migrate_and_rollback_move_the_pin_with_the_promotion(store, live_tenant):
    migrated = _cli(store.root, "migrate", "-t", "acme", "--to", "recursive-250@1", "--mode", "bm25", "--json")
    assert migrated.returncode == 0, migrated.stderr
    assert _pin_and_live(store, "acme") == (("recursive-250@1", "bm25"),) * 2
    assert json.loads(store.paths("acme").settings_file.read_text())["chunker"] == "recursive-250@1"
    back = _cli(store.root, "rollback", "-t", "acme", "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["to"] == live_tenant
    assert _pin_and_live(store, "acme") == (("recursive-200@1", "dense"),) * 2
    again = _cli(store.root, "reindex", "-t", "acme", "--json")
    assert json.loads(again.stdout)["status"] == "unchanged"


@pytest.mark.parametrize("fault", ["mid-embedding", "segment-written", "generation-built", "promoted", "gc-manifests"])
def test_a_migration_killed_anywhere_leaves_pin_and_live_generation_consistent(store, live_tenant, fault):
    paths = store.paths("acme")
    killed = _cli(store.root, "migrate", "-t", "acme", "--to", "recursive-250@1", "--mode", "bm25", fault=fault)
    assert killed.returncode == -signal.SIGKILL, (fault, killed.returncode, killed.stderr[-2000:])
    pin, live = _pin_and_live(store, "acme")
    assert pin == live, f"killed at {fault}: pinned to {pin} while {live} is live"
    promoted = current_id(paths) != live_tenant
    assert live == (("recursive-250@1", "bm25") if promoted else ("recursive-200@1", "dense"))
    assert promoted == (fault in ("promoted", "gc-manifests")), fault
    nxt = _cli(store.root, "reindex", "-t", "acme", "--json")
    assert nxt.returncode == 0, nxt.stderr
    out = json.loads(nxt.stdout)
    assert out["status"] == "unchanged", f"killed at {fault}: the next reindex rebuilt {out['changes']}"
    assert _pin_and_live(store, "acme") == (live, live)
    # An unchanged run writes nothing, not even tenant.json; the next writer brings its copy of the pin in line.
    assert _cli(store.root, "gc", "-t", "acme").returncode == 0
    stored = json.loads(paths.settings_file.read_text())
    assert (stored["chunker"], stored["mode"]) == live


@pytest.mark.parametrize("fault", [None, "promoted"])
def test_a_rollback_killed_after_its_promotion_leaves_pin_and_live_generation_consistent(store, live_tenant, fault):
    assert _cli(store.root, "migrate", "-t", "acme", "--to", "recursive-250@1", "--mode", "bm25").returncode == 0
    back = _cli(store.root, "rollback", "-t", "acme", fault=fault)
    assert back.returncode == (-signal.SIGKILL if fault else 0), back.stderr
    assert current_id(store.paths("acme")) == live_tenant
    assert _pin_and_live(store, "acme") == (("recursive-200@1", "dense"),) * 2
    nxt = _cli(store.root, "reindex", "-t", "acme", "--json")
    assert json.loads(nxt.stdout)["status"] == "unchanged"


def test_changing_a_live_tenants_schema_is_a_migration_not_a_setting(store, live_tenant, tmp_path):
    t = Ragindex(store.root).tenant("acme")
    with pytest.raises(TenantError, match="ragindex migrate --tenant acme --to recursive-250@1"):
        t.add(source=tmp_path / "docs.jsonl", chunker="recursive-250@1")
    assert t.settings.chunker == "recursive-200@1"
    s = t.add(source=tmp_path / "docs.jsonl", eval_set=None)  # no schema given: the pin stays
    assert (s.chunker, s.mode) == ("recursive-200@1", "dense")


def test_a_first_reindex_with_a_source_remembers_it(store, tmp_path):
    src = write_jsonl(tmp_path / "new.jsonl", _docs(6))
    first = _cli(store.root, "reindex", "-t", "fresh", "--source", str(src), "--json")
    assert first.returncode == 0, first.stderr
    assert store.stored_settings("fresh").source == str(src.absolute())
    again = _cli(store.root, "reindex", "-t", "fresh", "--json")  # no --source: the remembered one
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "unchanged"


def test_the_writer_reconciles_a_lagging_tenant_json(store, live_tenant):
    """tenant.json left behind by a crash after a promotion is repaired by the next writer, and never read as the pin."""
    paths = store.paths("acme")
    raw = json.loads(paths.settings_file.read_text())
    paths.settings_file.write_text(json.dumps({**raw, "chunker": "recursive-250@1", "mode": "bm25"}))
    assert (store.settings("acme").chunker, store.settings("acme").mode) == ("recursive-200@1", "dense")
    with TenantWriter(store, "acme") as w:
        assert not w.reconcile()  # entering already did it
    assert json.loads(paths.settings_file.read_text())["chunker"] == "recursive-200@1"
