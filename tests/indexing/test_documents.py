"""Real documents through the whole pipeline: PDF, DOCX, PPTX and HTML files in a folder source.

Files are generated here from the chunking-set passages, so the truth is known: which
text is on which page, under which heading. Checked: every chunk's page is the page its
text is on and its heading path is the outline above it; hits carry both; a run
converts only the files whose bytes (or converter) changed; a chunker migration
converts nothing; bad files are skipped with their reason while the run goes on.
"""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
from fpdf import FPDF

from ragindex.indexing.run import reindex
from ragindex.ingest import convert
from ragindex.search.searcher import Searcher
from ragindex.store import keys
from ragindex.store.manifests import live_manifest
from tests.support.cli import ragindex
from tests.support import docgen
from tests.support.data import passages
from tests.support.folders import OLD
from tests.support.http import call, serving

SECTIONS = [("Overview", 1), ("Revenue", 2), ("Costs", 2), ("Outlook", 1)]


def _latin(s: str) -> str:
    return s.encode("latin-1", "replace").decode("latin-1")


def write_pdf(path, pages: list[tuple[str, int, str]], mtime=OLD) -> None:
    """One page per (heading, level, body): the heading an outline entry and a bold line, then the body."""
    pdf = FPDF()
    pdf.set_auto_page_break(True, margin=15)
    for title, level, body in pages:
        pdf.add_page()
        pdf.start_section(title, level=level - 1)
        pdf.set_font("Helvetica", "B", 14)
        pdf.cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        pdf.multi_cell(0, 5, _latin(body))
    pdf.output(str(path))
    os.utime(path, (mtime, mtime))


def handbook(ps, start: int = 0) -> list[tuple[str, int, str]]:
    """Four single-page sections of short passage text (short enough for one page each)."""
    return [(t, lv, ps[start + i].text[:1200]) for i, (t, lv) in enumerate(SECTIONS)]


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    ps = passages(40)
    write_pdf(root / "handbook.pdf", handbook(ps, 0))
    write_pdf(root / "report.pdf", handbook(ps, 4))
    html = root / "page.html"
    html.write_text("<html><head><title>T</title><style>.x{color:red}</style><script>var secret = 'tracking';</script></head>"
                    "<body><nav>Home | Products | Login</nav><header>Site banner</header><main><h1>Guide</h1>"
                    f"<h2>Setup</h2><p>{ps[10].text[:600]}</p><h2>Usage</h2><p>{ps[11].text[:600]}</p></main>"
                    "<footer>Copyright footer text</footer></body></html>", encoding="utf-8")
    os.utime(html, (OLD, OLD))
    (root / "notes.md").write_text(f"# Notes\n\n{ps[12].text}\n", encoding="utf-8")
    os.utime(root / "notes.md", (OLD, OLD))
    return root


def _rows(store, tenant):
    paths = store.paths(tenant)
    m = live_manifest(paths)
    return [r for ref in m.segments for r in pq.read_table(paths.segments / ref.id / "rows.parquet").to_pylist()]


def _pdf_truth(pages):
    return {i + 1: " ".join((t + " " + _latin(b)).split()) for i, (t, _, b) in enumerate(pages)}


def test_every_chunk_knows_its_page_and_heading(store, hash_embedder, folder):
    res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.status == "promoted" and not res.skipped
    conv = res.plan.conversions
    assert conv["files_converted"] == 3 and conv["pages_converted"] == 8 and conv["files_failed"] == 0
    truth = _pdf_truth(handbook(passages(40), 0))
    rows = [r for r in _rows(store, "acme") if r["doc_id"] == "handbook.pdf"]
    assert {r["page"] for r in rows} == {1, 2, 3, 4}
    for r in rows:
        assert r["page"] is not None and r["page"] <= r["page_end"]
        text = " ".join(r["text"].split())
        # the chunk's text is on exactly the pages it names: within their text, and on no page range short of it
        span = " ".join(truth[p] for p in range(r["page"], r["page_end"] + 1))
        assert text in span, (r["page"], r["page_end"], text[:80])
        if r["page"] < r["page_end"]:
            assert text not in " ".join(truth[p] for p in range(r["page"], r["page_end"]))
            assert text not in " ".join(truth[p] for p in range(r["page"] + 1, r["page_end"] + 1))
        expected = {1: ["Overview"], 2: ["Overview", "Revenue"], 3: ["Overview", "Costs"], 4: ["Outlook"]}[r["page"]]
        assert r["heading_path"] == expected, (r["page"], r["heading_path"])
    html_rows = [r for r in _rows(store, "acme") if r["doc_id"] == "page.html"]
    assert html_rows and all(r["page"] is None for r in html_rows)
    assert {tuple(r["heading_path"]) for r in html_rows} <= {("Guide",), ("Guide", "Setup"), ("Guide", "Usage")}
    for r in html_rows:
        for junk in ("<", "tracking", "Login", "banner", "footer", "color:red"):
            assert junk not in r["text"]
    md_rows = [r for r in _rows(store, "acme") if r["doc_id"] == "notes.md"]
    assert md_rows and all(r["page"] is None for r in md_rows)


