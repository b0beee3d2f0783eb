"""Issue 23 (Hardening II), item 21: structural damage is damage (exit 5), never "free space or fix permissions",
and a tenant left without a live generation is never reported ok."""

from __future__ import annotations

import json
import shutil

import pytest

from ragindex.indexing.repair import verify
from ragindex.store.manifests import GenerationError, current_id, list_generations
from tests.support.cli import ragindex
from tests.support.tenants import writing


def _make_current_a_directory(paths):
    paths.current.unlink()
    paths.current.mkdir()


def _make_segments_a_file(paths):
    shutil.rmtree(paths.segments)
    paths.segments.write_text("not a directory\n")


@pytest.mark.parametrize("damage", [_make_current_a_directory, _make_segments_a_file], ids=["CURRENT-dir", "segments-file"])
def test_structural_damage_is_exit_5_with_a_damage_message(store, indexed_folder, damage):
    paths = store.paths("acme")
    damage(paths)
    res = ragindex("verify", "-t", "acme", "--json")
    assert res.exit_code == 5, res.output
    report = json.loads(res.stdout)
    assert report["status"] == "damaged" and report["problems"]
    assert "free space" not in res.output and "bug" not in res.output


def test_current_made_a_directory_is_refused_and_repaired(store, hash_embedder, indexed_folder):
    _, first = indexed_folder
    paths = store.paths("acme")
    _make_current_a_directory(paths)
    with pytest.raises(GenerationError, match="not a file"):
        current_id(paths)
    res = ragindex("verify", "-t", "acme", "--repair")
    assert res.exit_code == 6, res.output
    assert current_id(paths) == first.generation and verify(paths)["status"] == "ok"


def test_segments_made_a_file_is_moved_aside_and_the_tenant_reported_without_a_live_generation(store, indexed_folder):
    folder, _ = indexed_folder
    paths = store.paths("acme")
    _make_segments_a_file(paths)
    res = ragindex("verify", "-t", "acme", "--repair", "--json")
    assert res.exit_code == 5, res.output
    assert paths.segments.is_dir()  # the file was moved aside, a reindex can write segments again
    again = ragindex("reindex", "-t", "acme", "--source", str(folder), "--chunker", "recursive-200@1")
    assert again.exit_code == 0, again.output
    assert verify(paths)["status"] == "ok"


def test_verify_after_every_generation_was_moved_aside_reports_no_live_generation(store, indexed_folder):
    paths = store.paths("acme")
    gen = current_id(paths)
    f = paths.manifest(gen)
    f.write_text(f.read_text().replace('"documents": 30', '"documents": 31'))  # damage the only generation
    with writing(paths):
        fixed = verify(paths, repair=True)
    assert fixed["status"] == "damaged" and current_id(paths) is None and list_generations(paths) == []
    res = ragindex("verify", "-t", "acme", "--json")
    assert res.exit_code == 5, res.output
    report = json.loads(res.stdout)
    assert report["status"] == "damaged" and any("no live generation" in p for p in report["problems"])
