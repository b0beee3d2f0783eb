"""Documents: converting PDF, DOCX, PPTX and HTML files, next to MarkItDown and Unstructured.

One command, one machine, one run. Four parts, all on files generated here with a known truth:

1 corpus      a mixed folder made from the chroma passages (tests/support/data.py) with the
              fixture makers of tests/support/docgen.py, each file its own sections: PDFs of
              3-8 pages with an outline (fpdf2), DOCX with headings, a table and a content
              control (python-docx), PPTX with titles, notes, text boxes, tables and groups
              (python-pptx), HTML pages with header/nav/aside/footer/script/style noise around
              and inside the content. Every file's truth is the text it was made from.

2 speed and   every file converted by ragindex (the converters of pipeline/ingest/convert, in
  fidelity    its worker pool), MarkItDown and Unstructured (benchmarks/convert_peers.py, run in
              their own venv ($RAGINDEX_PEERS_CONVERT_VENV, default .venv-convert-peers), one process per tool, per-file time with
              interpreter start and each format's first-use warm-up excluded; missing venv:
              the peers are reported "not installed"). Speed is single-core: the sum of the
              per-file conversion seconds (ragindex: the worker-side seconds of a one-worker
              pool, after the same one-file-per-format warm-up) over the pages (PDF pages, PPTX
              slides), the files and the input MB. ragindex's pool wall-clock with its default
              workers (one per core) is reported beside it. The same rates from per-file CPU
              seconds (ragindex: converted once more in this process, as a worker does; peers:
              their process's CPU time) are in the JSON (*_per_cpu_s): steadier than wall time
              when other processes share the cores (the load average is recorded).
              Fidelity: one normalisation for every tool and the truth alike (NFC; HTML comments,
              Markdown table rules, heading markers, link and emphasis markup, table pipes and
              escaping backslashes removed; whitespace collapsed), then the Indel similarity of
              the two strings (rapidfuzz: 2*LCS/(|a|+|b|), what difflib's ratio approximates;
              rapidfuzz is not a ragindex dependency: `pip install rapidfuzz`; without it,
              difflib's ratio on every 10th file, as difflib takes seconds per document). A failed or empty
              conversion scores 0 and counts as a failure. For HTML, also the pages where any of
              the page furniture's text (docgen.HIDDEN) came out.

3 incremental the corpus folder indexed with the hash embedder (default schema): a full run; the
              same run again over the unchanged folder (nothing may be read); then a converter
              upgrade: VERSION of every converter bumped in this process, conversions in process
              (RAGINDEX_CONVERT_WORKERS=0), and the PDF converter patched to append a sentence to a
              known 5% of the PDFs: every converted file is read again, only those 5% are
              re-chunked and only their changed chunks embedded. File mtimes are set an hour back
              before the first run (a file modified just before a scan, within the racy-stat
              window, is read again by the next run, by design).

4 retrieval   the same passages (the first 500 chroma passages) as Markdown files ("# title" and
              the paragraphs) and rendered to PDFs (one per passage, the title as an outlined
              heading, the text over 1-2 pages, a long paragraph split across the page break),
              each indexed with the default configuration and the real local model
              (all-MiniLM-L6-v2), searched in the default mode with chroma_beir's questions
              restricted to those passages; nDCG@10 and recall@10 (ragindex.evaluate.metrics),
              PDF hits mapped back to passages by file name. Both use the same latin-1 text (a core
              PDF font's character set), so only the conversion differs. Target: |delta nDCG@10| <= 0.01.

Usage:
    python benchmarks/convert.py            # ~6 min on 2 cores (11 min with other jobs on them); writes
                                            # results/convert.json and convert.png
    python benchmarks/convert.py --quick    # a smoke run, a few files each (benchmarks/.work/convert.quick.json)
    python benchmarks/convert.py --plot     # redraw results/convert.png from the JSON
Prints a Markdown table for the README's "Documents" section.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragindex.evaluate.metrics import doc_scores, paired_bootstrap_ci
from tests.support import docgen
from tests.support.data import chroma_beir, passage_docs, passages

RESULTS = REPO / "benchmarks" / "results"
PEERS_VENV = Path(os.environ.get("RAGINDEX_PEERS_CONVERT_VENV", REPO / ".venv-convert-peers"))
PEERS_SCRIPT = REPO / "benchmarks" / "convert_peers.py"
FORMATS = (".pdf", ".docx", ".pptx", ".html")
TOOLS = ("ragindex", "markitdown", "unstructured")
FULL = {"pdf": 220, "docx": 60, "pptx": 60, "html": 60, "passages": 500, "bumped_share": 0.05}
QUICK = {"pdf": 8, "docx": 4, "pptx": 4, "html": 4, "passages": 40, "bumped_share": 0.25}
BUMP_SENTENCE = "This sentence was added by the new version of the PDF converter to the file {sha}."
MB = 1e6


def _v(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


# ----------------------------------------------------------------------------- corpus


def _pool(latin1: bool, chars: int) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of every passage: titles cut to 90 characters, paragraphs to ``chars``."""
    out = []
    for p in passages():
        paras = [docgen._cut(docgen.clean(x, latin1), chars) for x in p.text.split("\n\n")]
        paras = [x for x in paras if len(x) > 60]
        title = docgen._cut(docgen.clean(p.title, latin1), 90)
        if paras and title:
            out.append((title, paras))
    return out