def test_hits_carry_page_heading_and_filter_on_pages(store, hash_embedder, folder):
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    body = handbook(passages(40), 0)[2][2]  # page 3 of handbook.pdf: "Costs" under "Overview"
    query = " ".join(body.split()[5:17])
    s = Searcher(store, embedder=hash_embedder)
    top = s.search("acme", query, k=3, mode="bm25")[0]
    assert (top.doc_id, top.page, top.page_end, top.heading_path) == ("handbook.pdf", 3, 3, ("Overview", "Costs"))
    assert top.to_dict()["page"] == 3 and top.to_dict()["heading_path"] == ["Overview", "Costs"]
    early = s.search("acme", query, k=20, mode="dense", filter={"and": [{"path": "handbook.pdf"}, {"page": {"<=": 2}}]})
    assert early and all(h.doc_id == "handbook.pdf" and h.page <= 2 for h in early)
    none = s.search("acme", query, k=20, mode="dense", filter={"page": {">": 4}})
    assert none == []  # no document has a fifth page, and chunks without pages never match a page condition


def test_markdown_chunker_cuts_a_pdf_at_its_outline(store, hash_embedder, folder):
    reindex(store, "acme", source=folder, chunker="markdown@1", embedder=hash_embedder)
    rows = [r for r in _rows(store, "acme") if r["doc_id"] == "handbook.pdf"]
    # sections come from the PDF outline: no chunk crosses a heading, so each lies on one page
    assert {(r["page"], r["page_end"]) for r in rows} == {(1, 1), (2, 2), (3, 3), (4, 4)}
    assert {r["page"]: tuple(r["heading_path"]) for r in rows} == {
        1: ("Overview",), 2: ("Overview", "Revenue"), 3: ("Overview", "Costs"), 4: ("Outlook",)}


def test_only_an_edited_file_is_converted_again(store, hash_embedder, folder):
    first = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert first.plan.conversions["files_converted"] == 3
    again = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert again.status == "unchanged" and again.changes["files_read"] == 0
    assert again.plan.conversions["files_converted"] == 0
    # edit one PDF, touch another (same bytes, new mtime)
    ps = passages(40)
    edited = handbook(ps, 0)
    edited[3] = (edited[3][0], edited[3][1], ps[30].text[:1000])
    write_pdf(folder / "handbook.pdf", edited)
    os.utime(folder / "report.pdf", (OLD + 60, OLD + 60))
    third = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    c = third.plan.conversions
    assert (c["files_converted"], c["files_from_conversion_cache"]) == (1, 0)
    assert third.changes["docs_changed"] == 1 and third.changes["docs_restated"] == 1
    assert third.plan.docs_chunked == 1
    # the edited page's chunks are new; the pages before it are unchanged chunks, not embedded again
    rows = [r for r in _rows(store, "acme") if r["doc_id"] == "handbook.pdf"]
    assert any(" ".join(ps[30].text.split()[:4]) in r["text"] for r in rows if r["page"] == 4)
    assert third.plan.texts_to_embed < len(rows)


def test_a_chunker_migration_converts_nothing(store, hash_embedder, folder):
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    moved = reindex(store, "acme", source=folder, chunker="token-200@1", embedder=hash_embedder)
    c = moved.plan.conversions
    assert moved.status == "promoted" and moved.plan.docs_chunked == 4
    assert c["files_converted"] == 0 and c["files_from_conversion_cache"] == 3


def test_a_converter_upgrade_rechunks_only_files_whose_text_changed(store, hash_embedder, folder, monkeypatch):
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    pdf = convert.converter_for(".pdf")
    original = pdf.convert

    def upgraded(data, limits):  # version 2 also reads one file differently
        out = original(data, limits)
        if "Overview" in out.text and passages(40)[4].text.split()[0] in out.text:  # report.pdf
            return convert.Converted(out.text + "\n\nAppendix added by the new converter.", out.layout, out.pages)
        return out

    monkeypatch.setenv("RAGINDEX_CONVERT_WORKERS", "0")  # convert in this process, where the upgrade is patched in
    monkeypatch.setattr(pdf, "convert", upgraded)
    monkeypatch.setattr(pdf, "VERSION", pdf.VERSION + 1)
    convert.fingerprint.cache_clear()
    convert.label.cache_clear()
    try:
        res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    finally:
        convert.fingerprint.cache_clear()
        convert.label.cache_clear()
    c = res.plan.conversions
    assert c["files_reconverted"] == 2 and c["files_converted"] == 2 and c["files_reconverted_changed"] == 1
    assert res.changes["docs_changed"] == 1 and res.changes["docs_restated"] == 1 and res.plan.docs_chunked == 1
    assert 0 < res.plan.texts_to_embed <= 2  # the appendix's chunk (and the one it joined), nothing else
    quiet = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert quiet.status == "unchanged" and quiet.changes["files_read"] == 0  # the new fingerprint is recorded


