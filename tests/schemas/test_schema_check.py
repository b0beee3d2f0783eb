"""Published schemas are immutable: check fails on an edit, passes after a bump + lock."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from ragindex.cli import main
from ragindex.schemas import SchemaError, SchemaRegistry
from ragindex.schemas.registry import PACKAGE_DIR


@pytest.fixture
def schemas_root(tmp_path, monkeypatch):
    root = tmp_path / "schemas"
    shutil.copytree(PACKAGE_DIR / "chunkers", root / "chunkers")
    shutil.copy(PACKAGE_DIR / "chunkers.lock", root / "chunkers.lock")
    monkeypatch.setenv("RAGINDEX_SCHEMAS", str(root))
    return root


def test_shipped_schemas_are_published_and_unchanged():
    assert SchemaRegistry().check() == []


def test_edit_fails_then_bump_and_lock_passes(schemas_root):
    runner = CliRunner()
    f = schemas_root / "chunkers" / "recursive-250.v1.toml"
    f.write_text(f.read_text().replace("size = 250", "size = 240"))
    res = runner.invoke(main, ["schemas", "check"])
    assert res.exit_code == 5 and "recursive-250@1" in res.output and "bump the version" in res.output
    res = runner.invoke(main, ["schemas", "lock"])
    assert res.exit_code == 1 and "refusing" in res.output  # never overwrites a published fingerprint
    # the fix: restore v1, put the change in v2, lock
    (schemas_root / "chunkers" / "recursive-250.v2.toml").write_text(f.read_text())
    f.write_text(f.read_text().replace("size = 240", "size = 250"))
    assert runner.invoke(main, ["schemas", "check"]).exit_code == 5  # v2 not yet published
    res = runner.invoke(main, ["schemas", "lock"])
    assert res.exit_code == 0 and "recursive-250@2" in res.output
    res = runner.invoke(main, ["schemas", "check"])
    assert res.exit_code == 0, res.output


def test_comment_and_key_order_do_not_change_fingerprint(schemas_root):
    f = schemas_root / "chunkers" / "token-200.v1.toml"
    lines = f.read_text().splitlines()
    f.write_text("# a comment\n" + "\n".join(reversed(lines)) + "\n")
    assert SchemaRegistry().check() == []


def test_implementation_change_is_detected(schemas_root, monkeypatch):
    from ragindex.chunkers import registry, token

    monkeypatch.setattr(token.TokenChunker, "IMPL_VERSION", 2)
    registry._behaviour_hash.cache_clear()
    problems = SchemaRegistry().check()
    assert {p.ref for p in problems} == {"token-200@1", "token-250-125@1"}


@pytest.mark.parametrize(
    "body, field",
    [
        ('kind = "token"\ntokenizer = "cl100k_base"\nsize = 100\noverlap = 0\ncolour = "red"\n', "colour"),
        ('kind = "token"\ntokenizer = "cl100k_base"\nsize = "big"\n', "size"),
        ('kind = "token"\ntokenizer = "cl100k_base"\nsize = 100\noverlap = 100\n', "overlap"),
        ('kind = "nope"\ntokenizer = "cl100k_base"\nsize = 100\n', "kind"),
        ('kind = "token"\ntokenizer = "gpt2"\nsize = 100\n', "tokenizer"),
    ],
)
def test_bad_schema_names_the_field(schemas_root, body, field):
    f = schemas_root / "chunkers" / "bad.v1.toml"
    f.write_text(body)
    from ragindex.schemas.chunker import SchemaFile

    with pytest.raises(SchemaError, match=field):
        SchemaFile.load(f)
