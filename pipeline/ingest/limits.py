"""How much one input may hold: the size and page limits every source is read under.

``$RAGINDEX_MAX_DOC_MB`` holds every document to one size, whatever its source: a text
file's bytes, a ``.jsonl`` line's or a ``.parquet`` row's text, title and metadata, a
converted file's text (default 32 MiB). ``$RAGINDEX_MAX_FILE_MB`` is the largest PDF,
DOCX, PPTX or HTML file converted (default 256 MiB) and ``$RAGINDEX_MAX_PAGES`` the most
pages or slides (default 1000). An input past a limit is skipped with a reason, never cut.

Each variable is read where it is used and checked there: a value that is not a
positive number (``32MB``, ``nan``, ``0``, an empty string) is a one-line
:class:`~ragindex.errors.SettingsError` naming the variable (exit 1), not a crash part-way
through a run. This module imports nothing from the application but its errors, so the
converters and the readers share it without an import cycle.
"""

from __future__ import annotations

import math
import os

from ragindex.errors import SettingsError

MIB = 1024 * 1024


def setting(name: str, default: float, whole: bool = False) -> float:
    """The number in ``$name`` (``default`` when unset); SettingsError unless it is finite and above 0
    (and, with ``whole``, a whole number)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0) or (whole and not value.is_integer()):
        what = "a whole number above 0" if whole else "a number above 0 (MiB; fractions allowed)"
        raise SettingsError(f"{name} must be {what}, got {raw!r}; fix it or unset it (default {default:g})")
    return value


def max_doc_bytes() -> int:
    """Largest document read (default 32 MiB, ``$RAGINDEX_MAX_DOC_MB``); bigger ones are skipped with a reason.

    A single huge document is almost always an export or a log dump, and chunking it
    would dominate a run's time and memory; it is reported, not silently cut.
    """
    return int(setting("RAGINDEX_MAX_DOC_MB", 32) * MIB)


def max_file_bytes() -> int:
    """Largest PDF, DOCX, PPTX or HTML file converted (default 256 MiB, ``$RAGINDEX_MAX_FILE_MB``).

    Binary formats carry images and fonts, so their bytes are a poor measure of their
    text; the converted text is held to :func:`max_doc_bytes` and pages to :func:`max_pages`.
    """
    return int(setting("RAGINDEX_MAX_FILE_MB", 256) * MIB)


def max_pages() -> int:
    """Most PDF pages or PPTX slides converted (default 1000, ``$RAGINDEX_MAX_PAGES``)."""
    return int(setting("RAGINDEX_MAX_PAGES", 1000, whole=True))


def too_large(size: int, limit: int, variable: str, what: str = "file") -> str:
    """The reason an input over a limit is skipped: its size, the limit, and what to do."""
    return f"too large: {size / MIB:.1f} MiB > {limit / MIB:g} MiB (raise {variable} or split the {what})"
