"""Converters: PDF, DOCX, PPTX and HTML files into text with pages and headings.

One module per format (``pdf``, ``docx``, ``pptx``, ``html``), each with the same
module-level contract:

    NAME      the converter's name ("pdf")
    VERSION   its implementation version: bump it when its output may change
    LIBRARY   the distribution it is built on ("pypdfium2"); its installed version
              is part of the fingerprint
    OPTIONS   the options it runs with (a dict, part of the fingerprint)
    SUFFIXES  the file suffixes it reads
    convert(data: bytes, limits: Limits) -> Converted   (raises ConversionError)

:func:`fingerprint` is the converter's identity (DESIGN: ``convert_fp``): a
document converted by another name, version, library version or options is
converted again, and re-chunked only where its text or layout moved. ``pool``
runs conversions in worker processes (a crash or a hang costs one file, never the
run), and ``store.conversions`` caches their output per tenant by (bytes sha256,
converter fingerprint).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from functools import cache
from importlib import metadata
from types import ModuleType

from ragindex.ingest.convert.base import ConversionError, Converted, Heading, Layout, Limits, Page, TextBuilder

__all__ = ["CONVERTERS", "ConversionError", "Converted", "Heading", "Layout", "Limits", "Page", "TextBuilder",
           "converter_for", "fingerprint", "is_converted", "label"]

# suffix -> converter module; imported on first use, so walking a folder loads no converter library.
CONVERTERS: dict[str, str] = {
    ".pdf": "ragindex.ingest.convert.pdf",
    ".docx": "ragindex.ingest.convert.docx",
    ".pptx": "ragindex.ingest.convert.pptx",
    ".html": "ragindex.ingest.convert.html",
    ".htm": "ragindex.ingest.convert.html",
}


def is_converted(suffix: str) -> bool:
    return suffix.lower() in CONVERTERS


def converter_for(suffix: str) -> ModuleType:
    """The converter module for a file suffix (KeyError for a suffix read as plain text)."""
    return importlib.import_module(CONVERTERS[suffix.lower()])


def _library_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@cache
def fingerprint(suffix: str) -> str:
    """sha256 of the converter's name, version, library version and options (DESIGN: convert_fp)."""
    mod = converter_for(suffix)
    payload = {"name": mod.NAME, "version": mod.VERSION, "library": mod.LIBRARY,
               "library_version": _library_version(mod.LIBRARY), "options": mod.OPTIONS}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@cache
def label(suffix: str) -> str:
    """What a plan or a result calls a converter: ``pdf@1 (pypdfium2 5.15.2)``."""
    mod = converter_for(suffix)
    return f"{mod.NAME}@{mod.VERSION} ({mod.LIBRARY} {_library_version(mod.LIBRARY)})"
