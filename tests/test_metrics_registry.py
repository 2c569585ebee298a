"""The metric registry and the layout of the metrics package: every registered metric gives a
finite value in its declared range; declarations are keyword-only and collected from the family
modules; the modules import each other without cycles and use no other module's private names."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from ivfuse import metrics as M
from ivfuse.metrics import definition, registry

ALL = [(m.profile, m.name) for m in M.list_metrics()]
PKG = Path(M.__file__).parent


@pytest.fixture(scope="module")
def small_pair():
    rng = np.random.default_rng(24)
    m, n = 72, 96
    yy, xx = np.mgrid[0:m, 0:n]
    base = 128 + 70 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    ir = np.clip(base + rng.normal(0, 30, (m, n)), 0, 255).astype(np.uint8)
    vi = np.clip(255 - base + rng.normal(0, 30, (m, n)), 0, 255).astype(np.uint8)
    fused = np.clip(0.5 * ir + 0.5 * vi + rng.normal(0, 8, (m, n)), 0, 255).astype(np.uint8)
    ref = np.clip(base, 0, 255).astype(np.uint8)
    return fused, ir, vi, ref


@pytest.mark.parametrize(("profile", "name"), ALL, ids=[f"{p}-{n}" for p, n in ALL])
def test_every_metric_is_finite_and_in_its_range(small_pair, profile, name):
    fused, ir, vi, ref = small_pair
    info = M.lookup(M.get_profile(profile), name)
    value = M.evaluate(fused, ir, vi, [name], profile, reference=ref)[name]
    assert isinstance(value, float) and math.isfinite(value)
    lo, hi = info.range
    assert lo <= value <= hi, (profile, name, value, info.range)
    assert info.direction == ("higher" if info.higher_is_better else "lower")


def test_profiles_are_built_from_the_family_declarations():
    declared = list(registry.DECLARED)
    assert len({(p, m.name) for m in declared for p in m.profiles}) == sum(len(m.profiles) for m in declared)
    for prof in M.PROFILES.values():
        assert set(prof.default) <= set(prof.metrics)
        for info in prof.metrics.values():
            assert any(info.metric is m for m in declared) and prof.name in info.metric.profiles
    assert sum(len(p.metrics) for p in M.PROFILES.values()) == len(ALL)


def test_declarations_are_keyword_only_and_checked():
    kw = dict(
        name="X",
        fn=lambda prep: 0.0,
        family="statistics",
        higher_is_better=True,
        range=(0.0, 1.0),
        needs="none",
        meaning="m",
        source="s",
        profiles=("vifb",),
    )
    m = definition.Metric(**kw)
    assert m.cost == 1.0 and m.direction == "higher"
    with pytest.raises(TypeError):
        definition.Metric(*kw.values())  # no positional tuples
    with pytest.raises(ValueError, match="family"):
        definition.Metric(**{**kw, "family": "nope"})
    with pytest.raises(ValueError, match="range"):
        definition.Metric(**{**kw, "range": (1.0, 1.0)})


def test_sources_cite_papers_not_local_files():
    for m in M.list_metrics():
        assert "shared" not in m.source and "design/" not in m.source and "seed" not in m.source, m.source


def test_filter_impl_setting():
    assert M.get_filter_impl() == "opencv"
    with M.filter_impl("scipy"):
        assert M.get_filter_impl() == "scipy"
    assert M.get_filter_impl() == "opencv"
    assert M.set_filter_impl("scipy") == "opencv"
    assert M.set_filter_impl("opencv") == "scipy"
    with pytest.raises(ValueError, match="opencv"):
        M.set_filter_impl("fast")


# ---------------------------------------------------------------------------- package layout


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """(package modules imported, private names of other package modules used)."""
    modules = {p.stem for p in PKG.glob("*.py")}
    tree = ast.parse(path.read_text())
    deps: set[str] = set()
    private: list[str] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                deps.add(node.module.split(".")[0])
                private += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            else:
                for a in node.names:
                    if a.name in modules:
                        deps.add(a.name)
                        aliases[a.asname or a.name] = a.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                private.append(f"{aliases[node.value.id]}.{node.attr}")
    return deps, private


def test_package_imports_form_a_dag_without_private_cross_calls():
    graph = {}
    for path in PKG.glob("*.py"):
        deps, private = _imports(path)
        assert not private, (path.name, private)
        graph[path.stem] = deps - {path.stem}
    done: set[str] = set()

    def visit(mod: str, stack: tuple[str, ...]) -> None:
        assert mod not in stack, f"import cycle: {' -> '.join((*stack, mod))}"
        if mod in done:
            return
        for dep in graph.get(mod, ()):
            visit(dep, (*stack, mod))
        done.add(mod)

    for mod in graph:
        visit(mod, ())
    assert not any(p.stem.startswith("_") and p.stem != "__init__" for p in PKG.glob("*.py"))
