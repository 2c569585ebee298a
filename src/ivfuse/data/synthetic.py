"""A deterministic synthetic night scene: the package's own demo and test pair.

The scene mimics the situation infrared-visible fusion is for:

* the **visible** image (colour) shows a textured background - brick building with lit
  windows, a tree line, a paved road with lane marks - under low light, partly veiled by smoke;
* the **infrared** image shows the same layout as smooth temperature fields (thermal images
  carry little fine texture) plus **warm targets** (three people and a car engine) that are
  hidden from the visible camera by darkness and smoke.

Everything is generated from a seeded :class:`numpy.random.Generator`, so the same
arguments always give bit-identical images on every platform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Scene:
    """A synthetic pair with the masks tests use to score fusion.

    Attributes:
        ir: float32 (H, W) in [0, 1], the thermal image.
        vi: float32 (H, W, 3) in [0, 1], the colour visible image.
        targets: bool (H, W), pixels of the warm targets (seen in IR only).
        texture: bool (H, W), background pixels with fine visible texture (seen in VI only).
    """

    ir: np.ndarray
    vi: np.ndarray
    targets: np.ndarray
    texture: np.ndarray


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth noise with unit standard deviation at spatial scale ``sigma`` pixels."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return n / (n.std() + 1e-12)


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def night_scene(height: int = 256, width: int = 320, seed: int = 0) -> Scene:
    """Generate the synthetic night scene (see module docstring).

    Args:
        height, width: image size in pixels (any size >= 32, odd sizes allowed).
        seed: seed of the generator; equal arguments give identical images.
    """
    if height < 32 or width < 32:
        raise ValueError(f"scene must be at least 32x32, got {height}x{width}")
    rng = np.random.default_rng(seed)
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    v, u = yy / h, xx / w  # normalised coordinates

    horizon = 0.55
    sky = v < horizon
    ground = ~sky
    # A building on the left part of the horizon, a tree line on the right.
    building = (u > 0.06) & (u < 0.46) & (v > 0.18) & (v < horizon)
    treeline = (u >= 0.5) & (v > horizon - 0.12 - 0.05 * _noise(rng, (h, w), w / 40)) & sky
    road = ground & (np.abs(u - 0.5) < 0.08 + 0.5 * (v - horizon))

    # ---- visible luminance: textured, low light -------------------------------------------
    lum = np.where(sky, 0.10 + 0.10 * (1 - v / horizon), 0.16)
    brick_rows = (np.floor(yy / max(h // 64, 2)) % 2).astype(bool)
    bricks = (np.floor((xx + brick_rows * max(w // 80, 2)) / max(w // 40, 3)) % 2) * 0.06
    mortar = ((yy % max(h // 64, 2)) < 1) * -0.05
    lum = np.where(building, 0.30 + bricks + mortar + 0.03 * _noise(rng, (h, w), 0.7), lum)
    win = building & ((xx % max(w // 20, 6)) < max(w // 40, 3)) & ((yy % max(h // 16, 8)) < max(h // 32, 4))
    lit = _noise(rng, (h, w), w / 30) > 0.2
    lum = np.where(win, np.where(lit, 0.85, 0.05), lum)
    leaves = 0.20 + 0.08 * _noise(rng, (h, w), 1.0) + 0.04 * _noise(rng, (h, w), 3.0)
    lum = np.where(treeline, leaves, lum)
    grass = 0.22 + 0.06 * _noise(rng, (h, w), 0.8) + 0.03 * _noise(rng, (h, w), 4.0)
    asphalt = 0.26 + 0.05 * _noise(rng, (h, w), 0.6)
    dashes = (
        road & (np.abs(u - 0.5) < 0.006 + 0.01 * (v - horizon)) & ((yy % max(h // 10, 6)) < max(h // 20, 3))
    )
    lum = np.where(ground, np.where(road, asphalt, grass), lum)
    lum = np.where(dashes, 0.75, lum)

    # Smoke veil over the right half: raises black level and kills contrast.
    smoke = np.clip(0.5 + 0.5 * _noise(rng, (h, w), w / 12), 0, 1) * np.clip((u - 0.4) * 3, 0, 1)
    lum = lum * (1 - 0.6 * smoke) + 0.35 * 0.6 * smoke
    # Global low light: darkened, slight sensor noise.
    lum = 0.75 * lum + 0.01 * rng.standard_normal((h, w))

    # Colour: warm sodium light on the building, green foliage, bluish sky and smoke.
    tint = np.stack(
        [
            np.where(building, 1.15, np.where(treeline | (ground & ~road), 0.85, 0.95)),
            np.where(treeline | (ground & ~road), 1.10, 1.0),
            np.where(sky & ~building & ~treeline, 1.25, np.where(building, 0.75, 0.95)),
        ],
        axis=-1,
    )
    vi = np.clip(lum[..., None] * tint, 0, 1)

    # ---- infrared: smooth temperatures + warm targets --------------------------------------
    ir = np.where(sky, 0.08 + 0.06 * v / horizon, 0.30 + 0.1 * (v - horizon))
    ir = np.where(building, 0.42 + 0.04 * _noise(rng, (h, w), w / 25), ir)
    ir = np.where(win & lit, 0.55, ir)
    ir = np.where(treeline, 0.25 + 0.03 * _noise(rng, (h, w), w / 30), ir)
    ir = np.where(road, 0.38, ir)
    targets = np.zeros((h, w), bool)
    for cx, base in ((0.62, 0.80), (0.70, 0.84), (0.86, 0.74)):  # people in the smoke
        body = _ellipse(yy, xx, h * (base - 0.07), w * cx, h * 0.07, w * 0.018)
        head = _ellipse(yy, xx, h * (base - 0.165), w * cx, h * 0.025, w * 0.014)
        targets |= body | head
    car = (np.abs(u - 0.30) < 0.09) & (np.abs(v - 0.78) < 0.045)
    targets |= car
    ir = np.where(targets, 0.88, ir)
    ir = np.where(car & (u < 0.25), 0.97, ir)  # hot engine
    ir = ndimage.gaussian_filter(ir, 0.8) + 0.008 * rng.standard_normal((h, w))
    ir = np.clip(ir, 0, 1)

    texture = (building & ~win) | treeline | (ground & ~road & ~targets)
    texture &= ~ndimage.binary_dilation(targets, iterations=3)
    return Scene(ir.astype(np.float32), vi.astype(np.float32), targets, texture)


def _luma(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
    return img


def target_contrast(img: np.ndarray, scene: Scene, ring: int = 6) -> float:
    """Mean luma of the warm targets minus the mean of a ``ring``-pixel band around them.

    High in the infrared image, near zero in the visible one; a good fusion keeps it high.
    """
    y = _luma(img)
    around = ndimage.binary_dilation(scene.targets, iterations=ring) & ~scene.targets
    return float(y[scene.targets].mean() - y[around].mean())


def texture_detail(img: np.ndarray, scene: Scene) -> float:
    """Mean gradient magnitude (central differences) of the luma inside ``scene.texture``.

    High in the visible image, low in the smooth infrared one; a good fusion keeps it high.
    """
    gy, gx = np.gradient(_luma(img).astype(np.float64))
    return float(np.hypot(gx, gy)[scene.texture].mean())
