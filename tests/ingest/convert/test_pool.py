"""The conversion pool: every file gets an outcome, and a crash or a hang costs that file only."""

from __future__ import annotations

import time

import pytest
from fpdf import FPDF

from ragindex.ingest.convert.pool import ConvertPool, Job


def _pdf(text: str) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def _jobs(n: int) -> list[Job]:
    return [Job(f"doc{i}.pdf", ".pdf", _pdf(f"Document number {i} talks about subject {i * 7}.")) for i in range(n)]


def test_every_file_is_converted_once():
    with ConvertPool(workers=2) as pool:
        outs = {o.key: o for o in pool.run(_jobs(5), total=5)}
    assert sorted(outs) == [f"doc{i}.pdf" for i in range(5)]
    for i in range(5):
        assert outs[f"doc{i}.pdf"].error is None
        assert f"subject {i * 7}" in outs[f"doc{i}.pdf"].converted.text
        assert outs[f"doc{i}.pdf"].converted.pages == 1


def test_a_converter_crash_costs_one_file(monkeypatch):
    monkeypatch.setenv("RAGINDEX_FAULT", "convert-crash:doc1.pdf")
    with ConvertPool(workers=2) as pool:
        outs = {o.key: o for o in pool.run(_jobs(4), total=4)}
    assert outs["doc1.pdf"].converted is None
    assert outs["doc1.pdf"].error.startswith("converter crashed (signal 9)")
    assert outs["doc1.pdf"].transient
    assert all(outs[k].converted is not None for k in ("doc0.pdf", "doc2.pdf", "doc3.pdf"))


def test_a_converter_hang_is_bounded_by_the_timeout(monkeypatch):
    monkeypatch.setenv("RAGINDEX_FAULT", "convert-hang:doc0.pdf")
    t0 = time.monotonic()
    with ConvertPool(workers=1, timeout=3) as pool:  # one worker: the files after the hang wait for its replacement
        outs = {o.key: o for o in pool.run(_jobs(3), total=3)}
    assert time.monotonic() - t0 < 60
    assert outs["doc0.pdf"].error.startswith("converter timed out after 3 s")
    assert outs["doc0.pdf"].transient
    assert outs["doc1.pdf"].converted is not None and outs["doc2.pdf"].converted is not None


def test_a_rejected_file_gets_the_converters_reason():
    jobs = [Job("bad.pdf", ".pdf", b"%PDF-1.4 this is not a pdf"), *_jobs(1)]
    with ConvertPool(workers=2) as pool:
        outs = {o.key: o for o in pool.run(jobs, total=2)}
    assert outs["bad.pdf"].error.startswith("corrupt PDF")
    assert not outs["bad.pdf"].transient
    assert outs["doc0.pdf"].converted is not None


@pytest.mark.parametrize("workers", [1, 3])
def test_jobs_are_pulled_lazily(workers):
    pulled = []

    def gen():
        for job in _jobs(4):
            pulled.append(job.key)
            yield job

    with ConvertPool(workers=workers) as pool:
        it = pool.run(gen(), total=4)
        next(it)
        assert len(pulled) <= workers + 1  # at most one file per worker (plus the next) is in memory
        rest = list(it)
    assert len(rest) == 3
