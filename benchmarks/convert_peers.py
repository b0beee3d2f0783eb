"""Convert documents with a peer converter (MarkItDown or Unstructured), offline and model-free.

Runs as a subprocess worker inside its own venv (never imports ragindex):

    python benchmarks/convert_peers.py TOOL FILELIST.json OUT.json

TOOL is ``markitdown`` or ``unstructured``; FILELIST.json is a JSON list of absolute paths.
OUT.json gets ``{"tool", "version", "results": [{"path", "seconds", "cpu_seconds", "text", "error"}]}``
in input order. ``seconds`` is the wall time of one file's conversion (interpreter start, imports
and warm-up excluded), ``cpu_seconds`` the CPU time this process spent on it (all its threads:
steadier than wall time on a busy machine); a file that raises gets ``text: null`` and its
error, and the run goes on.
Before timing, the first file of each extension is converted once, uncounted (so lazy imports
and first-use setup of each format's parser are not charged to one file).

The venv (Python 3.11; ~75 s from PyPI with no pip cache, ~1.4 GB, no torch, no CUDA):

    python3.11 -m venv .venv-convert-peers
    .venv-convert-peers/bin/pip install 'markitdown[pdf,docx,pptx]==0.1.9' \
        'unstructured[docx,pptx,md]==0.27.35' 'pdfminer.six>=20251230' 'pypdf>=6.9.1,<7' \
        'pikepdf>=10.3,<11' pi_heif 'pdf2image>=1.17' 'lxml<6.2' opencv-python-headless \
        pandas scipy huggingface_hub onnx matplotlib
    .venv-convert-peers/bin/pip install --no-deps 'unstructured-inference==1.6.14'

(``pip check`` then lists unstructured-inference's missing torch/transformers/timm/accelerate/
opencv-python; that is intended.) ``lxml<6.2``: with lxml 6.2.0, BeautifulSoup's "xml" parser
drops namespace prefixes, and MarkItDown's DOCX pre-processing then fails on every DOCX
("Could not find the body element").

Why so: ``unstructured[pdf]`` pulls unstructured-inference, whose deps are torch (CUDA build),
transformers, timm and accelerate. The ``fast`` PDF strategy uses none of them, but
``unstructured.partition.pdf`` imports a few light unstructured_inference modules at import
time, so that package is installed without its deps plus the light deps those modules import.
pikepdf is required: without it partition_pdf(strategy="fast") silently returns no elements.

Offline switches applied here (set before any import):
- Unstructured 0.27 classifies elements with spaCy's ``en_core_web_sm``, which it downloads from
  GitHub on first use; offline, docx/pptx/html raise and PDFs silently come back empty. The
  worker swaps in ``spacy.blank("en")`` + the rule-based ``sentencizer`` (no model, no download).
  Only element categories (Title/NarrativeText/...) can change; element text does not.
- ``DO_NOT_TRACK`` / ``SCARF_NO_ANALYTICS`` stop Unstructured's telemetry pings (a 0.5 s HTTP
  attempt per partition call otherwise); ``UNSTRUCTURED_DISABLE_NOTICE`` silences its banner.
- ``languages=["eng"]`` skips langdetect; PDFs use ``strategy="fast"`` (pdfminer text layer:
  no layout model, no OCR). Unstructured element texts are joined with blank lines.
- MarkItDown runs stock (``enable_plugins=False``). It always runs magika's bundled ONNX
  file-type model (shipped in the wheel, nothing downloaded); its PDF path is pdfplumber, then
  pdfminer's extract_text when no page looks like a form.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

for _k, _v in {
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "HF_HUB_OFFLINE": "1",
}.items():
    os.environ.setdefault(_k, _v)


def _markitdown() -> tuple[str, Callable[[str], str], Callable[[], None]]:
    from markitdown import MarkItDown, __version__

    md = MarkItDown(enable_plugins=False)
    return __version__, lambda path: md.convert(path).text_content, lambda: None


def _unstructured() -> tuple[str, Callable[[str], str], Callable[[], None]]:
    import spacy
    import unstructured.nlp.tokenize as tok

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    tok._get_nlp = lambda: nlp  # model-free stand-in for en_core_web_sm (see docstring)

    from unstructured.__version__ import __version__
    from unstructured.partition.auto import partition
    from unstructured.partition.docx import partition_docx
    from unstructured.partition.html import partition_html
    from unstructured.partition.pdf import partition_pdf
    from unstructured.partition.pptx import partition_pptx

    by_ext = {
        ".pdf": lambda p: partition_pdf(filename=p, strategy="fast", languages=["eng"]),
        ".docx": lambda p: partition_docx(filename=p, languages=["eng"]),
        ".pptx": lambda p: partition_pptx(filename=p, languages=["eng"]),
        ".html": lambda p: partition_html(filename=p, languages=["eng"]),
        ".htm": lambda p: partition_html(filename=p, languages=["eng"]),
    }

    def auto(path: str) -> list:  # other extensions: unstructured's own type detection
        return partition(filename=path, strategy="fast", languages=["eng"])

    def convert(path: str) -> str:
        elements = by_ext.get(Path(path).suffix.lower(), auto)(path)
        return "\n\n".join(e.text for e in elements if getattr(e, "text", None))

    def clear_caches() -> None:  # so a warmed-up file is not re-timed on cached tokenizations
        for fn in (tok.word_tokenize, tok.pos_tag, tok._tokenize_for_cache, tok._process_cached):
            fn.cache_clear()

    return __version__, convert, clear_caches


TOOLS = {"markitdown": _markitdown, "unstructured": _unstructured}


def run(tool: str, paths: list[str]) -> dict:
    version, convert, clear_caches = TOOLS[tool]()
    first_of_ext: dict[str, str] = {}
    for path in paths:
        first_of_ext.setdefault(Path(path).suffix.lower(), path)
    for path in first_of_ext.values():  # warm-up, not counted; its errors show up below
        with contextlib.suppress(Exception):
            convert(path)
    clear_caches()
    results = []
    for path in paths:
        text = error = None
        start, cpu = time.perf_counter(), time.process_time()
        try:
            text = convert(path)
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            error = f"{type(exc).__name__}: {exc}"[:2000]
        results.append({"path": path, "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                        "text": text, "error": error})
    return {"tool": tool, "version": version, "results": results}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in TOOLS:
        print("usage: python benchmarks/convert_peers.py {markitdown|unstructured} FILELIST.json OUT.json", file=sys.stderr)
        return 2
    tool, filelist, out = argv
    paths = json.loads(Path(filelist).read_text())
    Path(out).write_text(json.dumps(run(tool, paths), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
