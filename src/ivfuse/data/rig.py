"""A synthetic camera rig: the demo night scene as a short infrared + visible video, unaligned.

The visible camera sees :func:`ivfuse.data.synthetic.night_scene` at ``width`` x ``height`` with two
moving targets (a person walking right through the smoke, a warm ball falling on the left) that are
bright in the infrared and faint in the visible image. The infrared camera sees the same scene at
another resolution (``ir_size``), rotated by ``angle`` degrees, scaled and shifted: ``matrix`` maps
an infrared pixel to the visible pixel grid (the convention of :mod:`ivfuse.register`). Used by the
tests of :mod:`ivfuse.video`, by the figure of the "real rig" documentation page and for demos.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .synthetic import night_scene


@dataclass(frozen=True)
class Rig:
    """Frames of the synthetic rig: ``ir`` (uint8 (h, w) at ``ir_size``), ``vi`` (uint8 RGB (H, W, 3)),
    and ``matrix``, the true infrared-pixel -> visible-pixel homography."""

    ir: list[np.ndarray]
    vi: list[np.ndarray]
    matrix: np.ndarray
    ir_aligned: list[np.ndarray]  # the infrared frames on the visible grid (ground truth), uint8


def rig_matrix(
    vi_size: tuple[int, int], ir_size: tuple[int, int], angle: float, scale: float, shift: tuple[float, float]
) -> np.ndarray:
    """Infrared pixel -> visible pixel: resample to the visible size, then rotate by ``angle``
    degrees and scale by ``scale`` about the centre, then shift by ``shift`` (x, y) visible pixels."""
    (vw, vh), (iw, ih) = vi_size, ir_size
    resample = np.diag([vw / iw, vh / ih, 1.0])
    c = np.array([[1, 0, -(vw - 1) / 2], [0, 1, -(vh - 1) / 2], [0, 0, 1]], dtype=np.float64)
    a = np.deg2rad(angle)
    rs = np.array(
        [[scale * np.cos(a), -scale * np.sin(a), 0], [scale * np.sin(a), scale * np.cos(a), 0], [0, 0, 1]]
    )
    back = np.array([[1, 0, (vw - 1) / 2 + shift[0]], [0, 1, (vh - 1) / 2 + shift[1]], [0, 0, 1]])
    # pixel centres: x_vi + 0.5 = (x_ir + 0.5) * vw / iw
    half = np.array([[1, 0, 0.5 * vw / iw - 0.5], [0, 1, 0.5 * vh / ih - 0.5], [0, 0, 1]])
    return back @ rs @ c @ half @ resample


def synthetic_rig(
    frames: int = 12,
    height: int = 192,
    width: int = 256,
    *,
    ir_size: tuple[int, int] = (200, 160),
    angle: float = 3.0,
    scale: float = 1.06,
    shift: tuple[float, float] = (5.0, -4.0),
    step: float = 4.0,
    seed: int = 0,
) -> Rig:
    """Render ``frames`` frames of the rig (see the module docstring); targets move ``step`` visible
    pixels per frame. Deterministic for equal arguments."""
    scene = night_scene(height, width, seed=seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    m = rig_matrix((width, height), ir_size, angle, scale, shift)
    irs, vis, aligned = [], [], []
    for k in range(frames):
        ir = scene.ir.copy()
        vi = scene.vi.copy()
        # a person walking right through the smoke
        cx, cy = 0.52 * width + step * k, 0.70 * height
        person = ((xx - cx) / (0.02 * width)) ** 2 + ((yy - cy) / (0.08 * height)) ** 2 <= 1
        # a warm ball falling on the left
        bx, by = 0.15 * width, 0.25 * height + 0.75 * step * k
        ball = (xx - bx) ** 2 + (yy - by) ** 2 <= (0.035 * width) ** 2
        for mask, warm, seen in ((person, 0.9, 0.04), (ball, 0.8, 0.25)):
            soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)
            ir = ir * (1 - soft) + warm * soft
            vi = vi + seen * soft[..., None]
        ir8 = np.floor(np.clip(ir, 0, 1) * 255 + 0.5).astype(np.uint8)
        vi8 = np.floor(np.clip(vi, 0, 1) * 255 + 0.5).astype(np.uint8)
        cam = cv2.warpPerspective(
            ir8, m, ir_size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101
        )
        irs.append(cam)
        vis.append(vi8)
        aligned.append(ir8)
    return Rig(irs, vis, m, aligned)