class Sections:
    """Sections drawn in turn from a shuffled passage pool, nested as a heading outline allows."""

    def __init__(self, rng: random.Random, latin1: bool, chars: int = 600) -> None:
        self.rng, self.items, self.k, self.level = rng, _pool(latin1, chars), 0, 0
        rng.shuffle(self.items)

    def next(self, max_paras: int = 2, first: bool = False) -> docgen.Section:
        title, paras = self.items[self.k % len(self.items)]
        self.k += 1
        self.level = 1 if first or self.level == 0 else self.rng.randint(1, min(3, self.level + 1))
        return docgen.Section(self.level, title, tuple(paras[: self.rng.randint(1, max_paras)]))

    def paragraph(self) -> str:
        _, paras = self.items[self.k % len(self.items)]
        self.k += 1
        return paras[-1]


def make_pdf(path: Path, rng: random.Random) -> docgen.Truth:
    """3-8 pages of 1-2 sections each (a page may open with a paragraph continuing the section before);
    a paragraph too many for its page is dropped (make_pdf refuses overflowing pages)."""
    src = Sections(rng, latin1=True)
    pages: list[list] = []
    for number in range(rng.randint(3, 8)):
        items: list = []
        if number and rng.random() < 0.25:
            items.append(src.paragraph())
        items += [src.next(first=not pages and not items) for _ in range(rng.randint(1, 2))]
        pages.append(items)
    while True:
        try:
            return docgen.make_pdf(path, pages, outline=True, early_bookmarks=rng.random() < 0.2)
        except ValueError as exc:
            m = re.match(r"page (\d+) overflows", str(exc))
            if not m:
                raise
            items = pages[int(m.group(1)) - 1]
            last = items[-1]
            if isinstance(last, docgen.Section) and len(last.paragraphs) > 1:
                items[-1] = replace(last, paragraphs=last.paragraphs[:-1])
            elif len(items) > 1:
                items.pop()
            else:
                raise


def make_docx(path: Path, rng: random.Random, n: int) -> docgen.Truth:
    src = Sections(rng, latin1=False)
    sections = [src.next(first=k == 0) for k in range(rng.randint(4, 9))]
    return docgen.make_docx(path, sections, title=f"Collected passages, volume {n}")


def make_pptx(path: Path, rng: random.Random) -> docgen.Truth:
    src = Sections(rng, latin1=False, chars=300)
    table = tuple(tuple(row) for row in docgen.sample_table()[:3])
    slides = []
    for k in range(rng.randint(4, 10)):
        s = src.next(max_paras=3)
        extra = rng.random()  # a table or a group, never both: docgen's truth puts the group first, but the table
        slides.append(docgen.Slide(  # is placed above it, so every converter rightly reads the table first
            s.title if k == 0 or rng.random() > 0.1 else None, s.paragraphs,
            notes=f"Speaker notes: {src.items[(src.k + 7) % len(src.items)][0]}" if rng.random() < 0.5 else "",
            box=src.paragraph()[:200] if rng.random() < 0.2 else "",
            table=table if extra < 0.15 else (),
            group=("Left label of the figure", "Right label of the figure") if 0.15 <= extra < 0.3 else ()))
    return docgen.make_pptx(path, slides)


def make_html(path: Path, rng: random.Random) -> docgen.Truth:
    src = Sections(rng, latin1=False)
    sections = [src.next(first=k == 0) for k in range(rng.randint(3, 9))]
    return docgen.make_html(path, sections, with_nav=True, wrap=rng.choice(("main", "article", "body")))


def build_corpus(root: Path, sizes: dict) -> list[dict]:
    """The mixed folder; one record per file: path, format, bytes, pages (PDF pages, PPTX slides) and truth."""
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for fmt, maker in ((".pdf", make_pdf), (".docx", make_docx), (".pptx", make_pptx), (".html", make_html)):
        folder = root / fmt[1:]
        folder.mkdir(exist_ok=True)
        for i in range(sizes[fmt[1:]]):
            rng = random.Random(f"{fmt}-{i}")
            path = folder / f"{fmt[1:]}-{i:04d}{fmt}"
            truth = maker(path, rng, i) if maker is make_docx else maker(path, rng)
            files.append({"path": path, "format": fmt, "bytes": path.stat().st_size,
                          "pages": len(truth.pages) if fmt in (".pdf", ".pptx") else 0,
                          "truth": truth.text, "hidden": list(truth.hidden)})
    old = time.time() - 3600  # an hour back: no file is "racy" (written in the second of a scan)
    for f in files:
        os.utime(f["path"], (old, old))
    return files


# ----------------------------------------------------------------------------- fidelity

