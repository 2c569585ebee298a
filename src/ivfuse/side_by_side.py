"""Side-by-side comparison images (IR | VI | fused ...) of ``ivfuse demo``, made with Pillow only.

(The benchmark's matplotlib figures are :mod:`ivfuse.bench.figures`.)"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .io import from_unit


def side_by_side(panels: list[tuple[str, np.ndarray]], *, gap: int = 4, label_height: int = 22) -> np.ndarray:
    """Place float [0, 1] images (gray or RGB, equal height) in a row with a label above each.

    Returns a uint8 RGB array.
    """
    h = max(p.shape[0] for _, p in panels)
    width = sum(p.shape[1] for _, p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (width, h + label_height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=max(10, label_height - 8))
    except TypeError:  # Pillow < 10.1 has a single bitmap size
        font = ImageFont.load_default()
    x = 0
    for label, img in panels:
        rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=-1)
        canvas.paste(Image.fromarray(from_unit(rgb)), (x, label_height))
        draw.text((x + 4, 3), label, fill=(0, 0, 0), font=font)
        x += img.shape[1] + gap
    return np.asarray(canvas)
