"""Materialization metadata: numbers as numbers (Dagster plots them), plus a short markdown summary."""

from __future__ import annotations

import dagster as dg

from ragindex.indexing.run import Gate


def value(v) -> dg.MetadataValue:
    """A typed MetadataValue: bool, int and float stay numbers; dicts and lists become JSON."""
    if isinstance(v, bool):
        return dg.MetadataValue.bool(v)
    if isinstance(v, int):
        return dg.MetadataValue.int(v)
    if isinstance(v, float):
        return dg.MetadataValue.float(float(f"{v:.6g}"))  # 6 significant digits: readable, still a number
    if isinstance(v, (dict, list)):
        return dg.MetadataValue.json(v)
    return dg.MetadataValue.text(str(v))


def typed(d: dict) -> dict[str, dg.MetadataValue]:
    return {k: value(v) for k, v in d.items() if v is not None}


def check_result(gate: Gate) -> dg.AssetCheckResult:
    """A blocking check's result: the gate's verdict, its one-line summary and its numbers."""
    return dg.AssetCheckResult(check_name=gate.name, passed=gate.passed, description=gate.summary,
                               metadata=typed({"summary": gate.summary, **gate.metadata}))


def markdown(title: str, rows: list[tuple[str, object]]) -> dg.MetadataValue:
    lines = [f"**{title}**", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return dg.MetadataValue.md("\n".join(lines))


def summary_first(metadata: dict) -> dict:
    """The UI lists metadata in order: the markdown summary first, then the numbers."""
    return {"summary": metadata["summary"], **{k: v for k, v in metadata.items() if k != "summary"}}


def plain(metadata) -> dict:
    """Back from MetadataValue objects to plain Python values (the CLI prints them)."""
    return {k: getattr(v, "value", v) for k, v in metadata.items()}