_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_RULE = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+(?:[ \t]*:?-{3,}:?[ \t]*)?[ \t]*$", re.MULTILINE)
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+", re.MULTILINE)
_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")
_MARKUP = re.compile(r"\*\*|__|`")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>])")
NORMALISATION = ("NFC; <!-- comments --> removed; Markdown table rule rows removed; leading '#' heading markers removed; "
                 "[text](url) -> text; '**', '__', '`' removed; backslash escapes unescaped; '|' -> space; "
                 "whitespace runs -> one space. The same function for every tool's output and for the truth.")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = _COMMENT.sub(" ", text)
    text = _RULE.sub(" ", text)
    text = _HEADING.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _MARKUP.sub("", text)
    text = _ESCAPE.sub(r"\1", text)
    text = text.replace("|", " ")
    return " ".join(text.split())


def _similarity():
    """(name, fn(a, b) -> 0..1, sample every n-th file)."""
    try:
        from rapidfuzz.distance import Indel

        return f"rapidfuzz {_v('rapidfuzz')} Indel.normalized_similarity", Indel.normalized_similarity, 1
    except ImportError:
        import difflib

        return ("difflib.SequenceMatcher(autojunk=False).ratio, every 10th file (rapidfuzz not installed)",
                lambda a, b: difflib.SequenceMatcher(None, a, b, autojunk=False).ratio(), 10)


_ODD = re.compile("[\ufffe\uffff\ufffd\x00-\x08\x0e-\x1f]")  # noncharacters, U+FFFD, C0 controls (not \f: a page break)


def score_file(f: dict, text: str | None, similarity) -> dict:
    out = normalise(text or "")
    fid = similarity(out, normalise(f["truth"])) if out else 0.0
    leaked = [h for h in f["hidden"] if h.lower() in out.lower()]
    return {"fidelity": round(fid, 5), "empty": not out, "leaked": leaked}


# ----------------------------------------------------------------------------- conversions


def convert_ours(files: list[dict], workers: int, warm_up: bool) -> tuple[dict[str, dict], float]:
    """Every file through a ConvertPool of ``workers``; per file: worker seconds, text, error. With
    ``warm_up``, one file per format goes first, uncounted (as the peers do)."""
    from ragindex.ingest.convert.pool import ConvertPool, Job

    warm = {}
    if warm_up:
        for f in files:
            warm.setdefault(f["format"], f)
    jobs = [Job(f"warm-up:{f['path']}", f["format"], f["path"].read_bytes()) for f in warm.values()]
    jobs += [Job(str(f["path"]), f["format"], f["path"].read_bytes()) for f in files]
    out = {}
    t0 = time.perf_counter()
    with ConvertPool(workers=workers) as pool:
        for o in pool.run(iter(jobs), total=len(jobs)):
            if not o.key.startswith("warm-up:"):
                out[o.key] = {"seconds": o.seconds, "text": o.converted.text if o.converted else None, "error": o.error}
    return out, time.perf_counter() - t0


def convert_ours_cpu(files: list[dict]) -> dict[str, float]:
    """CPU seconds per file, converting in this process (what a worker runs: ``convert_one``), after the same
    one-file-per-format warm-up: steadier than wall seconds when other processes share the cores."""
    from ragindex.ingest.convert import ConversionError, Limits
    from ragindex.ingest.convert.pool import convert_one

    limits = Limits.from_env()
    warm: dict[str, dict] = {}
    for f in files:
        warm.setdefault(f["format"], f)
    for f in warm.values():
        with contextlib.suppress(ConversionError):
            convert_one(f["format"], f["path"].read_bytes(), limits)
    out = {}
    for f in files:
        data = f["path"].read_bytes()
        cpu = time.process_time()
        with contextlib.suppress(ConversionError):
            convert_one(f["format"], data, limits)
        out[str(f["path"])] = time.process_time() - cpu
    return out


