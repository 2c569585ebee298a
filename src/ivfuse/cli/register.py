"""``ivfuse register``: warp an infrared image onto the visible image's grid (see ivfuse.register)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from ..errors import InputError

out = Console()

#: refuse a registration below this structural correlation. Measured on the registration benchmark
#: (docs/registration.md): 0.2 refuses 3 of 73 good pairs and passes 10 of 23 failures; 0.1 refused no
#: good pair but passed 16 of the 23 failures. A refused pair costs a rerun with a lower threshold, a
#: passed failure a misregistered fusion that looks like a result.
DEFAULT_MIN_CONFIDENCE = 0.2


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def register_command(
    ir: Annotated[Path, typer.Argument(help="Infrared image (any size).")],
    vi: Annotated[Path, typer.Argument(help="Visible image: the grid the infrared image is warped onto.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Warped infrared image to write.")],
    model: Annotated[
        str, typer.Option("--model", help="translation, similarity, affine or homography.")
    ] = "homography",
    save_transform: Annotated[
        Path | None,
        typer.Option("--save-transform", help="Also write the transform as JSON."),
    ] = None,
    min_confidence: Annotated[
        float,
        typer.Option(
            "--min-confidence",
            help="Refuse (exit 2, write nothing) below this structural correlation (0-1).",
        ),
    ] = DEFAULT_MIN_CONFIDENCE,
    max_inconsistency: Annotated[
        float | None,
        typer.Option(
            "--max-inconsistency",
            help="Also register VI back onto IR from the result and refuse (exit 2, write nothing) when "
            "the two disagree by more than this many visible pixels at the corners (about 1.3x the time).",
        ),
    ] = None,
    ir_mask: Annotated[
        Path | None,
        typer.Option(
            "--ir-mask",
            help="Image of the infrared size: match only where it is nonzero (e.g. hide a burnt-in overlay).",
        ),
    ] = None,
    vi_mask: Annotated[
        Path | None,
        typer.Option("--vi-mask", help="Image of the visible size: match only where it is nonzero."),
    ] = None,
) -> None:
    """Register IR onto VI (structure-based, robust to inverted contrast) and write the warped IR."""
    from .. import io
    from ..register import MODELS, RegistrationError, register
    from ..register import save_transform as save

    if model not in MODELS:
        raise InputError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    targets = [output] + ([save_transform] if save_transform is not None else [])
    for target in targets:
        for src in (ir, vi):
            if _same_file(target, src):
                raise InputError(f"{target}: refusing to overwrite the input image {src}")
    if save_transform is not None and _same_file(save_transform, output):
        raise InputError("--save-transform and --output name the same file")
    ext = output.suffix.lower()
    if ext not in io.IMAGE_EXTENSIONS:
        raise InputError(f"{output}: unsupported output format {ext!r}")
    ir_img = io.read_image(ir)
    vi_img = io.read_image(vi)
    masks = {}
    for key, path in (("ir_mask", ir_mask), ("vi_mask", vi_mask)):
        if path is not None:
            masks[key] = io.read_image(path)
    if max_inconsistency is not None and not max_inconsistency >= 0:
        raise InputError(f"--max-inconsistency must be >= 0, got {max_inconsistency}")
    reg = register(ir_img, vi_img, model, check=max_inconsistency is not None, **masks)
    if reg.confidence < min_confidence:
        raise RegistrationError(
            f"registration confidence {reg.confidence:.3f} is below --min-confidence {min_confidence:g}; "
            "nothing written"
        )
    if max_inconsistency is not None and not reg.consistency <= max_inconsistency:
        raise RegistrationError(
            f"forward and backward registration disagree by {reg.consistency:.2f} px, more than "
            f"--max-inconsistency {max_inconsistency:g}; nothing written"
        )
    warped = reg.warped
    assert warped is not None
    if warped.dtype == np.uint16 and ext in (".png", ".tif", ".tiff"):
        bits = 16
    else:
        bits = 8
    if warped.dtype.kind == "f":
        warped = io.to_unit(warped)
    path = io.write_image(output, warped, bit_depth=bits)
    if save_transform is not None:
        save(reg, save_transform)
    out.print(
        f"registered [bold]{ir.name}[/bold] onto [bold]{vi.name}[/bold] ({model}, confidence "
        f"{reg.confidence:.3f}, overlap {100 * reg.overlap:.0f} %"
        + (f", consistency {reg.consistency:.2f} px" if np.isfinite(reg.consistency) else "")
        + f") -> {path}"
        + (f", transform -> {save_transform}" if save_transform is not None else ""),
        highlight=False,
    )
