"""The kind registry: every kind builds, unknown kinds fail clearly, implementation ids track changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from ragindex import chunkers
from ragindex.chunkers import IMPL_VERSIONS, KINDS, build_chunker, implementation_id
from ragindex.chunkers.probe import PROBE_TEXT, probe_embed
from ragindex.chunkers.registry import _behaviour_hash
from ragindex.chunkers.tokenizers import TOKENIZER_NAMES
from ragindex.schemas.chunker import _ADAPTER
from ragindex.schemas.registry import PACKAGE_DIR, SchemaRegistry

REPO = Path(__file__).resolve().parents[2]


def _spec(kind: str, tokenizer: str = "cl100k_base", size: int = 64, overlap: int = 0):
    extra = {"piece_size": 16} if kind == "cluster" else {}
    return _ADAPTER.validate_python(dict(kind=kind, tokenizer=tokenizer, size=size, overlap=overlap, **extra))


@pytest.mark.parametrize("tokenizer", TOKENIZER_NAMES)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_builds_from_a_spec(kind, tokenizer):
    spec = _spec(kind, tokenizer)
    chunker = build_chunker(spec, embed=probe_embed)
    assert isinstance(chunker, KINDS[kind])
    spans = chunker.chunk(PROBE_TEXT)
    assert spans, f"{kind} made no chunk of the probe text"
    assert all(0 <= s.start < s.end <= len(PROBE_TEXT) and 0 < s.token_count <= spec.size for s in spans)


def test_every_shipped_schema_names_a_registered_kind():
    files = SchemaRegistry(PACKAGE_DIR).files()
    assert files, "no shipped schemas found"
    for ref, sf in files.items():
        assert sf.spec.kind in KINDS, ref
        assert isinstance(build_chunker(sf.spec, embed=probe_embed), KINDS[sf.spec.kind])


def test_unknown_kind_raises_key_error_naming_it_and_the_known_kinds():
    # Validated specs cannot name an unknown kind (pydantic rejects it), but
    # build_chunker accepts any object with the attributes, so it checks too.
    spec = SimpleNamespace(kind="semantic", tokenizer="cl100k_base", size=64, overlap=0)
    with pytest.raises(KeyError) as exc:
        build_chunker(spec)
    message = exc.value.args[0]
    assert "unknown chunker kind 'semantic'" in message
    for kind in KINDS:
        assert kind in message


def test_unknown_kind_is_rejected_by_the_schema_too():
    with pytest.raises(ValueError):
        _ADAPTER.validate_python(dict(kind="semantic", tokenizer="cl100k_base", size=64))


def test_impl_versions_mirror_the_classes():
    assert IMPL_VERSIONS == {kind: cls.IMPL_VERSION for kind, cls in KINDS.items()}
    assert chunkers.IMPL_VERSIONS is IMPL_VERSIONS


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_implementation_id_is_stable(kind):
    a, b = _spec(kind), _spec(kind)  # equal specs, distinct objects
    first = implementation_id(a)
    _behaviour_hash.cache_clear()  # recomputed from scratch, not read from the cache
    assert implementation_id(b) == first == implementation_id(a)
    version, _, behaviour = first.partition(":")
    assert version == str(KINDS[kind].IMPL_VERSION)
    assert len(behaviour) == 16 and int(behaviour, 16) >= 0


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_implementation_id_changes_with_impl_version(kind, monkeypatch):
    spec = _spec(kind)
    before = implementation_id(spec)
    monkeypatch.setattr(KINDS[kind], "IMPL_VERSION", KINDS[kind].IMPL_VERSION + 1)
    bumped = implementation_id(spec)
    assert bumped != before
    assert bumped.split(":")[1] == before.split(":")[1]  # same behaviour, new version
    # Other kinds are unaffected.
    for other in KINDS:
        if other != kind:
            assert implementation_id(_spec(other)).startswith(f"{KINDS[other].IMPL_VERSION}:")
    monkeypatch.undo()
    assert implementation_id(spec) == before


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_implementation_id_changes_with_behaviour(kind, monkeypatch):
    """An unbumped change to what a kind produces still changes the id (the probe hash)."""
    spec = _spec(kind)
    before = implementation_id(spec)
    original = KINDS[kind].chunk

    def shifted(self, text, *args, **kwargs):
        return [replace(s, start=s.start + 1) if i == 0 else s for i, s in enumerate(original(self, text, *args, **kwargs))]

    monkeypatch.setattr(KINDS[kind], "chunk", shifted)
    monkeypatch.setenv("RAGINDEX_BEHAVIOUR_CACHE", "off")  # a chunker patched in memory: its source did not change
    _behaviour_hash.cache_clear()
    try:
        assert implementation_id(spec) != before
    finally:
        monkeypatch.undo()
        _behaviour_hash.cache_clear()
    assert implementation_id(spec) == before


def test_implementation_id_depends_on_the_spec():
    ids = {implementation_id(_spec("recursive", size=s)) for s in (32, 64, 128)}
    assert len(ids) == 3


def test_shipped_fingerprints_change_when_impl_version_changes(monkeypatch):
    files = SchemaRegistry(PACKAGE_DIR).files()
    before = {ref: sf.fingerprint() for ref, sf in files.items()}
    monkeypatch.setattr(KINDS["recursive"], "IMPL_VERSION", KINDS["recursive"].IMPL_VERSION + 1)
    after = {ref: sf.fingerprint() for ref, sf in files.items()}
    for ref, sf in files.items():
        changed = before[ref] != after[ref]
        assert changed == (sf.spec.kind == "recursive"), ref


def test_implementation_ids_are_the_same_in_another_process():
    """Fingerprints are recomputed in CI and in every worker: no per-process state may leak in."""
    files = SchemaRegistry(PACKAGE_DIR).files()
    here = {ref: implementation_id(sf.spec) for ref, sf in files.items()}
    code = (
        "import json\n"
        "from ragindex.chunkers import implementation_id\n"
        "from ragindex.schemas.registry import PACKAGE_DIR, SchemaRegistry\n"
        "print(json.dumps({r: implementation_id(sf.spec) for r, sf in SchemaRegistry(PACKAGE_DIR).files().items()}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == here


def test_the_behaviour_hash_is_remembered_on_disk_and_forgotten_when_the_code_changes(tmp_path, monkeypatch):
    """A command that chunks nothing does not run the probe (nor load its tokenizer): the hash is on disk, keyed
    by the chunkers' source, the tokenizer packages and the spec."""
    from ragindex.chunkers import registry

    monkeypatch.setenv("RAGINDEX_MODELS", str(tmp_path / "models"))
    spec = _spec("recursive")
    _behaviour_hash.cache_clear()
    first = implementation_id(spec)
    assert len(list((tmp_path / "models" / "behaviour").glob("*.txt"))) == 1

    def refuse(spec):
        raise AssertionError("the probe ran although the hash was on disk")

    monkeypatch.setattr(registry, "_probe_hash", refuse)
    _behaviour_hash.cache_clear()
    assert implementation_id(spec) == first  # read back, not computed
    monkeypatch.setattr(registry, "_probe_hash", lambda spec: "f" * 16)
    monkeypatch.setattr(registry, "_code_version", lambda: "an edited chunker")
    _behaviour_hash.cache_clear()
    assert implementation_id(spec).endswith(":" + "f" * 16)  # new code: computed again
    monkeypatch.setenv("RAGINDEX_BEHAVIOUR_CACHE", "off")
    monkeypatch.setattr(registry, "_probe_hash", lambda spec: "e" * 16)
    _behaviour_hash.cache_clear()
    assert implementation_id(spec).endswith(":" + "e" * 16)  # off: always computed
    _behaviour_hash.cache_clear()