def convert_peer(tool: str, files: list[dict], work: Path, timeout: float) -> dict:
    """{"status", "version", "results": {path: {seconds, text, error}}} from convert_peers.py in the peers venv."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        return {"status": "not installed", "version": None, "results": {}}
    filelist, out = work / f"{tool}-files.json", work / f"{tool}-out.json"
    filelist.write_text(json.dumps([str(f["path"]) for f in files]))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([str(python), str(PEERS_SCRIPT), tool, str(filelist), str(out)], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "PYTHONNOUSERSITE": "1"}, check=False)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:g} s", "version": None, "results": {}}
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        return {"status": f"failed (exit {proc.returncode}): {proc.stderr[-500:]}", "version": None, "results": {}}
    d = json.loads(out.read_text())
    return {"status": "ok", "version": d["version"], "process_wall_s": round(wall, 2),
            "results": {r["path"]: {"seconds": r["seconds"], "cpu_seconds": r.get("cpu_seconds"), "text": r["text"],
                                    "error": r["error"]} for r in d["results"]}}


def summarise(files: list[dict], results: dict[str, dict], similarity, every: int) -> dict:
    """Per format: files, pages, MB, failures, single-core seconds and rates, fidelity."""
    rows = {}
    for fmt in FORMATS:
        fs = [f for f in files if f["format"] == fmt]
        if not fs:
            continue
        got = [results[str(f["path"])] for f in fs]
        scored = [score_file(f, r["text"], similarity) for k, (f, r) in enumerate(zip(fs, got)) if k % every == 0]
        secs = sum(r["seconds"] for r in got)
        pages, size = sum(f["pages"] for f in fs), sum(f["bytes"] for f in fs)
        fids = [s["fidelity"] for s in scored]
        errors = sorted({r["error"][:160] for r in got if r["error"]})
        row = {"files": len(fs), "pages": pages, "mb": round(size / MB, 3), "seconds": round(secs, 3),
               "failures": sum(1 for r in got if r["error"] or not (r["text"] or "").strip()), "errors": errors[:5],
               "files_per_s": round(len(fs) / secs, 2), "mb_per_s": round(size / MB / secs, 3),
               "pages_per_s": round(pages / secs, 1) if pages else None,
               "ms_per_file_median": round(1000 * statistics.median(r["seconds"] for r in got), 2),
               "fidelity_mean": round(statistics.fmean(fids), 4), "fidelity_median": round(statistics.median(fids), 4),
               "fidelity_min": round(min(fids), 4), "fidelity_scored_files": len(fids),
               "lowest": sorted(((s["fidelity"], fs[k * every]["path"].name) for k, s in enumerate(scored)))[:3]}
        odd = [fs[k].get("path").name for k, r in enumerate(got) if _ODD.search(r["text"] or "")]
        row["files_with_odd_characters"] = len(odd)  # U+FFFE/U+FFFF (noncharacters), U+FFFD, C0 controls but \t\n\f\r
        row["odd_character_examples"] = odd[:5]
        if all(r.get("cpu_seconds") is not None for r in got):
            cpu = sum(r["cpu_seconds"] for r in got)
            row |= {"cpu_seconds": round(cpu, 3), "files_per_cpu_s": round(len(fs) / cpu, 2),
                    "mb_per_cpu_s": round(size / MB / cpu, 3), "pages_per_cpu_s": round(pages / cpu, 1) if pages else None}
        if fmt == ".html":
            row["pages_with_leaked_furniture"] = sum(1 for s in scored if s["leaked"])
            row["leaked_examples"] = sorted({h for s in scored for h in s["leaked"]})[:8]
        rows[fmt[1:]] = row
    return rows


def speed_and_fidelity(files: list[dict], work: Path, peer_timeout: float, peers: bool = True) -> dict:
    from ragindex.ingest.convert import label
    from ragindex.ingest.convert.pool import default_workers

    sim_name, similarity, every = _similarity()
    out: dict = {"fidelity_method": sim_name, "normalisation": NORMALISATION, "tools": {}}
    print("converting: ragindex (one worker, per-file seconds) ...", flush=True)
    ours, one_wall = convert_ours(files, workers=1, warm_up=True)
    for path, cpu in convert_ours_cpu(files).items():
        ours[path]["cpu_seconds"] = cpu
    rows = summarise(files, ours, similarity, every)
    walls = {}
    workers = default_workers()
    for fmt in FORMATS:  # the pool as a run uses it: default workers, spawned for the run, no warm-up
        fs = [f for f in files if f["format"] == fmt]
        _, wall = convert_ours(fs, workers=workers, warm_up=False)
        walls[fmt[1:]] = wall
        rows[fmt[1:]]["pool_wall_s"] = round(wall, 3)
        rows[fmt[1:]]["pool_pages_per_s"] = round(rows[fmt[1:]]["pages"] / wall, 1) if rows[fmt[1:]]["pages"] else None
        rows[fmt[1:]]["pool_mb_per_s"] = round(rows[fmt[1:]]["mb"] / wall, 3)
        rows[fmt[1:]]["pool_files_per_s"] = round(len(fs) / wall, 2)
    _, all_wall = convert_ours(files, workers=workers, warm_up=False)
    out["tools"]["ragindex"] = {"status": "ok", "version": _v("ragindex"),
                                "converters": {fmt[1:]: label(fmt) for fmt in FORMATS},
                                "pool_workers": workers, "pool_wall_s_all_files": round(all_wall, 2),
                                "one_worker_wall_s_all_files": round(one_wall, 2), "formats": rows}
    for tool in TOOLS[1:] if peers else ():
        print(f"converting: {tool} ...", flush=True)
        peer = convert_peer(tool, files, work, peer_timeout)
        entry = {k: v for k, v in peer.items() if k != "results"}
        if peer["status"] == "ok":
            missing = [str(f["path"]) for f in files if str(f["path"]) not in peer["results"]]
            if missing:
                entry["status"] = f"incomplete: {len(missing)} files without a result"
            else:
                entry["formats"] = summarise(files, peer["results"], similarity, every)
        out["tools"][tool] = entry
    return out


# ----------------------------------------------------------------------------- incremental


@contextlib.contextmanager
def converter_upgrade(bumped: set[str]):
    """Every converter's VERSION + 1 (fingerprints and labels recomputed), conversions in this process, and the
    PDF converter appending a sentence to the PDFs whose bytes' sha256 is in ``bumped``; all undone after."""
    from ragindex.ingest.convert import Converted, Layout, Page, converter_for, fingerprint, label
    from ragindex.ingest.convert import pdf as pdf_module

    modules = {converter_for(s) for s in FORMATS}
    original = pdf_module.convert
    env = os.environ.get("RAGINDEX_CONVERT_WORKERS")

    def convert(data: bytes, limits) -> Converted:
        c = original(data, limits)
        sha = hashlib.sha256(data).hexdigest()
        if sha not in bumped:
            return c
        text = c.text + "\n\n" + BUMP_SENTENCE.format(sha=sha[:12])
        pages = c.layout.pages[:-1] + (Page(c.layout.pages[-1].number, c.layout.pages[-1].start, len(text)),)
        return Converted(text, Layout(pages, c.layout.headings), c.pages, c.tables)

    for m in modules:
        m.VERSION += 1
    fingerprint.cache_clear()
    label.cache_clear()
    os.environ["RAGINDEX_CONVERT_WORKERS"] = "0"
    pdf_module.convert = convert
    try:
        yield
    finally:
        pdf_module.convert = original
        for m in modules:
            m.VERSION -= 1
        fingerprint.cache_clear()
        label.cache_clear()
        if env is None:
            os.environ.pop("RAGINDEX_CONVERT_WORKERS", None)
        else:
            os.environ["RAGINDEX_CONVERT_WORKERS"] = env


