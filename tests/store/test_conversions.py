"""The conversion cache: keyed by content, written only under the writer, a damaged entry is a miss."""

from __future__ import annotations

import hashlib

import pytest

from ragindex.ingest.convert.base import Converted, Heading, Layout, Page
from ragindex.store import conversions
from ragindex.store.locking import LockNotHeld
from tests.support.tenants import writing

SHA = hashlib.sha256(b"file bytes").hexdigest()
FP = hashlib.sha256(b"pdf@1").hexdigest()
FP2 = hashlib.sha256(b"pdf@2").hexdigest()
DOC = Converted("# Intro\n\nhello world\n\nsecond page", Layout((Page(1, 0, 20), Page(2, 22, 33)), (Heading(0, 1, "Intro"),)), 2)


def test_round_trip_and_key(store):
    store.create("acme")
    paths = store.paths("acme")
    assert conversions.get(paths, SHA, FP) is None
    with writing(paths):
        assert conversions.put(paths, SHA, FP, DOC) > 0
        assert conversions.put(paths, SHA, FP, DOC) == 0  # content-addressed: written once
    got = conversions.get(paths, SHA, FP)
    assert got.text == DOC.text and got.layout == DOC.layout and got.pages == 2
    assert conversions.get(paths, SHA, FP2) is None  # another converter version: a miss


def test_put_needs_the_writer(store):
    store.create("acme")
    with pytest.raises(LockNotHeld):
        conversions.put(store.paths("acme"), SHA, FP, DOC)


def test_a_damaged_entry_reads_as_a_miss(store):
    store.create("acme")
    paths = store.paths("acme")
    with writing(paths):
        conversions.put(paths, SHA, FP, DOC)
    (f,) = paths.conversions.glob("*/*.json.z")
    blob = bytearray(f.read_bytes())
    blob[-5] ^= 0xFF
    f.write_bytes(bytes(blob))
    assert conversions.get(paths, SHA, FP) is None
    f.write_bytes(bytes(blob[:10]))  # truncated
    assert conversions.get(paths, SHA, FP) is None


def test_gc_keeps_only_what_is_referenced(store):
    store.create("acme")
    paths = store.paths("acme")
    other = hashlib.sha256(b"other").hexdigest()
    with writing(paths):
        conversions.put(paths, SHA, FP, DOC)
        conversions.put(paths, other, FP, DOC)
        removed = conversions.gc(paths, {(SHA, FP)})
    assert len(removed) == 1 and removed[0].startswith(other)
    assert conversions.get(paths, SHA, FP) is not None and conversions.get(paths, other, FP) is None
