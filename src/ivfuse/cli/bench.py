"""``ivfuse bench``: every method on every named test set, or one seed paper's tables rebuilt."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import InputError
from ..methods.registry import module_methods
from . import AddressOpt, CpusOpt, EngineOpt, GpusOpt

_out = Console()
_err = Console(stderr=True)


def _print_list() -> None:
    from ..bench.datasets import DATASETS
    from ..bench.papers import PAPERS

    table = Table(title="data sets (resolved under --data-root DIR, else $IVFUSE_DATA)")
    for col in ("name", "task", "pairs", "where", "description"):
        table.add_column(col, overflow="fold")
    for d in DATASETS.values():
        where = f"splits/{d.split}.txt" if d.split else f"{d.folder}/"
        table.add_row(d.name, d.task, str(d.pairs or ""), where, d.description)
    _out.print(table)
    _out.print(f"papers (--paper): {', '.join(PAPERS)}", highlight=False)


def bench_command(
    methods: Annotated[
        str | None,
        typer.Option("--methods", help="Comma-separated methods; options with @, e.g. didfuse@rule=l1."),
    ] = None,
    datasets: Annotated[
        str | None, typer.Option("--datasets", help="Comma-separated data set names (see --list).")
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset", help="Your own folder with ir/ + vi/ (or under/ + over/, a/ + b/); repeatable."
        ),
    ] = None,
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Results folder (cache, tables, report).")
    ] = None,
    paper: Annotated[
        str | None,
        typer.Option(
            "--paper", help=f"Rebuild the results tables of a method's paper: {', '.join(module_methods())}."
        ),
    ] = None,
    ablations: Annotated[
        Path | None,
        typer.Option(
            "--ablations",
            help="--paper: folder of the trained ablation variants, METHOD/NAME/weights.safetensors "
            "(default runs/ablations, where scripts/train_ablations.py writes, then ablations/ of a "
            "checkout).",
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="--paper: score the paper's method with these weights (a .safetensors file, or the "
            "run folder of ivfuse train) instead of the shipped ones.",
        ),
    ] = None,
    rows: Annotated[
        str | None,
        typer.Option(
            "--rows",
            help="--paper: run only these rows, comma-separated ivfuse methods or METHOD:VARIANT for an "
            "ablation row (e.g. the paper's method with new --weights, without fusing every competitor "
            "again); the others show the paper's values only. Name a classical row to keep the "
            "convention offsets.",
        ),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Metric profile (default: vifb; mefb for MEF sets).")
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", "-m", help="Comma-separated metrics, or 'all' (default: the profile's)."),
    ] = None,
    data_root: Annotated[
        str | None,
        typer.Option(
            "--data-root",
            help="Folder of the named data sets; default: the IVFUSE_DATA environment variable.",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Redo cached fused images and metrics.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", "-j", help="Processes for the metrics; --engine ray: workers (default one per CPU)."
        ),
    ] = 1,
    test: Annotated[str, typer.Option("--test", help="Paired test: wilcoxon or t.")] = "wilcoxon",
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of the paired test.")] = 0.05,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Write figures/.")] = True,
    html: Annotated[bool, typer.Option("--html/--no-html", help="Write report.html.")] = True,
    list_only: Annotated[
        bool, typer.Option("--list", help="List the data sets and papers and exit.")
    ] = False,
    device: Annotated[
        str,
        typer.Option("--device", help="Deep methods: auto (CUDA when torch sees a GPU), cpu, cuda, cuda:N."),
    ] = "auto",
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    gpus_per_worker: GpusOpt = None,
    cpus_per_worker: CpusOpt = None,
) -> None:
    """Fuse test sets with several methods, score them, and write tables, figures and an HTML report.

    --engine ray fuses and scores on a Ray cluster (the method loaded once per worker); the cached
    images, the numbers and the report are the local engine's."""
    from .. import bench as b
    from ..distributed import make_engine

    if list_only:
        _print_list()
        return
    if out is None:
        raise InputError("--out RESULTS folder is required")
    _refuse_urls(dataset, out, data_root)
    out_dir = Path(out)  # strings so far: a URL stays whole for its refusal (a Path mangles s3://)
    root = None if data_root is None else Path(data_root)
    paths = [Path(d) for d in dataset or []]
    if test not in ("wilcoxon", "t"):
        raise InputError(f"--test must be wilcoxon or t, got {test!r}")
    if not 0 < alpha < 1:
        raise InputError(f"--alpha must be in (0, 1), got {alpha}")
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    ray_engine = make_engine(
        engine, address=address, workers=workers if workers != 1 else None,
        gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker,
    )  # fmt: skip
    from ..devices import parse_device

    if ray_engine is None:  # the cluster's workers have their own devices
        parse_device(device)  # a CUDA device where there is none: one line, exit 2, before anything runs
    given = [
        ("--paper", paper), ("--methods", methods), ("--datasets", datasets),
        *(("--dataset", str(p)) for p in paths), ("--profile", profile), ("--metrics", metrics),
        ("--data-root", root), ("--out", out_dir), ("--workers", workers if workers != 1 else None),
        ("--test", test if test != "wilcoxon" else None), ("--alpha", alpha if alpha != 0.05 else None),
        ("--engine", engine if engine != "local" else None), ("--address", address),
        ("--ablations", ablations), ("--weights", weights), ("--rows", rows),
    ]  # fmt: skip
    command = " ".join(["ivfuse bench", *(f"{k} {shlex.quote(str(v))}" for k, v in given if v is not None)])
    if paper is not None:
        if datasets or dataset or profile or metrics:
            raise InputError(
                "--paper chooses its own data sets and metrics; drop --datasets/--profile/--metrics"
            )
        extra = _names(methods) if methods else None
        keep = _names(rows) if rows else None
        plan = b.plan_paper(
            paper, data_root=root, extra_methods=extra, ablations=ablations, weights=weights, rows=keep
        )
    else:
        if rows is not None:
            raise InputError("--rows goes with --paper; elsewhere --methods names what runs")
        if weights is not None:
            raise InputError(
                "--weights goes with --paper; elsewhere give them per method: METHOD@weights=PATH"
            )
        names = [s for s in (datasets or "").split(",") if s.strip()] + [str(p) for p in paths]
        plan = b.plan_bench(methods or "", names, profile=profile, metrics=metrics, data_root=root)
    bench_engine = None
    if ray_engine is not None:
        from ..distributed.bench import RayBenchEngine

        bench_engine = RayBenchEngine(ray_engine)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=_err, transient=False) as bar:
        job = bar.add_task("bench", total=plan.steps)

        def progress(desc: str, n: int) -> None:
            bar.update(job, advance=n, description=desc)

        done = b.run_plan(
            plan, out_dir, overwrite=overwrite, workers=workers, test=test, alpha=alpha, figures=figures,
            html=html, command=command, progress=progress, device=device, engine=bench_engine,
        )  # fmt: skip
    results = done.results
    for msg in results["messages"]:  # the plan's notes first, then the run's
        _err.print(f"[yellow]note:[/yellow] {msg}", highlight=False, soft_wrap=True)
    _summary(results)
    t = results["timing"]
    wrote = [p.name for p in done.written if p.parent == out_dir]
    _out.print(
        f"{t['total_s']:.1f} s: fusion {t['fusion_s']:.1f} s, metrics {t['metrics_s']:.1f} s, "
        f"other {t['overhead_s']:.1f} s; wrote {', '.join(wrote)} to {out_dir}",
        highlight=False,
    )


