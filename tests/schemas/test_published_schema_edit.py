"""Issue 13, schemas: a published schema edited in place does not run (plan and reindex refuse it)."""

from __future__ import annotations

from tests.support.cli import ragindex


def test_a_published_schema_edited_in_place_does_not_run(store, tmp_path, monkeypatch, indexed_folder):
    import shutil

    from ragindex.schemas.registry import PACKAGE_DIR

    folder, _ = indexed_folder
    root = tmp_path / "schemas"
    shutil.copytree(PACKAGE_DIR / "chunkers", root / "chunkers")
    shutil.copy(PACKAGE_DIR / "chunkers.lock", root / "chunkers.lock")
    f = root / "chunkers" / "recursive-200.v1.toml"
    f.write_text(f.read_text().replace("size = 200", "size = 180"))
    monkeypatch.setenv("RAGINDEX_SCHEMAS", str(root))
    for cmd in ("plan", "reindex"):
        res = ragindex(cmd, "-t", "acme", "--source", str(folder), "--chunker", "recursive-200@1")
        assert res.exit_code == 1 and "changed after it was published" in res.output and "recursive-200.v2.toml" in res.output
