"""Registration of an infrared image onto the visible image's pixel grid.

Thermal and visible intensities are not related monotonically (a warm road is bright in the infrared
and dark in the visible image; contrast inverts from one region to the next), so this module never
compares intensities. It compares *structure* that is blind to the sign of a contrast edge: the
locally normalised gradient magnitude (:func:`structure_map`) and the doubled-angle edge orientation
of the structure tensor (:func:`orientation_features`).

Pipeline (all geometry is expressed as a 3x3 matrix mapping infrared pixel -> visible pixel):

1. Initial guess: resample the infrared image to the visible image's size (different sensors have
   different resolutions, e.g. 640x512 against 1280x720).
2. Global search at a coarse level (longest side ~240 px): a grid of rotations and scales; for each,
   the translation from an FFT cross-correlation of the structure maps over all shifts
   (``search="xcorr"``; ``search="phase"`` uses phase correlation of the magnitude maps, Kuglin &
   Hines 1975, Reddy & Chatterji, IEEE TIP 5(8), 1996). The best 16 candidates are refined with ECC
   (Evangelidis & Psarakis, IEEE TPAMI 30(10), 2008; ``cv2.findTransformECC``) and ranked by the
   correlation of all structure channels; near-duplicates are dropped.
3. Coarse-to-fine refinement over an image pyramid, up to the infrared image's resolution (a larger
   visible image is matched at the infrared image's scale, where both carry detail):
   inverse-compositional Gauss-Newton (Baker & Matthews, IJCV 56(3), 2004) on the three structure
   channels (``refine="structure"``), or ECC on the magnitude map (``refine="ecc"``). The infrared
   orientation channels are first turned by the
   current estimate's rotation (the doubled angle turns with the image); a level's result is kept
   only if it raises the structural correlation and does not jump (a guard against divergence on weak
   structure). A homography's perspective terms are estimated on the two finest levels only, affine
   before. With ``hypotheses=K`` the best K search candidates are refined this way (multi-hypothesis)
   and the result whose structure maps correlate best at the finest level is kept.
4. Confidence: the ECC correlation of the two gradient-magnitude maps on their overlap at the finest
   level (1 = identical structure; unrelated images give about 0, correctly registered real pairs
   about 0.1-0.75). With ``check=True`` also a forward/backward consistency: the visible image is
   registered onto the infrared one, started at the inverse of the result, and
   :attr:`Registration.consistency` is how far the two disagree (visible pixels at the corners).

``ir_mask`` / ``vi_mask`` restrict the matching to parts of either image (a burnt-in overlay of the
thermal camera, a vignetted border, synthetic fill).

Models: ``translation`` (2 parameters), ``similarity`` (rotation, isotropic scale, translation; 4),
``affine`` (6) and ``homography`` (8). In every model the initial resampling to the visible size may be
anisotropic (it follows the two image sizes). A homography is estimated as an affine warp on the
coarsest level first.

Use :func:`register` for the full result, :func:`align_pair` to get the infrared image on the
visible grid in one call, and :func:`save_transform` / :func:`load_transform` for JSON files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import io
from .errors import InputError

MODELS = ("translation", "similarity", "affine", "homography")
TRANSFORM_FORMAT = "ivfuse-transform/1"

_ECC_MOTION = {
    "translation": cv2.MOTION_TRANSLATION,
    "similarity": cv2.MOTION_AFFINE,
    "affine": cv2.MOTION_AFFINE,
    "homography": cv2.MOTION_HOMOGRAPHY,
}


@dataclass
class Registration:
    """Result of :func:`register`.

    ``matrix`` maps an infrared pixel (x, y, 1) to the visible pixel grid (pixel centres at integer
    coordinates, the OpenCV convention). ``warped`` is the infrared image resampled onto the visible
    grid (same dtype as the input; pixels outside the infrared field of view are 0) when requested.
    """

    matrix: np.ndarray
    model: str
    confidence: float
    ir_size: tuple[int, int]  # (width, height)
    vi_size: tuple[int, int]
    overlap: float = 0.0  # fraction of the visible grid covered by the warped infrared image
    # forward/backward disagreement (visible pixels at the corners; NaN when not checked)
    consistency: float = float("nan")
    warped: np.ndarray | None = field(default=None, repr=False)

    def warp(self, ir: np.ndarray, *, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Resample another image of the infrared camera (same size as the registered one)."""
        return warp_image(ir, self.matrix, self.vi_size, interpolation=interpolation)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": TRANSFORM_FORMAT,
            "model": self.model,
            "matrix": [[float(v) for v in row] for row in self.matrix],
            "direction": "infrared pixel -> visible pixel",
            "ir_size": list(self.ir_size),
            "vi_size": list(self.vi_size),
            "confidence": float(self.confidence),
            "overlap": float(self.overlap),
        } | ({"consistency_px": float(self.consistency)} if np.isfinite(self.consistency) else {})


# --------------------------------------------------------------------------------------------
# structure maps and small geometry helpers


def _gray_float(img: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    elif a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise InputError(f"{name}: expected an HxW or HxWx3 image, got shape {a.shape}")
    if min(a.shape) < 16:
        raise InputError(f"{name}: image too small to register ({a.shape[1]}x{a.shape[0]})")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise InputError(f"{name}: image contains NaN or infinite values")
    return a


def structure_map(gray: np.ndarray, sigma: float = 1.0, local: float = 8.0) -> np.ndarray:
    """Contrast-sign-invariant structure of a gray image: smoothed, normalised gradient magnitude.

    The image is smoothed (Gaussian ``sigma``) and its gradient magnitude taken; the magnitude is
    divided by its local mean (Gaussian window ``local``, plus a tenth of the global mean so flat noise
    is not blown up), so that a faint thermal edge and a strong visible edge weigh alike; then divided
    by its 99th percentile, clipped to 1, compressed by a square root and smoothed again (``sigma``)
    to widen the basin of convergence. Output float32 in [0, 1].
    """
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), sigma)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    mean = float(mag.mean())
    if mean <= 1e-12:
        return np.zeros_like(mag)
    if local > 0:
        mag = mag / (cv2.GaussianBlur(mag, (0, 0), local) + 0.1 * mean)
    top = float(np.percentile(mag, 99.0))
    mag = np.sqrt(np.minimum(mag / max(top, 1e-12), 1.0))
    return cv2.GaussianBlur(mag, (0, 0), sigma)


