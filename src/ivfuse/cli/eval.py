"""``ivfuse eval``: fusion quality metrics of a folder of fused images.

Fused images are matched to their infrared/visible pair by file stem: ``<stem><suffix>.<ext>``
in ``--fused`` goes with ``<stem>.*`` in ``--ir`` and ``--vi`` (``--suffix _GTF`` for VIFB's
``kettle_GTF.jpg``; files without the suffix, e.g. other methods' outputs, are ignored with a
note). Unmatched fused files (no pair with their stem) and mismatched ones (sizes differ,
unreadable) are reported one line each; the others are still evaluated.

Multi-exposure pairs (profile ``mefb``): ``--a`` (under-exposed) and ``--b`` (over-exposed) name
the two source folders in MEFB's order, or ``--pairs DIR`` takes ``DIR/under`` + ``DIR/over``
(``DIR/a`` + ``DIR/b`` for other two-source sets, ``DIR/ir`` + ``DIR/vi`` for infrared-visible
ones). The first folder is the profile's first source (``evaluate(fused, a, b)``).

Exit status: 0 when every fused image was evaluated, 1 when some failed or were unmatched, 2 when
the input is unusable as a whole (missing folder, unknown metric or profile, nothing to do).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..data.pairs import by_stem, list_images, source_folders
from ..errors import InputError, IvfuseError
from ..io import atomic_write, atomic_write_text, same_file
from ..metrics import evaluate, get_profile, list_metrics, resolve_metrics
from ..metrics.registry import PROFILES
from . import AddressOpt, CpusOpt, EngineOpt

_out = Console()
_err = Console(stderr=True)


@dataclass
class Job:
    """One fused image with its sources."""

    name: str  # the pair stem
    fused: Path
    ir: Path
    vi: Path
    gt: Path | None = None


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unmatched / ambiguous fused files
    notes: list[str] = field(default_factory=list)  # sources without a fused image


def _locations(*given: str | None) -> list[Any]:
    """The folder and file options as :class:`~pathlib.Path` objects, or all as
    :class:`~ivfuse.distributed.fs.Location` objects when one of them is a URL (a plain path among
    them: the local file system); one line, exit 2, for a URL without pyarrow."""
    from ..distributed import fs

    if not fs.any_url(*given):
        return [None if x is None else Path(x) for x in given]
    fs.require_pyarrow()
    return [None if x is None else fs.Location.of(x) for x in given]


def _list_images(folder: Any, option: str) -> list[Any]:
    from ..distributed import fs

    return fs.list_images(folder, option) if isinstance(folder, fs.Location) else list_images(folder, option)


def _by_stem(folder: Path, option: str) -> tuple[dict[str, Path], set[str]]:
    """(stem -> file, ambiguous stems) of one folder (:mod:`ivfuse.data.pairs`)."""
    unique, ambiguous = by_stem(_list_images(folder, option))
    return unique, {f.stem for f in ambiguous}


def plan_jobs(
    ir_dir: Path,
    vi_dir: Path,
    fused_dir: Path,
    suffix: str = "",
    gt_dir: Path | None = None,
    roles: tuple[str, str] = ("infrared", "visible"),
) -> Plan:
    """Match every fused image to its IR/VI pair (and ground truth) by stem (``roles``: the
    names of the two sources in messages, e.g. the profile's ``sources``)."""
    ir_label = "--ir" if roles[0] == "infrared" else "source folder"
    vi_label = "--vi" if roles[1] == "visible" else "source folder"
    ir, amb_ir = _by_stem(ir_dir, ir_label)
    vi, amb_vi = _by_stem(vi_dir, vi_label)
    same = ir_dir.same_place(vi_dir) if hasattr(ir_dir, "same_place") else same_file(ir_dir, vi_dir)
    if same:
        raise InputError(f"{ir_label} {ir_dir} and {vi_label} {vi_dir} are the same folder")
    gt, amb_gt = _by_stem(gt_dir, "--gt") if gt_dir is not None else ({}, set())
    fused_files = _list_images(fused_dir, "--fused")
    plan = Plan()
    used: set[str] = set()
    stems_seen: dict[str, Path] = {}
    skipped = 0
    for f in fused_files:
        stem = f.stem
        if suffix:
            if not stem.endswith(suffix) or len(stem) == len(suffix):
                skipped += 1  # another method's output in a shared folder (VIFB layout)
                continue
            stem = stem[: -len(suffix)]
        if stem in stems_seen:
            plan.problems.append(f"{f}: several fused files for the pair {stem!r} ({stems_seen[stem].name})")
            continue
        stems_seen[stem] = f
        missing = [
            what
            for what, table, amb in ((roles[0], ir, amb_ir), (roles[1], vi, amb_vi))
            if stem not in table or stem in amb
        ]
        if gt_dir is not None and (stem not in gt or stem in amb_gt):
            missing.append("ground-truth")
        if missing:
            plan.problems.append(f"{f}: no {' and no '.join(missing)} image with the stem {stem!r}")
            continue
        used.add(stem)
        plan.jobs.append(Job(stem, f, ir[stem], vi[stem], gt.get(stem)))
    if skipped:
        plan.notes.append(f"{skipped} file(s) in {fused_dir} without the suffix {suffix!r} ignored")
    for stem in sorted((ir.keys() & vi.keys()) - used):
        plan.notes.append(f"pair {stem!r} has no fused image in {fused_dir}")
    return plan


def _run_job(job: Job, metrics: list[str], profile: str) -> tuple[str, dict[str, float] | None, str | None]:
    """Evaluate one job; errors a user can cause come back as a message, not an exception."""
    from ..distributed.fs import Location

    if isinstance(job.fused, Location):
        return _run_job_at(job, metrics, profile)
    try:
        vals = evaluate(job.fused, job.ir, job.vi, metrics=metrics, profile=profile, reference=job.gt)
        return job.name, vals, None
    except IvfuseError as exc:
        return job.name, None, f"{job.fused}: {exc}"


def _run_job_at(
    job: Job, metrics: list[str], profile: str
) -> tuple[str, dict[str, float] | None, str | None]:
    """:func:`_run_job` of a job whose files are URLs: on local copies in a temporary folder (the
    same values), with messages that name the URLs."""
    import tempfile

    names: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="ivfuse-") as tmp:
        local: dict[str, Path | None] = {}
        for role in ("fused", "ir", "vi", "gt"):
            src = getattr(job, role)
            if src is None:
                local[role] = None
                continue
            dst = Path(tmp) / role / src.name
            dst.parent.mkdir()
            try:
                dst.write_bytes(src.read_bytes())
            except (OSError, ValueError) as exc:
                return job.name, None, f"{src}: cannot read ({str(exc).strip().splitlines()[0]})"
            names[str(dst)] = str(src)
            local[role] = dst
        name, vals, msg = _run_job(Job(job.name, **local), metrics, profile)  # type: ignore[arg-type]
    for copy, url in names.items():
        msg = msg.replace(copy, url) if msg else msg
    return name, vals, msg


