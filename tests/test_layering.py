"""The package's import layers, read from the source with ``ast`` (no import runs).

* bottom: ``errors``, ``_version``, ``io``, ``nn`` and ``devices`` import nothing of ivfuse above
  them (``io`` and ``devices`` use ``errors`` only; ``nn`` nothing but itself, ``errors`` and
  ``_version``);
* top: only the CLI (``ivfuse.cli``, ``ivfuse.__main__``) imports ``ivfuse.cli``;
* no module inside the package imports the package root (``from .. import __version__``,
  ``import ivfuse``): the root re-exports, it is not a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "ivfuse"

#: bottom modules -> the ivfuse modules (prefixes) each may import
BOTTOM = {
    "ivfuse.errors": (),
    "ivfuse._version": (),
    "ivfuse.io": ("ivfuse.errors",),
    "ivfuse.nn": ("ivfuse.nn", "ivfuse.errors", "ivfuse._version"),
    "ivfuse.devices": ("ivfuse.errors",),
}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = f
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The ivfuse modules ``name`` imports (anywhere in the file, also inside functions); the
    package root appears as ``ivfuse`` only when a name of the root itself is imported."""
    is_pkg = path.name == "__init__.py"
    package = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ivfuse")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "ivfuse":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.add(sub if sub in MODULES else target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _under(mod: str, prefix: str) -> bool:
    return mod == prefix or mod.startswith(prefix + ".")


def test_the_parser_sees_the_imports():
    assert "ivfuse.errors" in GRAPH["ivfuse.io"]
    assert "ivfuse.api" in GRAPH["ivfuse.cli"] and "ivfuse.io" in GRAPH["ivfuse.cli"]
    assert "ivfuse._version" in GRAPH["ivfuse"]


def test_bottom_modules_import_nothing_above_them():
    bad = []
    for mod, targets in GRAPH.items():
        for bottom, allowed in BOTTOM.items():
            if _under(mod, bottom):
                bad += [f"{mod} -> {t}" for t in targets if not any(_under(t, a) for a in allowed)]
    assert not bad, bad


def test_only_the_cli_imports_the_cli():
    bad = [
        f"{mod} -> {t}"
        for mod, targets in GRAPH.items()
        if not (_under(mod, "ivfuse.cli") or mod == "ivfuse.__main__")
        for t in targets
        if _under(t, "ivfuse.cli")
    ]
    assert not bad, bad


def test_nothing_imports_the_package_root():
    bad = [mod for mod, targets in GRAPH.items() if mod != "ivfuse" and "ivfuse" in targets]
    assert not bad, bad


def test_a_classical_method_runs_without_importing_torch():
    """The registry imports only what registers the asked method, and a classical method's device
    needs no GPU look-up: a process (e.g. a Ray worker) fusing with lp never pays torch's import."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, ivfuse\n"
        "p = ivfuse.load('lp')\n"
        "p.fuse(np.zeros((16, 16), np.uint8), np.full((16, 16), 9, np.uint8))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "from ivfuse.methods import registry\n"
        "registry.info('jcae')\n"
        "assert 'ivfuse.methods.didfuse' not in sys.modules\n"
        "assert len(registry.available()) > 10\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