def test_a_crashing_converter_keeps_the_indexed_version(store, hash_embedder, folder, monkeypatch):
    reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    write_pdf(folder / "report.pdf", handbook(passages(40), 8))
    monkeypatch.setenv("RAGINDEX_FAULT", "convert-crash:report.pdf")
    res = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert res.status == "unchanged"
    assert [(s.where, s.reason.split(";")[0]) for s in res.skipped] == [("report.pdf", "converter crashed (signal 9)")]
    assert res.changes["docs_kept_unreadable"] == 1 and res.changes["docs_deleted"] == 0


def test_a_plain_reindex_shows_file_page_and_heading_in_the_cli_and_over_http(store, folder, monkeypatch):
    monkeypatch.setenv("RAGINDEX_HOME", str(store.root))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    res = ragindex("reindex", "--tenant", "docs", "--source", str(folder), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["plan"]["conversions"]["files_converted"] == 3
    body = handbook(passages(40), 0)[2][2]
    query = " ".join(body.split()[5:17])
    res = ragindex("search", "--tenant", "docs", query, "-k", "1", "--mode", "bm25", "--json")
    (hit,) = json.loads(res.stdout)
    assert (hit["doc_id"], hit["page"], hit["page_end"], hit["heading_path"]) == ("handbook.pdf", 3, 3, ["Overview", "Costs"])
    human = ragindex("search", "--tenant", "docs", query, "-k", "1", "--mode", "bm25").output
    assert "handbook.pdf  p. 3 " in human and "§ Overview > Costs" in human
    key = keys.create(store, "docs", "test")[0]
    with serving(store.root) as (base, _):
        status, out = call(f"{base}/v1/tenants/docs/search", {"query": query, "k": 1, "mode": "bm25"}, key)
    assert status == 200
    (hit,) = out["hits"]
    assert (hit["doc_id"], hit["page"], hit["page_end"], hit["heading_path"]) == ("handbook.pdf", 3, 3, ["Overview", "Costs"])


def test_bad_files_are_skipped_with_their_reason_and_the_run_goes_on(store, hash_embedder, folder, tmp_path):
    bad = {
        "locked.pdf": docgen.encrypted_pdf, "broken.pdf": docgen.corrupt_pdf, "scan.pdf": docgen.scanned_pdf,
        "bomb.docx": docgen.zip_bomb_docx, "broken.docx": docgen.corrupt_docx, "huge.pdf": docgen.big_pdf,
        "klingon.html": docgen.html_unknown_encoding,
    }
    for name, make in bad.items():
        make(folder / name)
    first = reindex(store, "acme", source=folder, chunker="recursive-200@1", embedder=hash_embedder)
    assert first.status == "promoted"
    reasons = {s.where: s.reason for s in first.skipped}
    assert sorted(reasons) == sorted(bad)
    assert reasons["locked.pdf"] == "encrypted: no password"
    assert reasons["broken.pdf"].startswith("corrupt PDF")
    assert reasons["scan.pdf"].startswith("no text layer: scanned pages need OCR, which is not supported")
    assert reasons["bomb.docx"].startswith("zip bomb")
    assert reasons["broken.docx"].startswith("corrupt DOCX")
    assert reasons["huge.pdf"].startswith("too many pages: 2000 > 1000")
    assert reasons["klingon.html"].startswith("unknown encoding 'x-mac-klingon'")
    assert first.plan.conversions["files_failed"] == len(bad) and first.plan.conversions["files_converted"] == 3
    assert {r["doc_id"] for r in _rows(store, "acme")} == {"handbook.pdf", "report.pdf", "page.html", "notes.md"}


def test_chunk_previews_a_converted_file_with_pages_and_headings(folder, tmp_path):
    out = json.loads(ragindex("chunk", "--schema", "markdown@1", str(folder / "handbook.pdf"), "--json").stdout)
    assert {(c["page"], tuple(c["heading_path"])) for c in out["chunks"]} == {
        (1, ("Overview",)), (2, ("Overview", "Revenue")), (3, ("Overview", "Costs")), (4, ("Outlook",))}
    res = ragindex("chunk", str(docgen.encrypted_pdf(tmp_path / "locked.pdf")))
    assert res.exit_code == 1 and "encrypted: no password" in res.output