def _summary(rows: list[tuple[str, dict[str, float]]], names: list[str]) -> tuple[dict, dict]:
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for n in names:
        vals = np.array([r[n] for _, r in rows], dtype=np.float64)
        mean[n] = float(np.mean(vals)) if vals.size else math.nan
        std[n] = float(np.std(vals)) if vals.size else math.nan  # population std over images
    return mean, std


def _json_num(v: float) -> float | None:
    return None if (isinstance(v, float) and not math.isfinite(v)) else v


def resolve_sources(
    ir: Path | None, vi: Path | None, a: Path | None, b: Path | None, pairs: Path | None
) -> tuple[Path, Path]:
    """The two source folders in evaluate()'s order (IR, VI for vifb; A, B for mefb)."""
    given = [n for n, v in (("--ir/--vi", ir or vi), ("--a/--b", a or b), ("--pairs", pairs)) if v]
    if len(given) > 1:
        raise InputError(f"give the sources one way only, not {' and '.join(given)}")
    if pairs is not None:
        if not pairs.is_dir():
            raise InputError(f"--pairs {pairs}: folder not found")
        try:
            if not isinstance(pairs, Path):  # a URL (ivfuse.distributed.fs.Location)
                from ..distributed import fs

                return fs.source_folders(pairs)
            return source_folders(pairs)
        except InputError as exc:
            raise InputError(f"--pairs {exc}") from None
    if a is not None or b is not None:
        if a is None or b is None:
            raise InputError("--a and --b are both required")
        return a, b
    if ir is None or vi is None:
        raise InputError("--ir, --vi and --fused folders are all required (or --a/--b, --pairs, or --list)")
    return ir, vi


def _print_list() -> None:
    for prof in PROFILES.values():
        table = Table(title=f"profile {prof.name}: {prof.description}", show_lines=False)
        for col in ("metric", "family", "better", "needs", "default", "definition source"):
            table.add_column(col, overflow="fold")
        for m in list_metrics(prof.name):
            table.add_row(
                m.name,
                m.family,
                m.direction,
                m.needs,
                "yes" if m.name in prof.default else "",
                m.source,
            )
        _out.print(table)