def orientation_features(gray: np.ndarray, sigma: float = 1.0, rho: float = 2.0) -> np.ndarray:
    """Multi-channel structure of a gray image, invariant to the sign of contrast: (H, W, 3) float32.

    Channel 0 is :func:`structure_map`; channels 1-2 are the doubled-angle edge orientation from the
    structure tensor (Bigun & Granlund 1987; integration scale ``rho``): ``(Jxx - Jyy, 2 Jxy) /
    (Jxx + Jyy + eps)``, which is the same for an edge and its contrast-inverted version and fades to 0
    in flat or noisy regions. Orientation pins down positions that a magnitude map alone leaves loose.
    """
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), sigma)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), rho)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), rho)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), rho)
    tr = jxx + jyy
    eps = 0.1 * float(tr.mean()) + 1e-12
    return np.dstack([structure_map(gray, sigma), (jxx - jyy) / (tr + eps), 2 * jxy / (tr + eps)]).astype(
        np.float32
    )


def _scale_matrix(fx: float, fy: float) -> np.ndarray:
    """Pixel-centre-aligned resampling by (fx, fy): what cv2.resize does to coordinates."""
    return np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]], dtype=np.float64)


def _similarity_about(center: tuple[float, float], angle_deg: float, scale: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D(center, angle_deg, scale)
    return np.vstack([m, [0, 0, 1]]).astype(np.float64)


def _project(matrix: np.ndarray, model: str, size: tuple[int, int]) -> np.ndarray:
    """Nearest matrix of ``model`` (least squares on a grid of points of the visible grid)."""
    if model in ("homography",):
        return matrix / matrix[2, 2]
    w, h = size
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 5), np.linspace(0, h - 1, 5))
    dst = np.stack([xs.ravel(), ys.ravel()], 1)
    src = cv2.perspectiveTransform(dst[None], np.linalg.inv(matrix))[0]
    if model == "affine":
        a = np.linalg.lstsq(np.c_[src, np.ones(len(src))], dst, rcond=None)[0].T
        return np.vstack([a, [0, 0, 1]])
    if model == "translation":
        t = (dst - src).mean(0)
        return np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1]], dtype=np.float64)
    # similarity: x' = a x - b y + tx, y' = b x + a y + ty
    n = len(src)
    mat = np.zeros((2 * n, 4))
    mat[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)]
    mat[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(n), np.ones(n)]
    a, b, tx, ty = np.linalg.lstsq(mat, dst.ravel(), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty], [0, 0, 1]], dtype=np.float64)


