"""The arguments a caller passes, checked once, the same way for every way in.

One function per kind of argument. The CLI's option types (``ragindex.cli.root``),
the Python API (``Budget``, ``RunOptions``, ``Tenant.add`` and ``Tenant.search``),
the writer (every ``wait``), the HTTP service and the Dagster config all call these,
so ``max_cost=nan``, ``k=0``, an empty or undecodable query or ``wait=nan`` is
refused with the same message whichever way it came, before anything is read or
written. Each raises :class:`ragindex.errors.ArgumentError`, a ValueError: the
CLI reports it as a usage error (exit 2) when click parses the flag, and as one
line with exit 1 otherwise.

Why refuse rather than repair: NaN compares false with everything, so a NaN
budget passes every check (no limit) and a NaN wait never reaches its deadline
(it blocks forever); an infinite wait hangs a script behind a crashed operator's
shell. A caller who wants no limit says ``None``.

This module imports nothing from the application but its errors (the CLI loads it
for ``--help``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

from ragindex.errors import ArgumentError

MAX_HITS = 1000  # the most hits one search returns (the HTTP service allows fewer: ragindex.serve.app.MAX_K)


def number(value, name: str, minimum: float = 0.0) -> float:
    """``value`` as a float if it is a finite real number not below ``minimum`` (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ArgumentError(f"{name}={value!r} is not a number")
    if not math.isfinite(value):
        raise ArgumentError(f"{name}={value!r} is not a finite number (leave it unset for no limit)")
    if value < minimum:
        raise ArgumentError(f"{name}={value!r} is below {minimum:g}")
    return float(value)


def whole(value, name: str, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` if it is a whole number (not a bool, not a float) from ``minimum`` to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ArgumentError(f"{name}={value!r} is not a whole number")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ArgumentError(f"{name}={value!r} is out of range: use a whole number {bound}")
    return int(value)


def seconds(value, name: str = "wait") -> float:
    """A time to wait (for a tenant's writer): a finite number of seconds, 0 or more."""
    return number(value, name)


def hits(value, name: str = "k") -> int:
    """How many hits a search returns: 1 to :data:`MAX_HITS`."""
    return whole(value, name, 1, MAX_HITS)


def query(value, name: str = "query") -> str:
    """A search query: text with at least one non-blank character that can be encoded as UTF-8.

    A command-line argument with bytes that are not UTF-8 reaches Python with lone
    surrogates in it (surrogateescape), as does a JSON ``"\\udcff"``; no model or
    tokenizer can read that, so it is refused here, with where (0-based) the bad
    character is. The HTTP service answers 422 with the same words.
    """
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be text, not {type(value).__name__}")
    if not value.strip():
        raise ArgumentError(f"empty {name}: give words or a question to search for")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ArgumentError(f"{name} is not valid text: a lone surrogate at character {exc.start}") from None
    return value


def queries(values, name: str = "queries") -> list[str]:
    """A list of queries (each checked by :func:`query`); a plain string is refused, not split into characters."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ArgumentError(f"{name} must be a list of strings, not {type(values).__name__}")
    return [query(q, f"query {i + 1}") for i, q in enumerate(values)]


def choice(value, choices: Iterable[str], name: str):
    """``value`` if it is None or one of ``choices`` (e.g. a search mode)."""
    choices = tuple(choices)
    if value is not None and (not isinstance(value, str) or value not in choices):
        raise ArgumentError(f"unknown {name} {value!r}; use one of {', '.join(choices)}")
    return value
