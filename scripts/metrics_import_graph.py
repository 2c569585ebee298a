"""The import graph of the modules of ``ivfuse.metrics`` (imports inside functions included).

    python scripts/metrics_import_graph.py

Prints each module with the package modules it imports, then the import cycles (strongly
connected components of more than one module, or a module importing itself), then the uses of
another module's private (``_x``) names: ``from .m import _x`` and ``alias._x`` where ``alias``
is a package module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "ivfuse" / "metrics"


def module_name(path: Path) -> str:
    return "__init__" if path.stem == "__init__" else path.stem


def imports(path: Path, modules: set[str]) -> tuple[set[str], list[str]]:
    """(package modules imported, private names of other modules used)."""
    tree = ast.parse(path.read_text(), str(path))
    deps: set[str] = set()
    private: list[str] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:  # from .x import a, b
                target = node.module.split(".")[0]
                deps.add(target)
                for a in node.names:
                    if a.name.startswith("_"):
                        private.append(f"from .{node.module} import {a.name}")
            else:  # from . import x
                for a in node.names:
                    if a.name in modules:
                        deps.add(a.name)
                        aliases[a.asname or a.name] = a.name
                        if a.name.startswith("_"):
                            private.append(f"from . import {a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in aliases and node.attr.startswith("_") and not node.attr.startswith("__"):
                private.append(f"{aliases[node.value.id]}.{node.attr}")
    deps.discard(module_name(path))
    return deps, sorted(set(private))


def graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    files = sorted(PKG.glob("*.py"))
    modules = {module_name(p) for p in files}
    g, priv = {}, {}
    for p in files:
        g[module_name(p)], priv[module_name(p)] = imports(p, modules)
    return g, priv


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with a cycle (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
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
            if len(comp) > 1 or v in g.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    g, priv = graph()
    for m in sorted(g):
        print(f"{m}: {', '.join(sorted(g[m])) or '-'}")
    cyc = cycles(g)
    print("cycles:", "; ".join(" <-> ".join(c) for c in cyc) if cyc else "none")
    bad = {m: p for m, p in priv.items() if p}
    print("private names of other modules:", "none" if not bad else "")
    for m, p in sorted(bad.items()):
        print(f"  {m}: {', '.join(p)}")
    return 1 if cyc or bad else 0


if __name__ == "__main__":
    sys.exit(main())
