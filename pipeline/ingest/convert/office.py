"""What the DOCX and PPTX converters share: an Office file is a zip, and a zip can be a bomb.

python-docx and python-pptx read the package's parts into memory as they open
it, so a small file whose members expand to gigabytes would exhaust the worker
before any limit of the converter is reached. :func:`open_package` checks the
zip's central directory first: the sizes it declares cost nothing to read, and
they can be trusted, because zipfile stops a member at its declared size (and
fails its CRC) however much its compressed stream would really produce.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import TypeVar

from ragindex.ingest.convert.base import ConversionError, Limits

T = TypeVar("T")
MIB = 1024 * 1024
SMALL_MEMBER = MIB  # members up to this size may compress as well as they like (XML of repeated markup does)
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a compound file: a password-protected Office file or a legacy .doc/.ppt


def open_package(data: bytes, limits: Limits, kind: str, opener: Callable[[io.BytesIO], T]) -> T:
    """``opener`` (``docx.Document``, ``pptx.Presentation``) applied to ``data`` once the zip is found safe;
    ConversionError ("zip bomb: ...", "corrupt DOCX: ...") otherwise."""
    check_zip(data, limits, kind)
    try:
        return opener(io.BytesIO(data))
    except Exception as exc:  # the libraries raise KeyError, ValueError, lxml and package errors alike for a bad file
        raise ConversionError(f"corrupt {kind}: {detail(exc)}") from exc


def check_zip(data: bytes, limits: Limits, kind: str) -> None:
    """Refuse a file that is not a zip, or whose members expand past ``limits`` in total or one by one."""
    if data.startswith(OLE_MAGIC):
        raise ConversionError(f"corrupt {kind}: an OLE compound file, not a zip (password-protected, or a legacy Office format)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ConversionError(f"corrupt {kind}: not a zip file ({detail(exc)})") from exc
    total = sum(m.file_size for m in members)
    if total > limits.max_unzipped:
        raise ConversionError(f"zip bomb: its {len(members)} members expand to {total / MIB:.0f} MiB "
                              f"(limit {limits.max_unzipped / MIB:.0f} MiB)")
    for m in members:
        ratio = m.file_size / max(m.compress_size, 1)
        if m.file_size > SMALL_MEMBER and ratio > limits.max_ratio:
            raise ConversionError(f"zip bomb: {m.filename} expands to {m.file_size / MIB:.0f} MiB, "
                                  f"{ratio:.0f} times its compressed size (limit {limits.max_ratio})")


def detail(exc: BaseException, width: int = 160) -> str:
    """An exception as one short line for a skip reason."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= width else text[: width - 3] + "..."