def _names(text: str) -> list[str]:
    """A comma-separated option as its non-empty, stripped names."""
    return [m.strip() for m in text.split(",") if m.strip()]


def _summary(results: dict) -> None:
    """One table per data set: metrics as rows, methods as columns (means; best in bold)."""
    from ..bench.report import fmt, ranked_methods

    for d in results["datasets"]:
        methods = ranked_methods(d)
        if not methods:
            continue
        cell = {(c["method"], c["profile"], c["metric"]): c for c in d["cells"]}
        table = Table(
            title=f"{d['name']} ({d['pairs']} pairs), means; bold = best, † = not significantly worse"
        )
        table.add_column("metric")
        for m in methods:
            table.add_column(m["method"], justify="right")
        several = len({c["profile"] for c in d["metrics"]}) > 1
        for c in d["metrics"]:
            label = f"{c['metric']} ({c['profile']})" if several else c["metric"]
            row = [label + (" ↑" if c["higher_is_better"] else " ↓")]
            for m in methods:
                x = cell.get((m["method"], c["profile"], c["metric"]))
                text = fmt(x["mean"]) if x else "–"
                if x and x["best"]:
                    text = f"[bold]{text}[/bold]"
                elif x and x["tied_with_best"]:
                    text += " †"
                row.append(text)
            table.add_row(*row)
        table.add_row("ms/pair", *(fmt(m["ms_median"]) for m in methods), end_section=False)
        table.add_row("avg rank", *(fmt(m["avg_rank"]) for m in methods))
        _out.print(table)


def _refuse_urls(dataset: list[str] | None, out: str, data_root: str | None) -> None:
    """One line, exit 2, for a URL where bench takes folders: it caches, reports and plots into
    local folders (a shared file system on a cluster); URLs go to ivfuse fuse and ivfuse eval."""
    from ..distributed.fs import is_url

    for flag, value in (
        *(("--dataset", d) for d in dataset or []),
        ("--out", out),
        ("--data-root", data_root),
    ):
        if is_url(value):
            raise InputError(
                f"{flag} {value}: ivfuse bench reads and writes folders of a (shared) file system, not "
                "URLs; mount the bucket, or fuse and score it with ivfuse fuse/eval, which take URLs"
            )