def incremental(files: list[dict], corpus: Path, work: Path, share: float) -> dict:
    from ragindex.embedders.local import HashEmbedder
    from ragindex.indexing.run import reindex
    from ragindex.store.tenants import TenantStore

    store = TenantStore(work / "store-incremental")
    emb = HashEmbedder(384)

    def run(name: str) -> dict:
        t0 = time.perf_counter()
        res = reindex(store, "docs", source=corpus, embedder=emb)
        wall = time.perf_counter() - t0
        row = {"run": name, "wall_s": round(wall, 2), "status": res.status, "conversions": res.plan.conversions,
               "docs_chunked": res.plan.docs_chunked, "texts_to_embed": res.plan.texts_to_embed,
               "texts_embedded": res.ledger.get("texts", 0),
               "changes": {k: v for k, v in res.changes.items() if isinstance(v, (int, float, str))},
               "skipped": [f"{s.where}: {s.reason}" for s in res.skipped][:10]}
        c = res.plan.conversions
        print(f"  {name:<18} {wall:7.2f} s  read {res.changes.get('files_read')}  converted {c.get('files_converted')}  "
              f"reconverted {c.get('files_reconverted')} (changed {c.get('files_reconverted_changed')})  "
              f"chunked {res.plan.docs_chunked}  to embed {res.plan.texts_to_embed}", flush=True)
        return row

    print("incremental (hash embedder) ...", flush=True)
    full = run("full")
    noop = run("unchanged")
    pdfs = [f for f in files if f["format"] == ".pdf"]
    step = max(1, round(1 / share))
    chosen = pdfs[::step]
    bumped = {hashlib.sha256(f["path"].read_bytes()).hexdigest() for f in chosen}
    with converter_upgrade(bumped):
        bump = run("converter upgrade")
    expected = {"files_reconverted": full["conversions"]["files_converted"], "files_reconverted_changed": len(chosen),
                "docs_chunked": len(chosen)}
    got = {"files_reconverted": bump["conversions"]["files_reconverted"],
           "files_reconverted_changed": bump["conversions"]["files_reconverted_changed"], "docs_chunked": bump["docs_chunked"]}
    checks = {"unchanged_reads_nothing": noop["changes"].get("files_read") == 0
              and noop["conversions"].get("files_converted", 0) == 0,
              "upgrade_reconverts_every_converted_file": got["files_reconverted"] == expected["files_reconverted"],
              "upgrade_rechunks_only_changed": got["files_reconverted_changed"] == expected["files_reconverted_changed"]
              and got["docs_chunked"] == expected["docs_chunked"],
              "upgrade_embeds_few": bump["texts_to_embed"] <= 3 * len(chosen)}
    return {"embedder": emb.name, "files": len(files), "pdfs_changed_by_upgrade": len(chosen),
            "changed_share_of_pdfs": round(len(chosen) / len(pdfs), 4), "runs": [full, noop, bump],
            "expected_upgrade": expected, "got_upgrade": got, "checks": checks}


# ----------------------------------------------------------------------------- retrieval


def _split_sentences(text: str) -> tuple[str, str]:
    mid = len(text) // 2
    cut = text.find(". ", mid)
    cut = cut + 1 if 0 < cut < len(text) - 40 else text.rfind(" ", 0, mid)
    return text[:cut].strip(), text[cut:].strip()


