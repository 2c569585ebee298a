"""``ivfuse bench``: fuse named test sets with many methods, score them, and report.

>>> from ivfuse.bench import bench, bench_paper
>>> results = bench(["lp", "gff"], ["tno"], "results/")                  # doctest: +SKIP
>>> paper = bench_paper("didfuse", "results/")                          # doctest: +SKIP

Step by step (what ``ivfuse bench`` does): a :class:`BenchPlan` (:func:`plan_bench` or
:func:`plan_paper`) says what will run and how many progress steps that is; :func:`run_plan` runs it
and returns a :class:`BenchRun` (the results dict, the paper tables, the files written).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import parse_params
from ..errors import InputError
from ..methods import registry
from ..metrics import resolve_metrics
from ..metrics.registry import PROFILES, get_profile
from . import datasets as _datasets
from . import report as _report
from .runner import BenchEngine, MethodSpec, Progress, Task, run, total_steps

__all__ = [
    "BenchPlan",
    "BenchRun",
    "MethodSpec",
    "Task",
    "bench",
    "bench_paper",
    "default_profile",
    "make_tasks",
    "parse_method",
    "plan_bench",
    "plan_paper",
    "run_plan",
    "total_steps",
]


@dataclass
class BenchPlan:
    """What a benchmark run will do: the runner tasks, notes for the user (tables left out) and,
    for a paper, the paper's transcribed tables."""

    tasks: list[Task]
    messages: list[str] = field(default_factory=list)
    paper: dict[str, Any] | None = None

    @property
    def steps(self) -> int:
        """Progress units of the run (see :func:`ivfuse.bench.runner.total_steps`)."""
        return total_steps(self.tasks)


@dataclass
class BenchRun:
    """What :func:`run_plan` did: the results dict (as in ``results.json``), the paper's tables
    (``paper_<name>.json``; ``None`` without a paper) and every file written."""

    results: dict[str, Any]
    paper_doc: dict[str, Any] | None = None
    written: list[Path] = field(default_factory=list)


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
    for s in specs:  # an unknown name or option is one line before anything runs
        registry.check_options(s.name, dict(s.options))
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


def plan_bench(
    methods: str | Iterable[str],
    datasets: str | Iterable[str],
    *,
    profile: str | None = None,
    metrics: str | Iterable[str] | None = None,
    data_root: str | os.PathLike | None = None,
) -> BenchPlan:
    """:func:`make_tasks` as a :class:`BenchPlan`."""
    return BenchPlan(make_tasks(methods, datasets, profile=profile, metrics=metrics, data_root=data_root))


def _write_all(
    results: dict[str, Any],
    out: Path,
    *,
    figures: bool,
    html: bool,
    papers: list[dict[str, Any]] | None = None,
) -> list[Path]:
    written = [out / "results.json", out / "results.csv"]
    _report.write_json(results, written[0])
    _report.write_csv(results, written[1])
    figs: dict[str, list[str]] = {}
    if figures:
        from .figures import dataset_figures

        figs = dataset_figures(results, out)
        written += [out / rel for files in figs.values() for rel in files]
    written.append(out / "report.md")
    _report.write_markdown(results, written[-1], figs)
    if html:
        from .html import write_html

        written.append(write_html(results, out, figs, papers))
    return written


def run_plan(
    plan: BenchPlan,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    workers: int = 1,
    test: str = "wilcoxon",
    alpha: float = 0.05,
    figures: bool = True,
    html: bool = True,
    command: str = "",
    progress: Progress | None = None,
    device: str = "auto",
    engine: BenchEngine | None = None,
) -> BenchRun:
    """Fuse, score and report a plan into ``out``; ``progress(description, steps)`` advances by
    :attr:`BenchPlan.steps` in all. A paper plan also writes ``paper_<name>.json``/``.md``.
    ``engine``: where the pairs are fused and scored (:class:`ivfuse.bench.runner.BenchEngine`;
    default: this process)."""
    out = Path(out)
    outcome = run(
        plan.tasks, out, overwrite=overwrite, workers=workers, progress=progress, device=device, engine=engine
    )
    outcome.messages[:0] = plan.messages
    results = _report.build(outcome, test=test, alpha=alpha, command=command)
    if plan.paper is None:
        return BenchRun(results, None, _write_all(results, out, figures=figures, html=html))
    from . import paper as _paper

    doc, display = _paper.tables(plan.paper, results)
    written = _paper.write(plan.paper["paper"], doc, display, out, command)
    written += _write_all(results, out, figures=figures, html=html, papers=[display])
    return BenchRun(results, doc, written)


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
    """Fuse, score and report ``methods`` on ``datasets`` (or the runner ``tasks`` given); returns
    the results dict (the content of ``results.json``)."""
    if tasks is None:
        tasks = make_tasks(methods, datasets, profile=profile, metrics=metrics, data_root=data_root)
    done = run_plan(
        BenchPlan(tasks), out, overwrite=overwrite, workers=workers, test=test, alpha=alpha,
        figures=figures, html=html, command=command, progress=progress,
    )  # fmt: skip
    return done.results


def plan_paper(
    name: str,
    *,
    data_root: str | os.PathLike | None = None,
    extra_methods: list[str] | None = None,
    ablations: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    rows: list[str] | None = None,
) -> BenchPlan:
    """The plan of paper ``name``: its tasks, the paper's tables, and messages about tables left out
    (a data set not available); :class:`InputError` when none of its data sets is. Ablation rows run
    from the variants' weights under ``ablations`` (:func:`ivfuse.bench.paper.resolve_ablations`);
    ``weights`` replaces the shipped weights of the paper's method in its other rows
    (:func:`ivfuse.bench.paper.with_weights`). ``rows``: run only these rows
    (:func:`ivfuse.bench.paper.only_rows`), with no extra rows unless ``extra_methods`` names them."""
    from .paper import load_paper, only_rows, plan, resolve_ablations, with_weights

    messages: list[str] = []
    paper = resolve_ablations(load_paper(name), ablations, messages)
    if weights is not None:
        paper = with_weights(paper, weights, messages)
    if rows is not None:
        paper = only_rows(paper, rows, messages)
        extra_methods = extra_methods or []
    for m in extra_methods or []:
        registry.info(parse_method(m).name)
    tasks = plan(paper, data_root=data_root, extra_methods=extra_methods, messages=messages)
    if not tasks:
        raise InputError(f"paper {name!r}: none of its data sets is available ({'; '.join(messages)})")
    return BenchPlan(tasks, messages, paper)


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
) -> dict[str, Any]:
    """Rebuild paper ``name``'s tables; writes paper_<name>.json/.md beside the usual outputs and
    returns the paper_<name>.json document (:func:`run_plan` gives the results dict as well)."""
    done = run_plan(
        plan_paper(name, data_root=data_root, extra_methods=extra_methods), out, overwrite=overwrite,
        workers=workers, test=test, alpha=alpha, figures=figures, html=html, command=command,
        progress=progress,
    )  # fmt: skip
    assert done.paper_doc is not None
    return done.paper_doc
