"""The figure of docs/real-rig.md: the synthetic rig before and after registration, and fused.

    python scripts/make_rig_figure.py            # -> docs/img/rig_registration.png

Made from :func:`ivfuse.data.rig.synthetic_rig` only (no data set), so the PNG may be committed.
Overlay colours: infrared in magenta (red + blue), visible luma in green: aligned structure is gray,
misaligned edges show magenta and green fringes.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import ivfuse
from ivfuse.data.rig import synthetic_rig
from ivfuse.io import atomic_write
from ivfuse.register import register


def overlay(ir: np.ndarray, vi_gray: np.ndarray) -> np.ndarray:
    return np.stack([ir, vi_gray, ir], axis=-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img/rig_registration.png"))
    ap.add_argument("--frame", type=int, default=6)
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rig = synthetic_rig(12, 240, 320, ir_size=(256, 200))
    ir, vi = rig.ir[args.frame], rig.vi[args.frame]
    vi_gray = cv2.cvtColor(vi, cv2.COLOR_RGB2GRAY)
    naive = cv2.resize(ir, (vi.shape[1], vi.shape[0]), interpolation=cv2.INTER_LINEAR)
    reg = register(ir, vi, "similarity")
    fused = ivfuse.load("lp").fuse(reg.warped, vi)

    panels = [
        (ir, f"infrared camera, {ir.shape[1]}x{ir.shape[0]}", "gray"),
        (vi, f"visible camera, {vi.shape[1]}x{vi.shape[0]}", None),
        (overlay(naive, vi_gray), "before: resized only", None),
        (overlay(reg.warped, vi_gray), f"after: registered (confidence {reg.confidence:.2f})", None),
        (fused, "fused (lp)", None),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 2.7), dpi=90)
    for ax, (img, title, cmap) in zip(axes, panels, strict=True):
        ax.imshow(img, cmap=cmap, vmin=0, vmax=255 if img.dtype == np.uint8 else 1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    # a 256-colour palette keeps the committed PNG small
    img = Image.open(buf).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    with atomic_write(args.out) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