def warp_image(
    ir: np.ndarray,
    matrix: np.ndarray,
    vi_size: tuple[int, int],
    *,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Resample ``ir`` onto a ``vi_size`` (width, height) grid with ``matrix`` (infrared -> visible).

    Pixels outside the infrared field of view are 0. Keeps dtype and channels.
    """
    src = np.ascontiguousarray(ir)
    if src.dtype == np.bool_:
        src = src.astype(np.uint8)
    out = cv2.warpPerspective(
        src,
        np.asarray(matrix, dtype=np.float64),
        (int(vi_size[0]), int(vi_size[1])),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return out


def corner_error(estimate: np.ndarray, truth: np.ndarray, vi_size: tuple[int, int]) -> float:
    """Mean distance (visible pixels) between the visible image's 4 corners and where they land after
    going to the infrared image with ``estimate`` and back with ``truth``."""
    w, h = vi_size
    c = np.array([[[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]], dtype=np.float64)
    back = cv2.perspectiveTransform(c, truth @ np.linalg.inv(estimate))
    return float(np.linalg.norm(back - c, axis=-1).mean())


# --------------------------------------------------------------------------------------------
# the registration


#: the largest finest pyramid level (longest side, px) of :func:`register`
FINEST = 1400


def _levels(vi_size: tuple[int, int], coarse: int, finest: int) -> list[float]:
    """Pyramid factors (coarse to fine) relative to the visible size; the finest is <= ``finest`` px."""
    longest = max(vi_size)
    top = min(1.0, finest / longest)
    f = min(top, coarse / longest)
    out = [f]
    while out[-1] < top - 1e-9:
        out.append(min(top, out[-1] * 2))
    return out


def _ecc(
    template: np.ndarray,
    image: np.ndarray,
    warp_vi_to_ir: np.ndarray,
    motion: int,
    iterations: int,
    eps: float,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, float | None]:
    """One cv2.findTransformECC run; returns (warp VI->IR, correlation or None on failure)."""
    if motion == cv2.MOTION_HOMOGRAPHY:
        w = (warp_vi_to_ir / warp_vi_to_ir[2, 2]).astype(np.float32)
    else:
        w = warp_vi_to_ir[:2].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, eps)
    try:
        m8 = None if mask is None else (mask > 0.5).astype(np.uint8)
        rho, w = cv2.findTransformECC(template, image, w, motion, criteria, m8, 1)
    except cv2.error:
        return warp_vi_to_ir, None
    if not np.isfinite(w).all():
        return warp_vi_to_ir, None
    full = w.astype(np.float64) if motion == cv2.MOTION_HOMOGRAPHY else np.vstack([w, [0, 0, 1]])
    return full, float(rho)


def _overlap_mask(
    shape_v: tuple[int, ...], shape_i: tuple[int, ...], h_level: np.ndarray, mv=None, mi=None, erode: int = 3
) -> np.ndarray:
    """uint8 mask of the visible level grid: covered by the (usable part of the) warped infrared image
    and usable in the visible one."""
    size = (shape_v[1], shape_v[0])
    src = np.ones(shape_i[:2], np.uint8) if mi is None else (mi > 0.5).astype(np.uint8)
    mask = cv2.warpPerspective(src, h_level, size, flags=cv2.INTER_NEAREST)
    if mv is not None:
        mask &= (mv > 0.5).astype(np.uint8)
    return cv2.erode(mask, np.ones((erode, erode), np.uint8))


def _correlation(
    fv: np.ndarray, fi: np.ndarray, h_level: np.ndarray, mv=None, mi=None
) -> tuple[float, float]:
    """ECC correlation of the visible map and the warped infrared map on their overlap, and the overlap."""
    size = (fv.shape[1], fv.shape[0])
    warped = cv2.warpPerspective(fi, h_level, size, flags=cv2.INTER_LINEAR)
    mask = _overlap_mask(fv.shape, fi.shape, h_level, mv, mi)
    overlap = float(mask.mean())
    if overlap < 0.05:
        return 0.0, overlap
    try:
        rho = float(cv2.computeECC(fv, warped, mask))
    except cv2.error:
        return 0.0, overlap
    return (rho if np.isfinite(rho) else 0.0), overlap


def _jacobian(model: str, xn: np.ndarray, yn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d(u, v)/dp at p = 0 for the parameterisation of :func:`_delta` (normalised coordinates)."""
    z, o = np.zeros_like(xn), np.ones_like(xn)
    if model == "translation":
        return np.stack([o, z], 1), np.stack([z, o], 1)
    if model == "similarity":
        return np.stack([xn, -yn, o, z], 1), np.stack([yn, xn, z, o], 1)
    du = [xn, yn, o, z, z, z]
    dv = [z, z, z, xn, yn, o]
    if model == "homography":
        du += [-xn * xn, -xn * yn]
        dv += [-xn * yn, -yn * yn]
    return np.stack(du, 1), np.stack(dv, 1)


def _delta(model: str, p: np.ndarray) -> np.ndarray:
    if model == "translation":
        return np.array([[1, 0, p[0]], [0, 1, p[1]], [0, 0, 1]])
    if model == "similarity":
        return np.array([[1 + p[0], -p[1], p[2]], [p[1], 1 + p[0], p[3]], [0, 0, 1]])
    m = np.array([[1 + p[0], p[1], p[2]], [p[3], 1 + p[4], p[5]], [0, 0, 1]])
    if model == "homography":
        m[2, :2] = p[6:8]
    return m


def _sample(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples (n, c) of an (H, W, c) float32 image at points (x, y) (cv2.remap)."""
    n = len(x)
    cols = 1024
    rows = -(-n // cols)
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:n], my[:n] = x, y
    out = cv2.remap(
        img, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return out.reshape(rows * cols, -1)[:n]


def _gauss_newton(
    tv: np.ndarray,
    ti: np.ndarray,
    h_level: np.ndarray,
    model: str,
    iterations: int,
    max_pixels: int = 40000,
    mv: np.ndarray | None = None,
    mi: np.ndarray | None = None,
) -> np.ndarray | None:
    """Inverse-compositional Gauss-Newton (Baker & Matthews, IJCV 56(3), 2004) on multi-channel maps.

    ``tv``: visible features (template), ``ti``: infrared features on the same level grid, both
    (H, W, C). ``h_level``: current IR~ -> VI matrix at this level. Minimises the sum of squared
    feature differences over the overlap; uses the ``max_pixels`` template pixels of strongest
    structure. Returns the refined matrix, or None when the problem is degenerate.
    """
    h, w, c = tv.shape
    scale = 2.0 / max(w, h)
    norm = np.array([[scale, 0, -scale * (w - 1) / 2], [0, scale, -scale * (h - 1) / 2], [0, 0, 1]])
    gx = np.dstack([cv2.Sobel(tv[..., k], cv2.CV_32F, 1, 0, ksize=3, scale=0.125) for k in range(c)])
    gy = np.dstack([cv2.Sobel(tv[..., k], cv2.CV_32F, 0, 1, ksize=3, scale=0.125) for k in range(c)])
    strength = (gx * gx + gy * gy).sum(-1)
    border = 2
    strength[:border], strength[-border:], strength[:, :border], strength[:, -border:] = 0, 0, 0, 0
    if mv is not None:
        strength *= mv > 0.5
    flat = strength.ravel()
    n = min(max_pixels, int((flat > 0).sum()))
    if n < 50:
        return None
    idx = np.argpartition(-flat, n - 1)[:n]
    ys, xs = np.divmod(idx, w)
    xn, yn = xs * scale - scale * (w - 1) / 2, ys * scale - scale * (h - 1) / 2
    ju, jv = _jacobian(model, xn.astype(np.float64), yn.astype(np.float64))
    # steepest-descent images per channel, gradients w.r.t. normalised coordinates
    gxs = gx.reshape(-1, c)[idx].astype(np.float64) / scale
    gys = gy.reshape(-1, c)[idx].astype(np.float64) / scale
    # steepest-descent images, one contiguous (n, k) block per channel
    sd = [np.ascontiguousarray(gxs[:, [k]] * ju + gys[:, [k]] * jv) for k in range(c)]
    tvals = tv.reshape(-1, c)[idx].astype(np.float64)
    # W: VI level pixel -> IR~ level pixel; only the selected template pixels are sampled
    warp = np.linalg.inv(h_level)
    kdim = sd[0].shape[1]
    hess_all = sum(sd[k].T @ sd[k] for k in range(c))
    pts = np.stack([xs, ys], 1).astype(np.float64)[None]
    hi, wi_ = ti.shape[:2]
    if mi is not None:  # sampled along as one more channel: usable where it stays ~1
        ti = np.dstack([ti, mi])
    ti = np.ascontiguousarray(ti, dtype=np.float32)
    best: tuple[float, np.ndarray] | None = None
    worse = 0
    for _ in range(iterations):
        src = cv2.perspectiveTransform(pts, warp)[0]
        m = (src[:, 0] >= 0) & (src[:, 0] <= wi_ - 1) & (src[:, 1] >= 0) & (src[:, 1] <= hi - 1)
        if m.sum() < 50:
            return None
        sampled = _sample(ti, src[:, 0], src[:, 1]).astype(np.float64)
        if mi is not None:
            m &= sampled[:, -1] > 0.99
            sampled = sampled[:, :-1]
            if m.sum() < 50:
                return None
        err = (sampled - tvals) * m[:, None]
        cost = float((err**2).sum() / max(1, int(m.sum())))
        if best is None or cost < best[0]:
            best, worse = (cost, warp), 0
        else:
            worse += 1
        if m.all():
            hess = hess_all
        else:
            out = ~m  # usually a thin band: subtract it rather than rebuild the sum
            hess = hess_all - sum(sd[k][out].T @ sd[k][out] for k in range(c))
        b = sum(sd[k].T @ err[:, k] for k in range(c))
        try:
            dp = np.linalg.solve(hess + 1e-9 * np.eye(kdim) * np.trace(hess), b)
        except np.linalg.LinAlgError:
            return None
        dw = np.linalg.inv(norm) @ _delta(model, dp) @ norm
        warp = warp @ np.linalg.inv(dw)
        warp = warp / warp[2, 2]
        if not np.isfinite(warp).all():
            return None
        step = float(np.abs(dp).max() / scale)
        if step < 0.03 or worse >= 3:  # moves < ~0.03 px, or no better for 3 steps
            break
    return np.linalg.inv(best[1] if best is not None else warp)


def _level_model(model: str, level: int, n_levels: int) -> str:
    """The model fitted on pyramid level ``level``: a homography's perspective terms only on the two
    finest levels (on coarse levels they are poorly constrained and pull the fit off), affine before."""
    if model == "homography" and level < n_levels - 2:
        return "affine"
    return model


def _rotation_deg(h: np.ndarray) -> float:
    """Rotation angle of a matrix's linear part, in cv2.getRotationMatrix2D's sign convention."""
    return float(np.rad2deg(np.arctan2(h[0, 1] - h[1, 0], h[0, 0] + h[1, 1])))


def _feature_score(tv: np.ndarray, ti: np.ndarray, h_level: np.ndarray, mv=None, mi=None) -> float:
    """Normalised cross-correlation of the visible and warped infrared feature maps (all channels,
    each zero-mean) on their overlap; the acceptance test of a refinement step."""
    h, w, c = tv.shape
    warped = cv2.warpPerspective(ti, h_level, (w, h), flags=cv2.INTER_LINEAR)
    m = _overlap_mask(tv.shape, ti.shape, h_level, mv, mi, erode=5).ravel() > 0
    if m.mean() < 0.05:
        return -1.0
    a = tv.reshape(-1, c)[m].astype(np.float64)
    b = warped.reshape(-1, c)[m].astype(np.float64)
    a -= a.mean(0)
    b -= b.mean(0)
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else -1.0


def _accept(tv: np.ndarray, ti: np.ndarray, old: np.ndarray, new: np.ndarray, mv=None, mi=None) -> bool:
    """Keep a refinement step only if it does not jump far (more than 8 % of the level size at the
    corners: a divergence) and does not lower the feature correlation."""
    h, w = tv.shape[:2]
    if corner_error(new, old, (w, h)) > 0.08 * max(w, h):
        return False
    return _feature_score(tv, ti, new, mv, mi) >= _feature_score(tv, ti, old, mv, mi) - 1e-4


def _search_grid(
    model: str, max_rotation: float, scale_range: tuple[float, float]
) -> tuple[list[float], list[float]]:
    """The rotations (2-degree steps up to ``max_rotation``) and scales (6 % steps over
    ``scale_range``) a search tries; one of each for the translation model."""
    if model == "translation":
        return [0.0], [1.0]
    n_ang = max(1, int(round(2 * max_rotation / 2.0)) + 1)
    angles = list(np.linspace(-max_rotation, max_rotation, n_ang)) if max_rotation > 0 else [0.0]
    lo, hi = scale_range
    n_sc = max(1, int(round(np.log(hi / lo) / np.log(1.06))) + 1)
    scales = list(np.geomspace(lo, hi, n_sc)) if hi > lo else [lo]
    return angles, scales


def _search(
    fv: np.ndarray,
    fi: np.ndarray,
    model: str,
    max_rotation: float,
    scale_range: tuple[float, float],
) -> list[np.ndarray]:
    """Candidate IR~ -> VI matrices at the search level, best first (phase correlation per rotation/scale)."""
    h, w = fv.shape
    center = ((w - 1) / 2, (h - 1) / 2)
    angles, scales = _search_grid(model, max_rotation, scale_range)
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    fv32 = fv.astype(np.float32)
    scored: list[tuple[float, np.ndarray]] = []
    for a in angles:
        for s in scales:
            m = _similarity_about(center, float(a), float(s))
            warped = cv2.warpAffine(fi, m[:2], (w, h), flags=cv2.INTER_LINEAR)
            (dx, dy), resp = cv2.phaseCorrelate(fv32, warped.astype(np.float32), window)
            t = np.array([[1, 0, -dx], [0, 1, -dy], [0, 0, 1]], dtype=np.float64)
            scored.append((float(resp), t @ m))
    scored.sort(key=lambda p: -p[0])
    return [m for _, m in scored]


def _rotate_orientation(feat: np.ndarray, angle_deg: float) -> np.ndarray:
    """Orientation channels 1-2 of :func:`orientation_features` after rotating the image by ``angle_deg``
    (counter-clockwise, as cv2.getRotationMatrix2D): the doubled angle turns by twice as much."""
    a = np.deg2rad(2 * angle_deg)
    # cv2's positive angle is counter-clockwise on screen, i.e. clockwise in (x, y-down) coordinates
    ca, sa = np.cos(a), -np.sin(a)
    out = feat.copy()
    out[..., 1] = ca * feat[..., 1] - sa * feat[..., 2]
    out[..., 2] = sa * feat[..., 1] + ca * feat[..., 2]
    return out


def _search_xcorr(
    tv: np.ndarray,
    ti: np.ndarray,
    model: str,
    max_rotation: float,
    scale_range: tuple[float, float],
    mv: np.ndarray | None = None,
    mi: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Candidate IR~ -> VI matrices at the search level, best first.

    For every rotation and scale of a grid, the infrared feature maps (:func:`orientation_features`,
    orientation rotated along) are cross-correlated with the visible ones over all translations (FFT,
    zero padding so shifts do not wrap); the score is the peak correlation normalised by both maps'
    energy on the overlap of the whole frames.
    """
    h, w, c = tv.shape
    center = ((w - 1) / 2, (h - 1) / 2)
    angles, scales = _search_grid(model, max_rotation, scale_range)
    ph, pw = cv2.getOptimalDFTSize(int(h * 1.5)), cv2.getOptimalDFTSize(int(w * 1.5))
    if mv is not None:
        keep = mv > 0.5
        tv = (tv - tv[keep].mean(0)) * keep[..., None]
    tvz = tv - tv.reshape(-1, c).mean(0)
    src_valid = np.ones((h, w), np.float32) if mi is None else (mi > 0.5).astype(np.float32)
    fv_spec = []
    for k in range(c):
        pad = np.zeros((ph, pw), np.float32)
        pad[:h, :w] = tvz[..., k]
        fv_spec.append(cv2.dft(pad, flags=cv2.DFT_COMPLEX_OUTPUT))
    ev = float(np.sqrt((tvz**2).sum()))
    scored: list[tuple[float, np.ndarray]] = []
    for a in angles:
        ta = _rotate_orientation(ti, float(a)) if a != 0 else ti
        for s in scales:
            m = _similarity_about(center, float(a), float(s))
            warped = cv2.warpAffine(ta, m[:2], (w, h), flags=cv2.INTER_LINEAR)
            valid = cv2.warpAffine(src_valid, m[:2], (w, h), flags=cv2.INTER_NEAREST) > 0
            if valid.sum() < 0.1 * h * w:
                continue
            warped = (warped - warped[valid].mean(0)) * valid[..., None]
            acc = None
            for k in range(c):
                pad = np.zeros((ph, pw), np.float32)
                pad[:h, :w] = warped[..., k]
                spec = cv2.mulSpectrums(fv_spec[k], cv2.dft(pad, flags=cv2.DFT_COMPLEX_OUTPUT), 0, conjB=True)
                acc = spec if acc is None else acc + spec
            corr = cv2.idft(acc, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
            # only shifts up to 40 % of the size: corr[dy, dx] = sum fv(x + d) * warped(x)
            my, mx = int(0.4 * h), int(0.4 * w)
            corr[my + 1 : ph - my, :] = -np.inf
            corr[:, mx + 1 : pw - mx] = -np.inf
            _, peak, _, (px, py) = cv2.minMaxLoc(corr)
            dx = px if px <= mx else px - pw
            dy = py if py <= my else py - ph
            score = peak / (ev * float(np.sqrt((warped**2).sum())) + 1e-12)
            t = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)
            scored.append((score, t @ m))
    scored.sort(key=lambda p: -p[0])
    return [m for _, m in scored]


@dataclass
class _Level:
    """One pyramid level: visible and infrared (resampled to the level's grid) images, their
    :func:`orientation_features` (``ti`` not yet turned by any rotation), eroded masks, and ``d``:
    visible pixel -> level pixel."""

    size: tuple[int, int]
    d: np.ndarray
    gv: np.ndarray
    gi: np.ndarray
    tv: np.ndarray
    ti: np.ndarray
    mv: np.ndarray | None
    mi: np.ndarray | None


def _level_data(gv: np.ndarray, gi: np.ndarray, f: float, sigma: float, masks: list) -> _Level:
    vi_size = (gv.shape[1], gv.shape[0])
    size = (max(8, round(vi_size[0] * f)), max(8, round(vi_size[1] * f)))
    d = _scale_matrix(size[0] / vi_size[0], size[1] / vi_size[1])
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    lv = cv2.resize(gv, size, interpolation=interp)
    li = cv2.resize(gi, size, interpolation=cv2.INTER_AREA if size[0] < gi.shape[1] else interp)
    # level masks; eroded, as the structure maps near a mask's border see the excluded content
    mi, mv = (
        None
        if mk is None
        else cv2.erode(
            (cv2.resize(mk, size, interpolation=cv2.INTER_AREA) > 0.99).astype(np.uint8),
            np.ones((9, 9), np.uint8),
        ).astype(np.float32)
        for mk in masks
    )
    return _Level(size, d, lv, li, orientation_features(lv, sigma), orientation_features(li, sigma), mv, mi)


def _coarse_candidates(
    lvl: _Level,
    model: str,
    motion: int,
    max_rotation: float,
    scale_range: tuple[float, float],
    candidates: int,
    iterations: int,
    search: str,
) -> list[tuple[float, np.ndarray]]:
    """The global search on the coarsest level: its best ``candidates`` results, each refined by ECC on
    the magnitude maps, as (structural correlation of all channels, IR~ -> VI level matrix), best first;
    near-duplicates (corners within 2 % of the level size of a better one) are dropped."""
    fv, fi = lvl.tv[..., 0].copy(), lvl.ti[..., 0].copy()
    if search == "phase":
        cands = _search(fv, fi, model, max_rotation, scale_range)
    else:
        cands = _search_xcorr(lvl.tv, lvl.ti, model, max_rotation, scale_range, lvl.mv, lvl.mi)
    # coarse level: affine for the homography model (fewer unknowns, wider basin)
    lvl_motion = cv2.MOTION_AFFINE if motion == cv2.MOTION_HOMOGRAPHY else motion
    scored: list[tuple[float, np.ndarray]] = []
    for hc in cands[: max(1, candidates)]:
        w, r = _ecc(fv, fi, np.linalg.inv(hc), lvl_motion, iterations, 1e-5, lvl.mv)
        hl = _project(np.linalg.inv(w), model, lvl.size) if r is not None else hc
        # ranked by all structure channels (orientation included), not only the magnitude ECC
        score = _feature_score(lvl.tv, _rotate_orientation(lvl.ti, _rotation_deg(hl)), hl, lvl.mv, lvl.mi)
        scored.append((score, hl))
    scored.sort(key=lambda p: -p[0])
    kept: list[tuple[float, np.ndarray]] = []
    for sc, hl in scored:
        if all(corner_error(hl, k, lvl.size) > 0.02 * max(lvl.size) for _, k in kept):
            kept.append((sc, hl))
    return kept


def _rewarped(lvl: _Level, hl: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The level's infrared image warped onto the visible level grid by ``hl``, and its structure
    maps computed there (same scale and orientation as the visible ones), with the mask of where
    they see real infrared content."""
    size = lvl.size
    warped = cv2.warpPerspective(lvl.gi, hl, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    src = lvl.mi if lvl.mi is not None else np.ones(lvl.gi.shape[:2], np.float32)
    valid = cv2.warpPerspective(src, hl, size, flags=cv2.INTER_LINEAR, borderValue=0)
    valid = cv2.erode((valid > 0.99).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(np.float32)
    return orientation_features(warped, sigma), valid


def _refine_levels(
    h_full: np.ndarray,
    levels: list[_Level],
    first: int,
    model: str,
    motion: int,
    iterations: int,
    fine_iter_ratio: float,
    refine: str,
    rewarp: int = 0,
    sigma: float = 1.0,
) -> np.ndarray:
    """Coarse-to-fine refinement of one IR~ -> VI estimate (full visible resolution) from pyramid
    level ``first`` on."""
    for li in range(first, len(levels)):
        lvl = levels[li]
        d = lvl.d
        iters = iterations if li == 0 else max(15, int(iterations * fine_iter_ratio))
        hl = d @ h_full @ np.linalg.inv(d)
        if refine == "ecc":
            lvl_motion = cv2.MOTION_AFFINE if (motion == cv2.MOTION_HOMOGRAPHY and li == 0) else motion
            fv, fi = lvl.tv[..., 0].copy(), lvl.ti[..., 0].copy()
            w, r = _ecc(fv, fi, np.linalg.inv(hl), lvl_motion, iters, 1e-6, lvl.mv)
            if r is not None:
                hl = _project(np.linalg.inv(w), model, lvl.size)
                h_full = np.linalg.inv(d) @ hl @ d
            continue
        lvl_model = _level_model(model, li, len(levels))
        if rewarp:
            eye, start = np.eye(3), hl
            for _ in range(int(rewarp)):
                ti_w, mi_w = _rewarped(lvl, hl, sigma)
                r = _gauss_newton(lvl.tv, ti_w, eye, lvl_model, iters, mv=lvl.mv, mi=mi_w)
                if r is None or not _accept(lvl.tv, ti_w, eye, r, lvl.mv, mi_w):
                    break
                if corner_error(r @ hl, start, lvl.size) > 0.08 * max(lvl.size):
                    break  # the rounds of one level together may not jump further than one may
                hl = r @ hl
                hl = hl / hl[2, 2]
                if corner_error(r, eye, lvl.size) < 0.05:
                    break
            h_full = np.linalg.inv(d) @ hl @ d
            continue
        # the doubled-angle orientation turns with the image: express the infrared orientations in
        # the visible frame (the current estimate's rotation), or Gauss-Newton is pulled off by it
        ti = _rotate_orientation(lvl.ti, _rotation_deg(hl))
        new = _gauss_newton(lvl.tv, ti, hl, lvl_model, iters, mv=lvl.mv, mi=lvl.mi)
        if new is not None and _accept(lvl.tv, ti, hl, new, lvl.mv, lvl.mi):
            h_full = np.linalg.inv(d) @ new @ d
    return h_full


def register(
    ir: np.ndarray,
    vi: np.ndarray,
    model: str = "homography",
    *,
    max_rotation: float = 12.0,
    scale_range: tuple[float, float] = (0.75, 1.35),
    candidates: int = 16,
    hypotheses: int = 1,
    check: bool = False,
    coarse: int = 240,
    finest: int | None = None,
    iterations: int = 60,
    sigma: float = 1.0,
    init: np.ndarray | None = None,
    refine: str = "structure",
    search: str = "xcorr",
    fine_iter_ratio: float = 1.0,
    rewarp: int = 2,
    return_warped: bool = True,
    ir_mask: np.ndarray | None = None,
    vi_mask: np.ndarray | None = None,
) -> Registration:
    """Register infrared image ``ir`` onto visible image ``vi``.

    ``ir`` and ``vi``: HxW or HxWx3 arrays of any numeric dtype (colour is reduced to luma); they
    may differ in size. ``model``: translation, similarity, affine or homography. The search covers
    rotations up to ``max_rotation`` degrees and relative scales in ``scale_range`` (after the
    infrared image is resampled to the visible size), and translations up to 40 % of the size
    (``search="phase"``: about half). ``candidates``: how many search results are refined by ECC at
    the coarse level (longest side ``coarse`` px); ``hypotheses``: how many of the best of those are
    refined through the whole pyramid, the one of highest final structural correlation being kept.
    Defaults 16 and 1: on the registration benchmark (docs/registration.md) 16 candidates instead of 4
    turned a search failure of 116 px into 3 px; 3 hypotheses, with the re-warping below, solved no more
    pairs there than one at 1.5 times the time, so it is an option. ``check``: also measure the
    forward/backward consistency (``consistency``; about 1.5 times the time). ``init``: a known infrared
    -> visible matrix to start from (skips the search). ``finest``: longest side of the finest pyramid
    level (the visible size or less); default: the infrared image's longest side (at least twice
    ``coarse``, at most :data:`FINEST` px), so a visible image larger than the infrared one is not
    matched at detail the infrared image does not have (on the benchmark's 640x512 infrared / 1280x720
    visible pairs this took the RoadScene and FLIR self medians from 4.8 and 3.3 to 1.6 and 1.7 px,
    first 12 pairs, at 0.55 times the time; pairs whose visible image is not larger are unchanged).
    ``refine``: ``structure`` (default: Gauss-Newton on gradient magnitude + edge orientation maps) or
    ``ecc`` (cv2.findTransformECC on the gradient magnitude map only). ``iterations``: at most that many
    on the coarsest level, ``fine_iter_ratio`` times as many (at least 15) on finer ones (default 1.0,
    was 0.5: on the benchmark the finer levels' Gauss-Newton ran out of iterations on flat optima; with
    60 the TNO self median fell from 1.54 to 1.23 px at about the same time, most runs stopping earlier
    on their own criterion).
    ``rewarp``: on every level after the search, the infrared image is warped onto the visible
    level grid by the current estimate and its structure maps are computed there, so that both
    images' maps see edges at the same scale and orientation (the infrared image may be scaled by
    up to 1.35 and rotated); Gauss-Newton then fits the remaining transform, and this is repeated
    up to ``rewarp`` times per level (default 2; 0: the infrared maps are computed once on its own
    grid and warped, the behaviour before 2026-12-05). On the registration benchmark this took the
    self medians from 1.24 / 0.70 / 0.81 to 0.78 / 0.43 / 0.54 px (TNO / RoadScene / FLIR).
    ``ir_mask`` / ``vi_mask``: optional arrays of each image's size, nonzero where its content may
    be matched (exclude a burnt-in overlay, a vignetted border, a region with no real content).
    Returns a :class:`Registration`; ``warped`` is the infrared image on the visible grid.
    """
    if model not in MODELS:
        raise InputError(f"unknown registration model {model!r}; use one of {', '.join(MODELS)}")
    if refine not in ("structure", "ecc") or search not in ("xcorr", "phase"):
        raise InputError(
            f"refine must be structure or ecc and search xcorr or phase, got {refine!r}, {search!r}"
        )
    gi = _gray_float(ir, "infrared image")
    gv = _gray_float(vi, "visible image")
    ir_size = (gi.shape[1], gi.shape[0])
    vi_size = (gv.shape[1], gv.shape[0])
    masks = []
    for mk, shape, name in ((ir_mask, gi.shape, "ir_mask"), (vi_mask, gv.shape, "vi_mask")):
        if mk is not None:
            mk = np.asarray(mk)
            if mk.shape[:2] != shape:
                raise InputError(f"{name} must have its image's size {shape[1]}x{shape[0]}")
            mk = (mk.reshape(shape[0], shape[1], -1).max(-1) > 0).astype(np.float32)
        masks.append(mk)
    # IR~ : the infrared image resampled to the visible size; s0 maps IR pixels to IR~ pixels
    s0 = _scale_matrix(vi_size[0] / ir_size[0], vi_size[1] / ir_size[1])
    motion = _ECC_MOTION[model]

    if finest is None:  # the infrared image's scale, but at least two levels above the search's
        finest = min(FINEST, max(max(ir_size), 2 * coarse))
    factors = _levels(vi_size, coarse, finest)
    levels = [_level_data(gv, gi, f, sigma, masks) for f in factors]
    if init is not None:
        # (IR~ -> VI at full resolution, first pyramid level to refine on)
        starts = [(np.asarray(init, dtype=np.float64) @ np.linalg.inv(s0), 0)]
    else:
        lv0 = levels[0]
        scored = _coarse_candidates(
            lv0, model, motion, max_rotation, scale_range, candidates, iterations, search
        )
        # refined from the next level on (the search's ECC already ran on this one); a pyramid of
        # one level (a small infrared image caps it at the coarse size) is refined on that level
        first = 1 if len(levels) > 1 else 0
        starts = [(np.linalg.inv(lv0.d) @ hl @ lv0.d, first) for _, hl in scored[: max(1, hypotheses)]]
    finals: list[tuple[float, np.ndarray]] = []
    for h_start, first in starts:
        h_full = _refine_levels(
            h_start, levels, first, model, motion, iterations, fine_iter_ratio, refine, rewarp, sigma
        )
        top = levels[-1]
        hl = top.d @ h_full @ np.linalg.inv(top.d)
        score = _feature_score(top.tv, _rotate_orientation(top.ti, _rotation_deg(hl)), hl, top.mv, top.mi)
        finals.append((score, h_full))
    # the hypothesis whose structure maps correlate best at the finest level
    h_full = max(finals, key=lambda p: p[0])[1]
    top = levels[-1]
    d, fv, fi, mv, mi = top.d, top.tv[..., 0].copy(), top.ti[..., 0].copy(), top.mv, top.mi
    h_full = _project(h_full, model, vi_size) if model != "homography" else h_full / h_full[2, 2]
    conf, overlap = _correlation(fv, fi, d @ h_full @ np.linalg.inv(d), mv, mi)
    matrix = h_full @ s0
    matrix = matrix / matrix[2, 2]
    consistency = float("nan")
    if check:
        # the same refinement with the roles swapped (visible onto infrared), started at the inverse
        back = register(
            gv,
            gi,
            model,
            init=np.linalg.inv(matrix),
            coarse=coarse,
            finest=finest,
            iterations=iterations,
            sigma=sigma,
            refine=refine,
            fine_iter_ratio=fine_iter_ratio,
            rewarp=rewarp,
            return_warped=False,
            ir_mask=masks[1],
            vi_mask=masks[0],
        )
        consistency = corner_error(np.linalg.inv(back.matrix), matrix, vi_size)
    warped = warp_image(np.asarray(ir), matrix, vi_size) if return_warped else None
    return Registration(
        matrix=matrix,
        model=model,
        confidence=conf,
        ir_size=ir_size,
        vi_size=vi_size,
        overlap=overlap,
        warped=warped,
        consistency=consistency,
    )


def align_pair(
    ir: np.ndarray,
    vi: np.ndarray,
    *,
    model: str = "homography",
    transform: Registration | str | os.PathLike | None = None,
    min_confidence: float | None = None,
    max_inconsistency: float | None = None,
    **options: Any,
) -> tuple[np.ndarray, Registration]:
    """The infrared image on the visible grid, ready to fuse with ``vi``: ``(warped_ir, registration)``.

    With ``transform`` (a :class:`Registration` or a JSON file of :func:`save_transform`), that
    transform is applied without estimating anything; the infrared size must match the one it was
    estimated on. Otherwise :func:`register` runs with ``model`` and ``options``. With
    ``min_confidence``, a registration of lower confidence raises :class:`RegistrationError`; with
    ``max_inconsistency`` (visible pixels), the visible image is also registered back onto the
    infrared one (``check=True``) and a forward/backward disagreement larger than that raises it too.
    """
    if transform is not None:
        reg = transform if isinstance(transform, Registration) else load_transform(transform)
        h, w = np.asarray(ir).shape[:2]
        if (w, h) != tuple(reg.ir_size):
            raise InputError(
                f"infrared image is {w}x{h} but the transform was estimated on "
                f"{reg.ir_size[0]}x{reg.ir_size[1]}"
            )
        vh, vw = np.asarray(vi).shape[:2]
        if (vw, vh) != tuple(reg.vi_size):
            raise InputError(
                f"visible image is {vw}x{vh} but the transform maps to {reg.vi_size[0]}x{reg.vi_size[1]}"
            )
        warped = reg.warp(np.asarray(ir))
        return warped, reg
    if max_inconsistency is not None and not max_inconsistency >= 0:
        raise InputError(f"max_inconsistency must be >= 0, got {max_inconsistency}")
    if max_inconsistency is not None:
        options["check"] = True
    reg = register(ir, vi, model, **options)
    if min_confidence is not None and reg.confidence < min_confidence:
        raise RegistrationError(
            f"registration confidence {reg.confidence:.3f} is below the threshold {min_confidence:.3f}"
        )
    if max_inconsistency is not None and not reg.consistency <= max_inconsistency:
        raise RegistrationError(
            f"forward and backward registration disagree by {reg.consistency:.2f} px, more than "
            f"the limit {max_inconsistency:g}"
        )
    assert reg.warped is not None
    return reg.warped, reg


class RegistrationError(InputError):
    """A registration too unreliable to use (confidence below the requested threshold)."""


# --------------------------------------------------------------------------------------------
# JSON files


def save_transform(reg: Registration, path: str | os.PathLike) -> Path:
    """Write ``reg``'s transform (model, matrix, image sizes, confidence) as JSON, atomically."""
    return io.atomic_write_text(path, json.dumps(reg.as_dict(), indent=2) + "\n")


def load_transform(path: str | os.PathLike) -> Registration:
    """Read a transform written by :func:`save_transform` (no warped image)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: not a readable JSON transform ({exc})") from None
    try:
        matrix = np.asarray(data["matrix"], dtype=np.float64)
        model = str(data["model"])
        ir_size = (int(data["ir_size"][0]), int(data["ir_size"][1]))
        vi_size = (int(data["vi_size"][0]), int(data["vi_size"][1]))
        confidence = float(data.get("confidence", float("nan")))
        overlap = float(data.get("overlap", 0.0))
        consistency = float(data.get("consistency_px", float("nan")))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"{p}: not an ivfuse transform ({exc!r})") from None
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-12:
        raise InputError(f"{p}: the matrix must be a finite, invertible 3x3 matrix")
    if model not in MODELS:
        raise InputError(f"{p}: unknown model {model!r}")
    return Registration(
        matrix=matrix,
        model=model,
        confidence=confidence,
        ir_size=ir_size,
        vi_size=vi_size,
        overlap=overlap,
        consistency=consistency,
    )


# --------------------------------------------------------------------------------------------
# what a fusion run applies


@dataclass(frozen=True)
class Alignment:
    """How a fusion run puts the infrared image on the visible grid (``ivfuse fuse --register`` /
    ``--transform``): estimate a transform with ``model`` for each pair (refused below
    ``min_confidence``, or above ``max_inconsistency`` px of forward/backward disagreement), or
    apply one fixed ``transform`` to every pair (a :class:`Registration`,
    or a JSON file of :func:`save_transform`, read once here: a fixed rig).

    :class:`ivfuse.api.Pipeline` applies it to every pair when set as ``pipeline.align``; video
    fusion (:func:`ivfuse.video.fuse_video`) estimates once, on the first frame pair.
    """

    model: str = "homography"
    transform: Registration | str | os.PathLike | None = None
    min_confidence: float | None = None
    max_inconsistency: float | None = None

    def __post_init__(self) -> None:
        if self.max_inconsistency is not None and not self.max_inconsistency >= 0:
            raise InputError(f"max_inconsistency must be >= 0, got {self.max_inconsistency}")
        if self.model not in MODELS:
            raise InputError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.transform is not None and not isinstance(self.transform, Registration):
            object.__setattr__(self, "transform", load_transform(self.transform))

    def apply(self, ir: np.ndarray, vi: np.ndarray) -> tuple[np.ndarray, Registration]:
        """``(warped_ir, registration)`` of one pair (:func:`align_pair`)."""
        return align_pair(
            ir, vi, model=self.model, transform=self.transform, min_confidence=self.min_confidence,
            max_inconsistency=self.max_inconsistency,
        )  # fmt: skip