def eval_command(
    ir: Annotated[str | None, typer.Option("--ir", help="Folder (or URL) of infrared images.")] = None,
    vi: Annotated[str | None, typer.Option("--vi", help="Folder (or URL) of visible images.")] = None,
    fused: Annotated[
        str | None,
        typer.Option("--fused", help="Folder of fused images, or a URL (s3://, gs://, file://...; pyarrow)."),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics", "-m", help="Comma-separated metric names, or 'all' (default: the profile's set)."
        ),
    ] = None,
    a: Annotated[
        str | None, typer.Option("--a", help="Folder of first sources (MEF: under-exposed, MEFB's _A).")
    ] = None,
    b: Annotated[
        str | None, typer.Option("--b", help="Folder of second sources (MEF: over-exposed, MEFB's _B).")
    ] = None,
    pairs: Annotated[
        str | None,
        typer.Option("--pairs", help="Folder with under/ + over/ (or a/ + b/, ir/ + vi/) sub-folders."),
    ] = None,
    profile: Annotated[
        str, typer.Option("--profile", help="Metric conventions: vifb, ma2019 or mefb.")
    ] = "vifb",
    workers: Annotated[int, typer.Option("--workers", "-j", help="Parallel worker processes.")] = 1,
    csv_path: Annotated[
        str | None, typer.Option("--csv", help="Write per-image values to this CSV file.")
    ] = None,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write values, mean and std to this JSON file.")
    ] = None,
    suffix: Annotated[
        str, typer.Option("--suffix", help="Suffix of fused file stems, e.g. _GTF for <stem>_GTF.jpg.")
    ] = "",
    gt: Annotated[
        str | None, typer.Option("--gt", help="Folder of ground-truth images (PSNR_REF, SSIM_REF).")
    ] = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="List every metric of every profile with its definition and exit.")
    ] = False,
    video: Annotated[
        tuple[Path, Path, Path] | None,
        typer.Option(
            "--video",
            metavar="FUSED IR VI",
            help="Temporal consistency of a fused video (or image folder) against its source videos: "
            "flicker and motion-compensated flicker (--json writes them).",
        ),
    ] = None,
    transform: Annotated[
        Path | None,
        typer.Option(
            "--transform", help="--video: warp infrared frames onto the visible grid with this transform."
        ),
    ] = None,
    flow: Annotated[
        str,
        typer.Option("--flow", help="--video: optical flow of the motion compensation, dis or farneback."),
    ] = "dis",
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", help="--video: only the first N frames.")
    ] = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    cpus_per_worker: CpusOpt = None,
) -> None:
    """Evaluate fused images against their infrared/visible pairs (matched by file stem), or a fused
    video against its source videos (--video FUSED IR VI).

    --engine ray scores the images on a Ray cluster (--workers: its workers, default one per CPU),
    with the same values, tables, files and exit codes."""
    try:
        from ..distributed import make_engine

        ray_engine = make_engine(
            engine, address=address, workers=workers if workers != 1 else None,
            cpus_per_worker=cpus_per_worker,
        )  # fmt: skip
        if ray_engine is not None and (video is not None or list_only):
            raise InputError("--engine ray scores folders of fused images, not --video or --list")
        if video is not None:
            from .video import eval_video

            if any(x is not None for x in (ir, vi, fused, a, b, pairs, csv_path)):
                raise InputError("--video FUSED IR VI takes no --ir/--vi/--fused/--a/--b/--pairs/--csv")
            eval_video(
                *video, transform=transform, flow=flow, max_frames=max_frames,
                json_path=None if json_path is None else Path(json_path), out=_out,
            )  # fmt: skip
            return
        ir, vi, fused, a, b, pairs, gt, csv_path, json_path = _locations(
            ir, vi, fused, a, b, pairs, gt, csv_path, json_path
        )
        if not list_only:
            ir, vi = resolve_sources(ir, vi, a, b, pairs)
        _eval(
            ir, vi, fused, metrics, profile, workers, csv_path, json_path, suffix, gt, list_only, ray_engine
        )
    except IvfuseError as exc:
        _err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def _eval(
    ir, vi, fused, metrics, profile, workers, csv_path, json_path, suffix, gt, list_only, engine=None
) -> None:
    if list_only:
        _print_list()
        return
    if ir is None or vi is None or fused is None:
        raise InputError("--ir, --vi and --fused folders are all required (or --a/--b, --pairs, or --list)")
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    prof = get_profile(profile)
    infos = resolve_metrics(metrics, prof, has_sources=True, has_reference=gt is not None)
    names = [m.name for m in infos]
    plan = plan_jobs(ir, vi, fused, suffix, gt, prof.sources)
    for line in plan.problems:
        _err.print(f"[red]unmatched:[/red] {line}", highlight=False, soft_wrap=True)
    for line in plan.notes:
        _err.print(f"[yellow]note:[/yellow] {line}", highlight=False, soft_wrap=True)
    if not plan.jobs:
        raise InputError(
            f"no fused image in {fused} matches a pair of {prof.sources[0]}/{prof.sources[1]} images"
            + (f" (suffix {suffix!r})" if suffix else " (use --suffix if the names carry one)")
        )

    results: dict[str, dict[str, float]] = {}
    failures: list[str] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=_err, transient=False) as progress:
        task = progress.add_task(f"evaluating ({prof.name})", total=len(plan.jobs))

        def handle(name: str, vals: dict[str, float] | None, msg: str | None) -> None:
            if vals is None:
                failures.append(msg or name)
                progress.console.print(f"[red]failed:[/red] {msg}", highlight=False, soft_wrap=True)
            else:
                results[name] = vals
            progress.advance(task)

        n_workers = min(workers, len(plan.jobs), os.cpu_count() or 1)
        if engine is not None:
            from ..distributed import each

            unit = functools.partial(_run_job, metrics=names, profile=prof.name)  # the local unit
            for res in engine.map(plan.jobs, each(unit)):
                handle(*res)
        elif n_workers <= 1:
            for job in plan.jobs:
                handle(*_run_job(job, names, prof.name))
        else:
            with ProcessPoolExecutor(max_workers=n_workers) as pool:
                futures = [pool.submit(_run_job, job, names, prof.name) for job in plan.jobs]
                for fut in as_completed(futures):
                    handle(*fut.result())

    rows = [(job.name, results[job.name]) for job in plan.jobs if job.name in results]
    mean, std = _summary(rows, names)
    _write_outputs(rows, names, mean, std, prof.name, plan, csv_path, json_path)
    _print_table(rows, infos, mean, std, prof.name)
    n_bad = len(failures) + len(plan.problems)
    _out.print(f"{len(rows)} evaluated, {n_bad} failed or unmatched", highlight=False)
    if not rows:
        raise InputError("no fused image could be evaluated")
    if n_bad:
        raise typer.Exit(1)


