"""Render gate verdicts and evaluation results for people (text, markdown) and machines (JSON)."""

from __future__ import annotations

from dataclasses import asdict

MARK = {True: "PASS", False: "FAIL"}


def _pct(v: float) -> str:
    return f"{100 * v:6.2f}"


def _table(diff: dict[str, dict], md: bool) -> list[str]:
    head = ["metric", "baseline", "now", "delta", "95% CI of delta", "tolerance", ""]
    ci = lambda d: f"[{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]" if "ci95" in d else ""  # noqa: E731
    rows = [[m, _pct(d["before"]), _pct(d["after"]), f"{100 * d['delta']:+6.2f}", ci(d), f"{100 * d['tolerance']:5.2f}",
             "REGRESSION" if d["regression"] else ""] for m, d in diff.items()]
    if md:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda r: "  " + "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()
    return [fmt(head)] + [fmt(r) for r in rows]


def render(verdicts, md: bool = False) -> str:
    """The gate's report: one block per schema, metrics in points (percent)."""
    ok = all(v.ok for v in verdicts)
    out = [("# " if md else "") + f"retrieval gate: {MARK[ok]} ({sum(not v.ok for v in verdicts)} of {len(verdicts)} schemas failing; values in %)"]
    for v in verdicts:
        out.append("")
        out.append(("## " if md else "") + f"{v.schema}: {MARK[v.ok]} ({v.status}, {v.seconds:.1f} s, {v.embedded} texts embedded)")
        out.extend(("- " if md else "  ") + r for r in v.reasons)
        if v.diff:
            out.append("")
            out.extend(_table(v.diff, md))
        if v.losers:
            out.append("")
            out.append(("" if md else "  ") + f"questions that lost most ({v.losers[0]['metric']}):")
            for r in v.losers:
                q = r["question"] if len(r["question"]) <= 90 else r["question"][:87] + "..."
                out.append(f"{'- ' if md else '    '}{r['id']}: {100 * r['before']:.1f} -> {100 * r['after']:.1f}  {q}")
        if v.fix:
            out.append(("- " if md else "  ") + f"fix: {v.fix}")
    return "\n".join(out) + "\n"


def verdicts_json(verdicts) -> dict:
    return {"ok": all(v.ok for v in verdicts), "schemas": [asdict(v) for v in verdicts]}


def render_result(res, md: bool = False) -> str:
    """One evaluation: metric, mean and its bootstrap standard error, in percent."""
    lines = [f"{res.dataset} · {res.chunker} · k={res.k} · {len(res.per_question)} questions · {res.chunks} chunks",
             f"embedded {res.embed.embedded} of {res.embed.unique_texts} unique texts ({res.embed.cache_hits} cached) in {res.seconds:.1f} s"]
    if md:
        lines += ["", "| metric | mean % | ± s.e. |", "|---|---|---|"]
        lines += [f"| {m} | {100 * v:.2f} | {100 * res.noise[m]:.2f} |" for m, v in res.metrics.items()]
    else:
        lines += [f"  {m:<16} {100 * v:6.2f}  ± {100 * res.noise[m]:.2f}" for m, v in res.metrics.items()]
    return "\n".join(lines) + "\n"