def retrieval_corpus(root: Path, n: int) -> tuple[dict, dict, dict]:
    """{id: (title, paragraphs)} written as ``md/<id>.md`` and ``pdf/<id>.pdf``; the queries and qrels."""
    docs = passage_docs(n)
    queries, qrels = chroma_beir(docs)
    (root / "md").mkdir(parents=True, exist_ok=True)
    (root / "pdf").mkdir(parents=True, exist_ok=True)
    out = {}
    for d in docs:
        title = docgen.clean(d["title"], latin1=True)
        paras = [p for p in (docgen.clean(x, latin1=True) for x in d["text"].split("\n\n")) if p]
        (root / "md" / f"{d['_id']}.md").write_text(f"# {title}\n\n" + "\n\n".join(paras) + "\n", encoding="utf-8")
        total = sum(map(len, paras))
        layouts = [[paras]]
        if total > 900:  # over two pages: the paragraphs split at the middle character, a long one mid-sentence
            acc, k = 0, 0
            while k < len(paras) and acc + len(paras[k]) <= total // 2:
                acc += len(paras[k])
                k += 1
            if 0 < k < len(paras):
                layouts.insert(0, [paras[:k], paras[k:]])
            else:
                a, b = _split_sentences(paras[0]) if k == 0 else (paras[0], "")
                if a and b:
                    layouts.insert(0, [[a], [b, *paras[1:]]])
        for layout in layouts + [[[p] for p in paras]]:
            pages = [[docgen.Section(1, title, tuple(layout[0]))], *[list(rest) for rest in layout[1:]]]
            try:
                docgen.make_pdf(root / "pdf" / f"{d['_id']}.pdf", pages, outline=True)
                break
            except ValueError:
                continue
        else:
            raise RuntimeError(f"passage {d['_id']} does not fit on its pages")
        out[d["_id"]] = (title, paras)
    old = time.time() - 3600
    for f in (root / "md").iterdir():
        os.utime(f, (old, old))
    for f in (root / "pdf").iterdir():
        os.utime(f, (old, old))
    return out, queries, qrels


def retrieval(work: Path, n: int) -> dict:
    import numpy as np

    from ragindex.embedders.registry import EmbedderConfig
    from ragindex.evaluate.metrics import DOC_METRICS
    from ragindex.indexing.plan import Throughput
    from ragindex.indexing.run import reindex
    from ragindex.search.searcher import Searcher
    from ragindex.store.tenants import TenantStore

    print(f"retrieval: {n} passages as Markdown and as PDF, all-MiniLM-L6-v2 ...", flush=True)
    root = work / "retrieval"
    docs, queries, qrels = retrieval_corpus(root, n)
    pdf_pages = 0
    from ragindex.ingest.convert import Limits, converter_for

    for f in (root / "pdf").iterdir():
        pdf_pages += converter_for(".pdf").convert(f.read_bytes(), Limits()).pages
    emb = EmbedderConfig("default").build()
    store = TenantStore(work / "store-retrieval")
    Throughput(store.root).get(emb)  # calibrated outside the timing
    qids = sorted(queries)
    out = {"passages": len(docs), "pdf_pages": pdf_pages, "queries": len(qids), "model": emb.name, "variants": {}}
    per_q = {}
    for variant in ("md", "pdf"):
        t0 = time.perf_counter()
        res = reindex(store, variant, source=root / variant, embedder=emb)
        wall = time.perf_counter() - t0
        searcher = Searcher(store, emb)
        mode = searcher.mode_for(variant, None)
        hits = searcher.search_many(variant, [queries[q] for q in qids], k=100)
        scores = []
        for q, hs in zip(qids, hits):
            ranked = list(dict.fromkeys(Path(h.doc_id).stem for h in hs))
            scores.append(doc_scores(ranked, qrels[q]))
        per_q[variant] = scores
        out["variants"][variant] = {
            "files": len(list((root / variant).iterdir())), "index_wall_s": round(wall, 2),
            "chunks": res.plan.chunks_total, "texts_embedded": res.ledger.get("texts", 0), "schema": res.plan.chunker, "mode": mode,
            "conversions": res.plan.conversions, "skipped": len(res.skipped),
            "metrics": {m: round(statistics.fmean(s[m] for s in scores), 4) for m in DOC_METRICS}}
        print(f"  {variant}: nDCG@10 {out['variants'][variant]['metrics']['ndcg@10']:.4f}  "
              f"recall@10 {out['variants'][variant]['metrics']['recall@10']:.4f}  ({wall:.1f} s to index)", flush=True)
    deltas = np.array([b["ndcg@10"] - a["ndcg@10"] for a, b in zip(per_q["md"], per_q["pdf"])])
    lo, hi = paired_bootstrap_ci(deltas)
    out["pdf_minus_md"] = {m: round(out["variants"]["pdf"]["metrics"][m] - out["variants"]["md"]["metrics"][m], 4)
                           for m in DOC_METRICS}
    out["ndcg10_delta_ci95"] = [round(float(lo), 4), round(float(hi), 4)]
    out["queries_changed_ndcg10"] = int(np.sum(np.abs(deltas) > 1e-9))
    out["target_met"] = abs(out["pdf_minus_md"]["ndcg@10"]) <= 0.01
    return out


# ----------------------------------------------------------------------------- report