def _write_outputs(rows, names, mean, std, profile, plan, csv_path, json_path) -> None:
    fused_of = {j.name: j.fused.name for j in plan.jobs}

    def write_csv(fh: Any) -> None:
        w = csv.writer(fh)
        w.writerow(["name", "fused", *names])
        for name, vals in rows:
            w.writerow([name, fused_of[name], *(repr(vals[n]) for n in names)])

    if csv_path is not None and not isinstance(csv_path, Path):  # a URL: one whole upload
        import io

        from ..distributed.fs import put

        buf = io.StringIO(newline="")
        write_csv(buf)
        csv_path.parent.mkdir()
        put(csv_path, buf.getvalue().encode("utf-8"))
    elif csv_path is not None:
        with atomic_write(csv_path) as tmp, open(tmp, "w", newline="") as fh:
            write_csv(fh)
    if json_path is not None:
        doc: dict[str, Any] = {
            "profile": profile,
            "metrics": names,
            "images": [
                {"name": name, "fused": fused_of[name], "metrics": {n: _json_num(v[n]) for n in names}}
                for name, v in rows
            ],
            "mean": {n: _json_num(v) for n, v in mean.items()},
            "std": {n: _json_num(v) for n, v in std.items()},
        }
        if isinstance(json_path, Path):
            atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n")
        else:  # a URL: one whole upload
            from ..distributed.fs import put

            json_path.parent.mkdir()
            put(json_path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))


def _print_table(rows, infos, mean, std, profile) -> None:
    table = Table(title=f"{len(rows)} image(s), profile {profile}")
    table.add_column("metric")
    table.add_column("better")
    table.add_column("mean ± std", justify="right")
    for m in infos:
        arrow = "↑" if m.direction == "higher" else "↓"
        table.add_row(m.name, arrow, f"{mean[m.name]:.4f} ± {std[m.name]:.4f}")
    _out.print(table)
