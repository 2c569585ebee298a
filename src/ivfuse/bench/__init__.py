"""``ivfuse bench``: fuse named test sets with many methods, score them, and report.

>>> from ivfuse.bench import bench, bench_paper
>>> results = bench(["lp", "gff"], ["tno"], "results/")                  # doctest: +SKIP
>>> paper = bench_paper("didfuse", "results/")                          # doctest: +SKIP

Writes into the results folder: ``results.json`` (everything, see :func:`ivfuse.bench.report.build`),
``results.csv`` (one row per data set x method x image x metric), ``report.md``, ``report.html``
(self-contained) and ``figures/``; fused images and metric values are cached (``fused/``,
``cache/``), so a rerun computes only what is missing. ``bench_paper`` also writes
``paper_<name>.json`` / ``.md``: the paper's tables with our values beside the printed ones.

Modules: :mod:`.datasets` (named test sets), :mod:`.runner` (fuse -> cache -> evaluate),
:mod:`.stats` (ranks, paired tests), :mod:`.report` (json/csv/md), :mod:`.figures`, :mod:`.html`,
:mod:`.paper` with the transcribed tables in ``papers/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..api import parse_params
from ..errors import InputError
from ..methods import registry
from ..metrics import resolve_metrics
from ..metrics.registry import PROFILES, get_profile
from . import datasets as _datasets
from . import report as _report
from .runner import MethodSpec, Progress, Task, run, total_steps

__all__ = [
    "MethodSpec",
    "Task",
    "bench",
    "bench_paper",
    "default_profile",
    "make_tasks",
    "parse_method",
    "total_steps",
]


def default_profile(task: str) -> str:
    """The metric profile of a task when none is named: ``vifb`` for infrared-visible and
    multi-focus sets, ``mefb`` (MEFB's own metrics) for multi-exposure sets when it is installed."""
    if task == "mef" and "mefb" in PROFILES:
        return "mefb"
    return "vifb"


def parse_method(text: str) -> MethodSpec:
    """``"didfuse"`` or ``"didfuse@rule=l1"`` (options joined by ``@``) -> :class:`MethodSpec`."""
    name, *opts = text.strip().split("@")
    if not name:
        raise InputError(f"empty method name in {text!r}")
    return MethodSpec.make(name, parse_params(opts))


def _names(x: str | Iterable[str] | None) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [s.strip() for s in x.split(",") if s.strip()]
    return [str(s).strip() for s in x if str(s).strip()]


def make_tasks(
    methods: str | Iterable[str],
    datasets: str | Iterable[str],
    *,
    profile: str | None = None,
    metrics: str | Iterable[str] | None = None,
    data_root: str | os.PathLike | None = None,
) -> list[Task]:
    """Resolve data sets and metric names into runner tasks (errors: one :class:`InputError` line)."""
    specs = [parse_method(m) for m in _names(methods)]
    if not specs:
        raise InputError("no methods given (--methods lp,gff,...)")
    for s in specs:
        registry.info(s.name)  # an unknown name is one line before anything runs
    names = _names(datasets)
    if not names:
        raise InputError("no data sets given (--datasets tno,... or --dataset PATH)")
    tasks = []
    for name in names:
        data = _datasets.resolve(name, data_root)
        prof = get_profile(profile or default_profile(data.dataset.task))
        infos = resolve_metrics(metrics, prof)
        tasks.append(Task(data, list(dict.fromkeys(specs)), {prof.name: [m.name for m in infos]}))
    return tasks


def _write_all(
    results: dict[str, Any],
    out: Path,
    *,
    figures: bool,
    html: bool,
    papers: list[dict[str, Any]] | None = None,
) -> None:
    _report.write_json(results, out / "results.json")
    _report.write_csv(results, out / "results.csv")
    figs: dict[str, list[str]] = {}
    if figures:
        from .figures import dataset_figures

        figs = dataset_figures(results, out)
    _report.write_markdown(results, out / "report.md", figs)
    if html:
        from .html import write_html

        write_html(results, out, figs, papers)


def bench(
    methods: str | Iterable[str],
    datasets: str | Iterable[str],
    out: str | os.PathLike,
    *,
    profile: str | None = None,
    metrics: str | Iterable[str] | None = None,
    data_root: str | os.PathLike | None = None,
    overwrite: bool = False,
    workers: int = 1,
    test: str = "wilcoxon",
    alpha: float = 0.05,
    figures: bool = True,
    html: bool = True,
    command: str = "",
    progress: Progress | None = None,
    tasks: list[Task] | None = None,
) -> dict[str, Any]:
    """Fuse, score and report ``methods`` on ``datasets``; returns the results dict."""
    out = Path(out)
    if tasks is None:
        tasks = make_tasks(methods, datasets, profile=profile, metrics=metrics, data_root=data_root)
    outcome = run(tasks, out, overwrite=overwrite, workers=workers, progress=progress)
    results = _report.build(outcome, test=test, alpha=alpha, command=command)
    _write_all(results, out, figures=figures, html=html)
    return results


def paper_tasks(
    name: str, *, data_root: str | os.PathLike | None = None, extra_methods: list[str] | None = None
) -> tuple[dict[str, Any], list[Task], list[str]]:
    """(the paper's data, its runner tasks, messages about tables left out)."""
    from .paper import load_paper, plan

    paper = load_paper(name)
    for m in extra_methods or []:
        registry.info(parse_method(m).name)
    messages: list[str] = []
    tasks = plan(paper, data_root=data_root, extra_methods=extra_methods, messages=messages)
    if not tasks:
        raise InputError(f"paper {name!r}: none of its data sets is available ({'; '.join(messages)})")
    return paper, tasks, messages


def bench_paper(
    name: str,
    out: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    extra_methods: list[str] | None = None,
    overwrite: bool = False,
    workers: int = 1,
    test: str = "wilcoxon",
    alpha: float = 0.05,
    figures: bool = True,
    html: bool = True,
    command: str = "",
    progress: Progress | None = None,
    prepared: tuple[dict[str, Any], list[Task], list[str]] | None = None,
) -> dict[str, Any]:
    """Rebuild paper ``name``'s tables; writes paper_<name>.json/.md beside the usual outputs and
    returns the paper_<name>.json document."""
    from . import paper as _paper

    out = Path(out)
    paper, tasks, messages = prepared or paper_tasks(name, data_root=data_root, extra_methods=extra_methods)
    outcome = run(tasks, out, overwrite=overwrite, workers=workers, progress=progress)
    outcome.messages[:0] = messages
    results = _report.build(outcome, test=test, alpha=alpha, command=command)
    doc, display = _paper.tables(paper, results)
    _paper.write(paper["paper"], doc, display, out, command)
    _write_all(results, out, figures=figures, html=html, papers=[display])
    return doc
