"""The import graph of the product packages, read from the source (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Where each part of the `ragindex` namespace lives in the repository (pyproject's package-dir).
ROOTS = {"ragindex": REPO / "pipeline", "ragindex.chunkers": REPO / "chunkers", "ragindex.schemas": REPO / "schemas"}


def modules() -> dict[str, Path]:
    """Every product module by its import name."""
    out: dict[str, Path] = {}
    for prefix, root in ROOTS.items():
        for f in root.rglob("*.py"):
            rel = f.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if prefix == "ragindex" and parts and parts[0] in ("chunkers", "schemas"):
                continue  # not there; mapped from the other roots
            out[name] = f
    return out


def imports(path: Path, name: str, top_level_only: bool, known: set[str] = frozenset()) -> set[str]:
    """Modules ``path`` imports (absolute names), at module level only or anywhere.

    ``from pkg import sub`` where ``pkg.sub`` is a module depends on ``pkg.sub``
    (Python initialises ``pkg`` first for any import of a submodule, so counting
    that parent edge too would make every package that imports its own modules a
    "cycle"); ``from pkg import name`` of anything else depends on ``pkg``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # statements guarded by `if TYPE_CHECKING:` or inside try/if at module level count too
        nodes = [n for top in tree.body for n in ast.walk(top) if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    out: set[str] = set()
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for n in nodes:
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                anchor = pkg.split(".")
                anchor = anchor[: len(anchor) - (n.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            subs = {f"{base}.{a.name}" for a in n.names} & set(known)
            out.update(subs)
            if len(subs) < len(n.names):
                out.add(base)
    return out


def graph(top_level_only: bool = True) -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: {m for m in imports(path, name, top_level_only, known) if m in mods and m != name} for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out