def markdown(r: dict) -> str:
    sf = r["speed_fidelity"]
    lines = [("| Format | Converter | Files | Pages | Pages/s, 1 core (wall / CPU) | Files/s (wall / CPU) | MB/s (wall / CPU) "
              "| Fidelity | Failures |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]

    def pair(row: dict, key: str, digits: int) -> str:
        wall, cpu = row.get(key), row.get(key.replace("_per_s", "_per_cpu_s"))
        if wall is None:
            return "–"
        return f"{wall:,.{digits}f}" + (f" / {cpu:,.{digits}f}" if cpu is not None else "")

    for fmt in FORMATS:
        for tool in [t for t in TOOLS if t in sf["tools"]]:
            t = sf["tools"][tool]
            row = t.get("formats", {}).get(fmt[1:])
            name = f"{tool} {t.get('version') or ''}".strip()
            if row is None:
                lines.append(f"| {fmt[1:].upper()} | {name} | | | | | | {t.get('status', 'not run')} | |")
                continue
            lines.append(f"| {fmt[1:].upper()} | {name} | {row['files']} | {row['pages'] or '–'} | {pair(row, 'pages_per_s', 0)} | "
                         f"{pair(row, 'files_per_s', 1)} | {pair(row, 'mb_per_s', 2)} | {row['fidelity_mean']:.3f} | {row['failures']} |")
    load = r["machine"].get("load_average_at_start"), r["machine"].get("load_average_at_end")
    lines += ["", "Wall: the sum of per-file wall seconds, one conversion at a time (ragindex: in its one-worker pool). "
              "CPU: the same from per-file CPU seconds, steadier when other processes share the cores"
              + (f" (load average {load[0][0]:.1f} at the start of this run, {load[1][0]:.1f} at its end)." if all(load) else ".")]
    ours = sf["tools"]["ragindex"]
    lines += [f"ragindex's pool with its default {ours['pool_workers']} workers (process start included): "
              + ", ".join(f"{fmt.upper()} {row['pool_wall_s']:.2f} s "
                          + (f"({row['pool_pages_per_s']:,.0f} pages/s)" if row["pool_pages_per_s"] else f"({row['pool_files_per_s']:,.0f} files/s)")
                          for fmt, row in ours["formats"].items()) + "."]
    html = {t: sf["tools"][t]["formats"]["html"].get("pages_with_leaked_furniture") for t in TOOLS
            if "formats" in sf["tools"].get(t, {})}
    if html:
        lines.append("HTML pages where navigation/script/footer text came out: "
                     + ", ".join(f"{t} {n}/{sf['tools'][t]['formats']['html']['files']}" for t, n in html.items()) + ".")
    inc = r.get("incremental")
    if inc:
        full, noop, bump = inc["runs"]
        lines += ["", "| Run (hash embedder) | Wall | Files read | Converted | Re-converted (text changed) | Docs chunked | Texts to embed |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for row in (full, noop, bump):
            c = row["conversions"]
            lines.append(f"| {row['run']} | {row['wall_s']:.1f} s | {row['changes'].get('files_read')} | {c.get('files_converted', 0)} | "
                         f"{c.get('files_reconverted', 0)} ({c.get('files_reconverted_changed', 0)}) | {row['docs_chunked']} | {row['texts_to_embed']} |")
    ret = r.get("retrieval")
    if ret:
        md, pdf = ret["variants"]["md"]["metrics"], ret["variants"]["pdf"]["metrics"]
        lines += ["", f"| Same {ret['passages']} passages ({ret['queries']} questions, {ret['model']}, default configuration) | nDCG@10 | Recall@10 |",
                  "|---|---:|---:|",
                  f"| Markdown files | {md['ndcg@10']:.4f} | {md['recall@10']:.4f} |",
                  f"| PDFs ({ret['pdf_pages']} pages) | {pdf['ndcg@10']:.4f} | {pdf['recall@10']:.4f} |",
                  (f"| PDF − Markdown | {ret['pdf_minus_md']['ndcg@10']:+.4f} (95% CI {ret['ndcg10_delta_ci95'][0]:+.4f}.."
                   f"{ret['ndcg10_delta_ci95'][1]:+.4f}) | {ret['pdf_minus_md']['recall@10']:+.4f} |")]
    return "\n".join(lines)


def plot(r: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sf = r["speed_fidelity"]["tools"]
    tools = [t for t in TOOLS if "formats" in sf.get(t, {})]
    colors = {"ragindex": "#4c72b0", "markitdown": "#dd8452", "unstructured": "#55a868"}
    cpu = all("pages_per_cpu_s" in sf[t]["formats"]["pdf"] for t in tools)
    per = "_per_cpu_s" if cpu else "_per_s"
    basis = "per CPU-second" if cpu else "one core, per-file wall seconds"
    panels = [(f"pages/s, {basis} (PDF pages, PPTX slides)", ("pdf", "pptx"), "pages" + per, True),
              (f"MB/s of input, {basis}", ("pdf", "docx", "pptx", "html"), "mb" + per, True),
              ("fidelity to the source text (Indel similarity)", ("pdf", "docx", "pptx", "html"), "fidelity_mean", False)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    width = 0.8 / max(1, len(tools))
    for ax, (title, fmts, key, log) in zip(axes, panels):
        x = np.arange(len(fmts))
        for k, tool in enumerate(tools):
            vals = [sf[tool]["formats"][f][key] or 0 for f in fmts]
            bars = ax.bar(x + (k - (len(tools) - 1) / 2) * width, vals, width, label=f"{tool} {sf[tool]['version']}",
                          color=colors[tool])
            for b, v in zip(bars, vals):
                fid = key == "fidelity_mean"
                ax.annotate(f"{v:.3f}" if fid else f"{v:,.0f}" if v >= 10 else f"{v:.2f}",
                            (b.get_x() + b.get_width() / 2, b.get_height() - (0.02 if fid else 0)), ha="center",
                            va="top" if fid else "bottom", fontsize=7, rotation=90 if fid else 0, color="white" if fid else "black")
        ax.set_xticks(x, [f.upper() for f in fmts])
        ax.set_title(title, fontsize=9)
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, 1.08)
    axes[0].legend(fontsize=8)
    ret = r.get("retrieval")
    note = (f"Retrieval, same passages: nDCG@10 Markdown {ret['variants']['md']['metrics']['ndcg@10']:.4f}, "
            f"PDF {ret['variants']['pdf']['metrics']['ndcg@10']:.4f}" if ret else "")
    fig.suptitle(f"Converting documents ({r['corpus']['files']} files, {r['machine']['cpus']} CPUs). {note}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def machine() -> dict:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def versions() -> dict:
    ours = {d: _v(d) for d in ("ragindex", "pypdfium2", "python-docx", "python-pptx", "selectolax", "lxml",
                               "sentence-transformers", "torch", "fpdf2", "rapidfuzz")}
    peers = {}
    python = PEERS_VENV / "bin" / "python"
    if python.exists():
        code = ("import json,importlib.metadata as m\nout={}\nfor d in ('markitdown','unstructured','pdfminer.six',"
                "'pdfplumber','mammoth','python-pptx','python-docx','magika','beautifulsoup4','lxml','pikepdf'):\n"
                "    try: out[d]=m.version(d)\n    except m.PackageNotFoundError: out[d]='not installed'\nprint(json.dumps(out))")
        with contextlib.suppress(Exception):
            p = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, check=True)
            peers = json.loads(p.stdout)
            peers["python"] = subprocess.run([str(python), "-c", "import platform;print(platform.python_version())"],
                                             capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    return {"ragindex_venv": ours, "peers_venv": peers or "not installed", "peers_venv_path": str(PEERS_VENV)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run: a few files of each format, 40 passages")
    ap.add_argument("--plot", action="store_true", help="only redraw the plot from the results JSON")
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out: peers, incremental, retrieval")
    ap.add_argument("--peer-timeout", type=float, default=600, help="seconds per peer tool subprocess (default 600)")
    ap.add_argument("--work", type=Path, help="keep the generated files here (default: a temp dir, removed)")
    ap.add_argument("--out", type=Path, help="results JSON (default results/convert.json; --quick: .work/convert.quick.json)")
    args = ap.parse_args()
    out = args.out or (REPO / "benchmarks" / ".work" / "convert.quick.json" if args.quick else RESULTS / "convert.json")
    if args.plot:
        r = json.loads(out.read_text())
        plot(r, out.with_suffix(".png"))
        print(markdown(r))
        return
    sizes = QUICK if args.quick else FULL
    skip = set(filter(None, args.skip.split(",")))
    t_start = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="ragindex-convert-bench-"))
    if args.work:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        files = build_corpus(work / "corpus", sizes)
        gen_s = time.perf_counter() - t0
        corpus = {"files": len(files), "generate_s": round(gen_s, 1),
                  "by_format": {fmt[1:]: {"files": sum(1 for f in files if f["format"] == fmt),
                                          "pages": sum(f["pages"] for f in files if f["format"] == fmt),
                                          "mb": round(sum(f["bytes"] for f in files if f["format"] == fmt) / MB, 3),
                                          "truth_chars": sum(len(f["truth"]) for f in files if f["format"] == fmt)}
                                for fmt in FORMATS}}
        print(f"corpus: {len(files)} files in {gen_s:.0f} s: " + ", ".join(
            f"{k} {v['files']} ({v['pages']} pages)" if v["pages"] else f"{k} {v['files']}" for k, v in corpus["by_format"].items()), flush=True)
        result = {"command": "python benchmarks/convert.py" + (" --quick" if args.quick else "")
                  + (f" --skip {args.skip}" if args.skip else ""),
                  "quick": args.quick, "machine": machine(), "versions": versions(), "sizes": sizes, "corpus": corpus,
                  "speed_fidelity": speed_and_fidelity(files, work, args.peer_timeout, peers="peers" not in skip)}
        if "incremental" not in skip:
            result["incremental"] = incremental(files, work / "corpus", work, sizes["bumped_share"])
        if "retrieval" not in skip:
            result["retrieval"] = retrieval(work, sizes["passages"])
        result["wall_s"] = round(time.perf_counter() - t_start, 1)
        result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=str) + "\n")
        plot(result, out.with_suffix(".png"))
        print()
        print(markdown(result))
        print(f"\nwall {result['wall_s']:.0f} s; results: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
