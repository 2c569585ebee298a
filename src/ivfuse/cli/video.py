"""The video and registration parts of ``ivfuse fuse`` and ``ivfuse eval --video``: option checks,
the progress bar and the report lines. The work is in :mod:`ivfuse.video`, :mod:`ivfuse.register`
and :mod:`ivfuse.metrics.temporal`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ..errors import InputError
from .register import DEFAULT_MIN_CONFIDENCE


def make_alignment(
    register: bool,
    transform: Path | None,
    model: str | None,
    min_confidence: float | None,
    task: str,
    max_inconsistency: float | None = None,
) -> Any:
    """The :class:`ivfuse.register.Alignment` that ``--register`` / ``--transform`` ask for, or None."""
    from ..register import Alignment

    if register and transform is not None:
        raise InputError("give --register (estimate) or --transform T.json (apply a saved one), not both")
    if not register and (model is not None or min_confidence is not None or max_inconsistency is not None):
        raise InputError("--model, --min-confidence and --max-inconsistency go with --register")
    if not register and transform is None:
        return None
    if task != "ivif":
        raise InputError("--register and --transform are for infrared-visible pairs (--task ivif)")
    if transform is not None:
        return Alignment(transform=transform)
    return Alignment(
        model=model or "homography",
        min_confidence=DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence,
        max_inconsistency=max_inconsistency,
    )


def registration_note(reg: Any) -> str:
    """`` (registered: similarity, confidence 0.41)`` for a report line; empty without one."""
    if reg is None:
        return ""
    conf = "" if math.isnan(reg.confidence) else f", confidence {reg.confidence:.3f}"
    return f" (registered: {reg.model}{conf})"


class FramesPerSecond(ProgressColumn):
    """Processing speed of a progress task in frames per second."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text("– frames/s" if speed is None else f"{speed:.1f} frames/s")


def run_video(
    pipeline: Any,
    ir: Path,
    vi: Path,
    output: Path,
    *,
    align: Any,
    batch_size: int,
    codec: str | None,
    fps: float | None,
    ext: str,
    overwrite: bool,
    max_frames: int | None,
    out: Console,
    err: Console,
) -> None:
    """``ivfuse fuse --video``: :func:`ivfuse.video.fuse_video` with a progress bar and one report line."""
    from ..video import fuse_video

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        FramesPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(f"fusing video with {pipeline.info.name}", total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        res = fuse_video(
            pipeline,
            ir,
            vi,
            output,
            align=align,
            batch_size=batch_size,
            codec=codec,
            fps=fps,
            ext=ext,
            overwrite=overwrite,
            max_frames=max_frames,
            progress=update,
        )
    what = f"{res.codec}, {float(res.fps):g} fps" if res.kind == "video" else f"{ext} images"
    device = getattr(pipeline, "device", "cpu")
    how = f" ({pipeline.backend}, {device})" if pipeline.info.family != "classical" else ""
    out.print(
        f"fused {res.frames} frames of [bold]{ir.name}[/bold] + [bold]{vi.name}[/bold] with "
        f"{pipeline.info.name}{how}{registration_note(res.registration)} -> {res.output} "
        f"({res.size[0]}x{res.size[1]}, {what}; {res.frames_per_second:.1f} frames/s)",
        highlight=False,
    )


def eval_video(
    fused: Path,
    ir: Path,
    vi: Path,
    *,
    transform: Path | None,
    flow: str,
    max_frames: int | None,
    json_path: Path | None,
    out: Console,
) -> None:
    """``ivfuse eval --video FUSED IR VI``: flicker and motion-compensated flicker, a table and JSON."""
    from ..io import atomic_write_text, same_file
    from ..video import video_consistency

    if json_path is not None and any(same_file(json_path, p) for p in (fused, ir, vi)):
        raise InputError(f"--json {json_path} is one of the videos")
    r = video_consistency(fused, ir, vi, transform=transform, flow=flow, max_frames=max_frames)
    doc = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.as_dict().items()}
    doc = {"fused": str(fused), "ir": str(ir), "vi": str(vi), **doc}
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n")
    table = Table(title=f"temporal consistency of {fused.name} ({r.frames} frames)")
    table.add_column("measure")
    table.add_column("better")
    table.add_column("value", justify="right")
    rows = [
        ("flicker", "↓", r.flicker),
        (f"flicker, motion-compensated ({r.flow})", "↓", r.flicker_mc),
        ("frame change, fused", "", r.change_fused),
        ("frame change, infrared", "", r.change_ir),
        ("frame change, visible", "", r.change_vi),
        ("frame change, max(IR, VI) per pixel", "", r.change_bound),
    ]
    for name, arrow, v in rows:
        table.add_row(name, arrow, "–" if v is None else f"{v:.4f}")
    out.print(table)
