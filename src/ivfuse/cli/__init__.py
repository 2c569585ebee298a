"""Command-line interface: a thin typer shell over the Python API.

Every command is a plain typed function; the work happens in the library. Errors a user can
cause end as one line on stderr and the error's exit code (2 for bad input), never a traceback.
"""

from __future__ import annotations

import functools
import inspect
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .. import api, io
from ..api import parse_params
from ..errors import InputError, IvfuseError
from .register import DEFAULT_MIN_CONFIDENCE

app = typer.Typer(
    name="ivfuse",
    help="Infrared-visible image fusion: fuse, evaluate, train and compare methods.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

#: the installed packages that decide what ivfuse computes and how fast, in ``--version``
VERSIONED = ("torch", "numpy", "onnxruntime", "openvino", "opencv-python-headless", "ray")


def version_text() -> str:
    """``ivfuse --version``: ivfuse's version, then Python's and those of the packages that decide
    what it computes and how fast (what a bug report needs); read from the installed packages'
    metadata, so nothing heavy is imported."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from .._version import __version__

    parts = [f"python {platform.python_version()}"]
    for name in VERSIONED:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return f"ivfuse {__version__}\n" + ", ".join(parts)


def _print_version(value: bool) -> None:
    if value:
        out.print(version_text(), highlight=False, soft_wrap=True)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the versions of ivfuse, Python and the main dependencies, then exit.",
        ),
    ] = False,
) -> None:
    """Infrared-visible image fusion: fuse, evaluate, train and compare methods."""


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`IvfuseError` into one red line and its exit code; warnings into yellow lines."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..backends import BackendWarning
        from ..devices import DeviceNote

        shown = (io.ColourInfraredWarning, BackendWarning, DeviceNote)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", io.ColourInfraredWarning)
            try:
                return fn(*args, **kwargs)
            except IvfuseError as exc:
                err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                err.print("[red]interrupted[/red]")
                raise typer.Exit(130) from None
            finally:
                for w in caught:
                    if issubclass(w.category, shown):
                        err.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False, soft_wrap=True)

    wrapper.__doc__ = reflow(fn.__doc__)
    return wrapper


def reflow(doc: str | None) -> str | None:
    """A command's docstring as ``--help`` shows it: each paragraph on one line, so the terminal
    wraps it (typer's rich help keeps the source's line breaks after the first paragraph, which
    leaves ragged lines on any terminal narrower than the source). A paragraph that starts with
    ``\\b`` keeps its lines, as click's convention for literal blocks."""
    if doc is None:
        return None
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def command(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a command wrapped by :func:`friendly`."""
    return lambda fn: app.command(name)(friendly(fn))


MethodOpt = Annotated[str, typer.Option("--method", "-m", help="Fusion method (see `ivfuse methods`).")]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Method option KEY=VALUE, repeatable (e.g. -p levels=5)."),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help="Deep methods: auto (fastest installed fp32-exact), torch, onnxruntime or openvino.",
    ),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help="fp32; opt-in half precision of the deep methods: bf16 (GPU, or a CPU with AVX512-BF16/AMX), "
        "fp16 (GPU only).",
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", help="Deep methods: auto (CUDA when torch sees a GPU), cpu, cuda or cuda:N."),
]
RuleOpt = Annotated[
    str | None, typer.Option("--rule", help="Feature fusion rule of deep methods: sum, average or l1.")
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local (this process), or ray: a Ray Data actor pool on the cluster of --address (a "
        'one-machine cluster without it); pip install "ivfuse\\[distributed]". Same outputs either way.',
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="--engine ray: auto (the cluster of this node) or ray://HOST:10001."),
]
GpusOpt = Annotated[
    float | None,
    typer.Option("--gpus-per-worker", help="--engine ray: GPUs per worker (deep methods; 0.5 shares one)."),
]
CpusOpt = Annotated[
    float | None,
    typer.Option("--cpus-per-worker", help="--engine ray: CPUs (and threads) per worker (default 1)."),
]


@command("fuse")
def fuse_command(
    ir: Annotated[
        str | None, typer.Argument(help="Infrared image (single-pair mode; --task mef|mff: source A).")
    ] = None,
    vi: Annotated[
        str | None, typer.Argument(help="Visible image (single-pair mode; --task mef|mff: source B).")
    ] = None,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="Output file (one pair) or folder (folders; a URL: s3://, gs://, file://...).",
        ),
    ] = ...,
    method: MethodOpt = api.DEFAULT_METHOD,
    ir_dir: Annotated[str | None, typer.Option("--ir", help="Folder (or URL) of infrared images.")] = None,
    vi_dir: Annotated[str | None, typer.Option("--vi", help="Folder (or URL) of visible images.")] = None,
    pairs_dir: Annotated[
        str | None,
        typer.Option(
            "--pairs",
            help="Folder (or URL: s3://, gs://, hdfs://, file://, through pyarrow) holding ir/ + vi/ "
            "(--task mef: under/ + over/, mff: a/ + b/).",
        ),
    ] = None,
    task: Annotated[
        str, typer.Option("--task", help="ivif (infrared-visible), mef (multi-exposure), mff (multi-focus).")
    ] = "ivif",
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace existing outputs. Without it an existing output is skipped in folder mode and "
            "refused (exit 2) for one pair. An output that is an input is refused either way."
        ),
    ] = False,
    bit_depth: Annotated[int, typer.Option("--bit-depth", help="Output bit depth: 8 or 16.")] = 8,
    ext: Annotated[str, typer.Option(help="Output format in folder mode.")] = "png",
    stretch: Annotated[
        bool,
        typer.Option(help="Percentile-stretch 16-bit inputs (0.5-99.5 %); --no-stretch divides by 65535."),
    ] = True,
    register: Annotated[
        bool,
        typer.Option(
            "--register",
            help="Register each infrared image onto the visible grid first (video: once, on the first "
            "frame pair); a pair below --min-confidence is refused (exit 2; folders: reported failed).",
        ),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option("--model", help="--register: translation, similarity, affine or homography (default)."),
    ] = None,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            "--min-confidence",
            help=f"--register: refuse below this structural correlation ({DEFAULT_MIN_CONFIDENCE:g}).",
        ),
    ] = None,
    max_inconsistency: Annotated[
        float | None,
        typer.Option(
            "--max-inconsistency",
            help="--register: also register VI back onto IR and refuse a pair whose two directions "
            "disagree by more than this many visible pixels at the corners (about 1.3x the time).",
        ),
    ] = None,
    transform: Annotated[
        Path | None,
        typer.Option(
            "--transform", help="Apply this saved transform (ivfuse register --save-transform) to every pair."
        ),
    ] = None,
    video: Annotated[
        bool,
        typer.Option(
            "--video",
            help="IR and VI are videos (or image-sequence folders) and OUT a video file or folder. Each "
            "visible frame takes the infrared frame at or nearest before its timestamp.",
        ),
    ] = False,
    codec: Annotated[
        str | None,
        typer.Option(
            "--codec", help="--video: output encoder (default: the visible video's, else libx264/mpeg4)."
        ),
    ] = None,
    fps: Annotated[
        float | None,
        typer.Option(
            "--fps", help="--video: output frame rate (default: the visible video's; 25 for image folders)."
        ),
    ] = None,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", help="--video: fuse only the first N frames.")
    ] = None,
    rule: RuleOpt = None,
    param: ParamOpt = None,
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="Folders: pairs per network pass (equal sizes batched; same results as one by one), "
            "images decoded and written on worker threads (default 1). --video: frames per fuse_batch "
            "call. --engine ray: pairs per worker call (default 8).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-j",
            help="Folders: threads that decode and write images (0: none). --engine ray: workers "
            "(0: one per CPU, or per --gpus-per-worker GPUs, of the cluster).",
        ),
    ] = 0,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    gpus_per_worker: GpusOpt = None,
    cpus_per_worker: CpusOpt = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Folders: skip the pairs OUT/.ivfuse-manifest.jsonl records as fused with the same "
            "method, weights and options; fuse (and replace) the others. Kept by --engine ray always.",
        ),
    ] = False,
) -> None:
    """Fuse one pair (IR VI -o OUT), folders of pairs matched by file stem (--ir/--vi or --pairs), or
    two videos (--video IR VI -o OUT.mp4).

    Inputs are never written over: an output file that is one of the inputs, --ir and --vi naming
    one folder, and an output folder inside an input folder are refused (exit 2). An existing
    output needs --overwrite: one pair is refused without it (exit 2), folders skip it.

    Folders with --engine ray run on a Ray cluster (docs/distributed.md), with the same outputs,
    summary and exit codes.
    """
    from ..distributed import make_engine

    if bit_depth not in (8, 16):
        raise InputError(f"--bit-depth must be 8 or 16, got {bit_depth}")
    ray_engine = make_engine(
        engine, address=address, workers=workers, gpus_per_worker=gpus_per_worker,
        cpus_per_worker=cpus_per_worker, batch_size=batch_size,
    )  # fmt: skip
    batch_size = 1 if batch_size is None else batch_size
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if workers < 0:
        raise InputError(f"--workers must be 0 or more, got {workers}")
    folder_mode = ir_dir is not None or vi_dir is not None or pairs_dir is not None
    if (ray_engine is not None or resume) and (video or not folder_mode):
        raise InputError("--engine ray and --resume fuse folders (--pairs DIR, or --ir DIR --vi DIR)")
    from ..distributed import fs as _fs

    urls = _fs.any_url(ir_dir, vi_dir, pairs_dir, output)
    if _fs.any_url(ir, vi) or (urls and (video or not folder_mode)):
        raise InputError(
            "URLs name folders: --pairs, --ir/--vi and -o of folder mode (one pair, --video: paths)"
        )
    if urls:
        _fs.require_pyarrow()
    ir, vi = (None if x is None else Path(x) for x in (ir, vi))
    target: Any = output if urls else Path(output)  # a URL stays a string (a Path mangles s3://)
    from .video import make_alignment, registration_note, run_video

    align = make_alignment(register, transform, model, min_confidence, task, max_inconsistency)
    if video and (folder_mode or ir is None or vi is None):
        raise InputError("--video takes IR VI: two video files or two image-sequence folders")
    if folder_mode == (ir is not None or vi is not None):
        raise InputError("give either IR and VI files, or --ir DIR --vi DIR, or --pairs DIR")
    if video:
        from ..video import refuse_video_output

        refuse_video_output(target, ir, vi)
    elif not folder_mode:
        if ir is None or vi is None:
            raise InputError("single-pair mode needs both IR and VI files")
        api.refuse_input_as_output(target, (ir, vi))
        if target.exists() and not overwrite:
            raise InputError(f"{target} exists; pass --overwrite to replace it")
    elif urls:  # listed, read and written through pyarrow's file systems
        scan = _fs.discover(ir_dir, vi_dir, pairs_dir, task=task)
        target = _fs.Location.of(target)
        _fs.refuse_output_folder_in_inputs(target, scan.folders)
    else:
        from ..data.pairs import discover

        scan = discover(ir_dir, vi_dir, pairs_dir, task=task)
        if scan.folders is not None:
            api.refuse_output_folder_in_inputs(target, scan.folders)
    options = parse_params(param)
    if rule is not None:
        options["rule"] = rule
    if folder_mode:
        from ..distributed import FuseSpec

        spec = FuseSpec(
            method, task=task, stretch16=stretch, backend=backend, precision=precision, device=device,
            options=tuple(sorted(options.items())), align=align,
        )  # fmt: skip
        if ray_engine is not None:  # the workers build the method; here its name and options are checked
            from ..methods import registry

            registry.check_task(method, task)
            registry.check_options(method, options)
            _fuse_folders(
                spec, None, target, scan, overwrite, bit_depth, ext, resume=resume, engine=ray_engine
            )
            return
    pipeline = api.load(
        method, task=task, stretch16=stretch, backend=backend, precision=precision, device=device, **options
    )
    if video:
        run_video(
            pipeline, ir, vi, target, align=align, batch_size=batch_size, codec=codec, fps=fps, ext=ext,
            overwrite=overwrite, max_frames=max_frames, out=out, err=err,
        )  # fmt: skip
        return
    pipeline.align = align
    if not folder_mode:
        path = pipeline.fuse_files(ir, vi, target, bit_depth=bit_depth)
        how = f" ({pipeline.backend})" if pipeline.info.family != "classical" else ""
        how += registration_note(pipeline.last_registration)
        out.print(
            f"fused [bold]{ir.name}[/bold] + [bold]{vi.name}[/bold] with {pipeline.info.name}{how} -> {path}",
            highlight=False,
        )
        return
    _fuse_folders(spec, pipeline, target, scan, overwrite, bit_depth, ext, batch_size, workers, resume=resume)


def _fuse_folders(
    spec, pipeline, output, scan, overwrite, bit_depth, ext, batch_size=1, workers=0, *, resume=False,
    engine=None,
) -> None:  # fmt: skip
    from ..distributed import fuse_folder

    for line in scan.problems():
        err.print(f"[yellow]skipped:[/yellow] {line}", highlight=False, soft_wrap=True)
    if not scan.pairs:
        raise InputError("no pairs found (infrared and visible files are matched by file stem)")
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    name = pipeline.info.name if pipeline is not None else spec.method
    where = " on Ray" if engine is not None else ""
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(f"fusing with {name}{where}", total=len(scan.pairs))
        for res in fuse_folder(
            spec, scan.pairs, output, ext=ext, bit_depth=bit_depth, overwrite=overwrite, resume=resume,
            engine=engine, pipeline=pipeline, batch_size=batch_size, workers=workers or None,
        ):  # fmt: skip
            results.append(res)
            for w in res.warnings:
                progress.console.print(f"[yellow]warning:[/yellow] {w}", highlight=False, soft_wrap=True)
            if res.status == "failed":
                progress.console.print(
                    f"[red]failed:[/red] {res.stem}: {res.reason}", highlight=False, soft_wrap=True
                )
            progress.advance(task)
    counts = {s: sum(r.status == s for r in results) for s in ("fused", "skipped", "failed")}
    counts["skipped"] += len(scan.problems())
    out.print(
        f"{counts['fused']} fused, {counts['skipped']} skipped, {counts['failed']} failed -> {output}",
        highlight=False,
    )
    if counts["failed"]:
        raise typer.Exit(1)


@command("methods")
def methods_command(
    name: Annotated[
        str | None, typer.Argument(help="One method: its options, tasks, and how its weights were trained.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every fusion method: family, paper, and whether trained weights are shipped; with a
    NAME, that method in full (its options for -p KEY=VALUE, tasks, weights' training, ablations)."""
    if name is not None:
        from ..methods import registry

        info = registry.info(name)
        if as_json:
            typer.echo(json.dumps(info.as_dict(), indent=2))
        else:
            out.print(_method_table(info.as_dict()))
        return
    infos = api.list_methods()
    if as_json:
        typer.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    table = Table(title="ivfuse methods")
    for col in ("name", "family", "paper", "weights"):
        table.add_column(col, overflow="fold")
    for i in infos:
        name = i.name + (" (default)" if i.name == api.DEFAULT_METHOD else "")
        table.add_row(name, i.family, i.paper, i.weights_status)
    out.print(table)


def _method_table(d: dict[str, Any]) -> Table:
    """``ivfuse methods NAME``: one method's metadata as a two-column table."""
    table = Table(title=f"{d['name']} ({d['family']})", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("paper", d["paper"])
    table.add_row("tasks", ", ".join(d["tasks"]))
    options = ", ".join(f"{k}={v}" for k, v in d["options"].items()) or "none"
    table.add_row("options (-p KEY=VALUE)", options)
    table.add_row("weights", d["weights_status"])
    t = d.get("weights_training")
    if t:
        parts = [str(t["data"]) + (f", {t['pairs']} samples" if t.get("pairs") else "")]
        if "epochs" in t:  # a card written by ivfuse's trainer has them; another may not
            recipe = f" of the recipe's {t['recipe_epochs']}" if "recipe_epochs" in t else ""
            parts.append(f"{t['epochs']} epochs{recipe}")
        if "iterations_all_stages" in t:
            parts.append(f"{t['iterations_all_stages']:,} iterations in all")
        parts += [f"{k} {t[k]}" for k in ("precision", "seed") if k in t]
        table.add_row("weights' training", "; ".join(parts))
        devs = t.get("deviations_from_recipe") or {}
        if devs:
            table.add_row(
                "deviations from the recipe",
                ", ".join(f"{k} {v.get('used')} (recipe {v.get('recipe')})" for k, v in devs.items()),
            )
    if d["trainable"]:
        table.add_row("train", f"ivfuse train {d['name']} --data DIR --out RUN")
    if d["ablations"]:
        rows = ", ".join(f"{a['name']} ({a['table']}: {a['row']})" for a in d["ablations"])
        table.add_row("ablations (--ablation NAME)", rows)
    if d["paper_tables"]:
        table.add_row("paper's tables", f"ivfuse bench --paper {d['name']} --out DIR")
    return table


@command("demo")
def demo_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the demo images.")] = Path(
        "ivfuse-demo"
    ),
    method: MethodOpt = api.DEFAULT_METHOD,
    height: Annotated[int, typer.Option(help="Scene height in pixels.")] = 360,
    width: Annotated[int, typer.Option(help="Scene width in pixels.")] = 480,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic scene.")] = 0,
) -> None:
    """Fuse the built-in synthetic night scene; write ir/vi/fused PNGs and a side-by-side figure."""
    from ..demo import run_demo

    result = run_demo(output, method=method, height=height, width=width, seed=seed)
    out.print(f"wrote {', '.join(p.name for p in result.files)} to {output}", highlight=False)
    table = Table(title=f"{method} on the synthetic night scene")
    table.add_column("metric")
    table.add_column("IR", justify="right")
    table.add_column("VI", justify="right")
    table.add_column("fused", justify="right")
    for name, row in result.metrics.items():
        table.add_row(name, *(f"{row[k]:.3f}" for k in ("ir", "vi", "fused")))
    out.print(table)


def main() -> None:
    """Console-script entry point."""
    app()


def _register_optional() -> None:
    # Commands that live in their own modules.
    for module, attr, name in (
        ("eval", "eval_command", "eval"),
        ("train", "train_command", "train"),
        ("bench", "bench_command", "bench"),
        ("export", "export_command", "export"),
        ("register", "register_command", "register"),
    ):
        try:
            mod = __import__(f"{__name__}.{module}", fromlist=[attr])
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
            continue
        app.command(name)(friendly(getattr(mod, attr)))


_register_optional()
