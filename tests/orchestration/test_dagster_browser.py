"""The UI as a way in: `dagster dev` on localhost, a tenant indexed by the CLI, its asset page in headless Chromium.

The CLI runs no Dagster job: it reports its run to the instance (ragindex.instance),
and the asset page shows that reported materialization with its metadata.

Needs Debian's chromium (`apt-get install -y chromium`; .ci/run installs it). Without
it the test skips with that hint, except under CI=true, where it fails. The
screenshot and the DOM text land in $RAGINDEX_ARTIFACTS (default
tests/orchestration/artifacts/, git-ignored).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ragindex.schemas.registry import DEFAULT_SCHEMA
from tests.support.data import REPO, passage_docs, write_jsonl
from tests.support.devserver import dagster_dev, fresh_dagster_home

pytestmark = pytest.mark.browser
MATERIALIZATION = """query($key: AssetKeyInput!, $p: [String!]) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations(partitions: $p) { runId partition metadataEntries { label
    ... on IntMetadataEntry { intValue } } } } } }"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1600,1400"]


def _chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found:
        return found
    message = "Debian chromium is not installed: run `apt-get update && apt-get install -y chromium`"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI must run the browser test; .ci/run installs it)")
    pytest.skip(message)


def _page_text(chromium: str, url: str, profile: Path, budget_ms: int = 20000) -> str:
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    dom = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))


def test_asset_page_shows_the_materialization_and_its_metadata(tmp_path):
    chromium = _chromium()
    artifacts = Path(os.environ.get("RAGINDEX_ARTIFACTS") or REPO / "tests" / "orchestration" / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DAGSTER_HOME": str(fresh_dagster_home(tmp_path / "dagster_home")),
           "RAGINDEX_HOME": str(tmp_path / "home"), "RAGINDEX_MODEL": "hash",
           "RAGINDEX_SOURCES": str(tmp_path / "sources"), "PYTHONPATH": str(REPO)}
    src = write_jsonl(tmp_path / "acme.jsonl", passage_docs(20))
    bin_dir = Path(sys.executable).parent
    with open(tmp_path / "dagster-dev.log", "w") as log, dagster_dev(env, log, timeout=180) as server:
        base = server.base_url
        # Index the tenant through the CLI: it runs the library's run and reports it to the server's instance.
        ragindex = [str(bin_dir / "ragindex"), "--model", "hash"]
        subprocess.run([*ragindex, "tenants", "add", "acme", "--source", str(src)], env=env, check=True, capture_output=True)
        out = json.loads(subprocess.run([*ragindex, "reindex", "--tenant", "acme", "--json"], env=env, check=True,
                                        capture_output=True, text=True).stdout)
        assert out["dagster_reported"] is True
        tokens = out["plan"]["tokens_to_embed"]
        # What the asset page fetches: the reported (runless) materialization of the acme partition.
        mats = server.graphql(MATERIALIZATION, {"key": {"path": ["embeddings"]}, "p": ["acme"]})["assetOrError"]
        (mat,) = mats["assetMaterializations"]
        assert mat["runId"] == "" and mat["partition"] == "acme"
        assert {e["label"]: e.get("intValue") for e in mat["metadataEntries"]}["tokens_embedded"] == tokens
        # The first-visit newsletter dialog would cover the page; the UI's own mutation marks it seen.
        server.graphql("mutation { setNuxSeen }")

        url = f"{base}/assets/embeddings?view=partitions&partition=acme"
        text = ""
        for attempt in range(3):  # the UI fetches over GraphQL after load; give a slow machine more virtual time
            text = _page_text(chromium, url, tmp_path / f"profile-{attempt}", budget_ms=20000 * (attempt + 1))
            if "tokens_embedded" in text:
                break
        (artifacts / "dagster-embeddings-acme.txt").write_text(text, encoding="utf-8")
        assert "Latest materialization" in text
        assert re.search(rf"tokens_embedded {tokens}\b", text), text[:2000]
        assert re.search(r"trigger cli\b", text), text[:2000]  # the CLI's run, reported to the instance
        assert DEFAULT_SCHEMA in text

        shot = artifacts / "dagster-embeddings-acme.png"
        shot.unlink(missing_ok=True)
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}", "--virtual-time-budget=20000",
                        f"--screenshot={shot}", url], capture_output=True, timeout=120)
        assert shot.exists() and shot.stat().st_size > 10_000
        (artifacts / "dagster-startup.json").write_text(json.dumps({"dagster_dev_ready_s": round(server.startup_s, 2)}))
