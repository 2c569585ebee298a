"""Temporal consistency of a fused video: flicker, plain and motion-compensated.

A fusion method applied frame by frame can flicker: its weights or its normalisation jump from one
frame to the next although the scene hardly changed. These measures compare the frame-to-frame
change of the fused video with that of its two sources. They are functions over whole sequences,
not per-image metrics, so they are not part of the profiles of :func:`ivfuse.metrics.evaluate`;
``ivfuse eval --video FUSED IR VI`` reports them (:func:`ivfuse.video.video_consistency`).

Definitions. Frames are luma planes on the 0..255 scale (colour frames: MATLAB ``rgb2gray``; uint16
divided by 257, as every ivfuse metric; floats taken to be on 0..255 already). For a sequence
``X_0 .. X_{T-1}`` the frame-to-frame change at pixel ``p`` is ``dX_t(p) = |X_{t+1}(p) - X_t(p)|``.
With the fused video ``F`` and the sources ``I`` (infrared) and ``V`` (visible), on one pixel grid:

    flicker = sum_t sum_p dF_t(p) / sum_t sum_p max(dI_t(p), dV_t(p))

* 0 for a fused video that does not change at all;
* exactly 1 when ``F`` is a source whose change is the larger one at every pixel (e.g. ``F = I = V``,
  or ``F = I`` with a static ``V``);
* at most 1 for every fusion ``F = w I + (1 - w) V`` with per-pixel weights ``0 <= w <= 1`` that do
  not change over time (triangle inequality): the pixel-wise larger source change bounds what a
  temporally stable fusion can inherit;
* above 1: the fused video changes more than either source somewhere, i.e. flicker the method added.

**Motion-compensated flicker** (``flicker_mc``): moving objects change the sources and the fused video
alike; to look at what is left, frame ``t + 1`` of all three videos is warped back onto frame ``t``
with the dense optical flow of the *visible* source from ``t`` to ``t + 1`` (OpenCV DIS,
``cv2.DISOpticalFlow``, preset medium, the default; or Farnebäck, ``cv2.calcOpticalFlowFarneback``,
pyramid 0.5 x 3 levels, window 15, with ``flow="farneback"``; DIS gives exactly zero flow between
identical frames, Farnebäck up to a quarter pixel): ``X'_{t+1}(p) = X_{t+1}(p + u_t(p))``
(bilinear), and the same ratio is taken over the pixels whose ``p + u_t(p)`` lies inside the frame.
The visible flow does not see what only the infrared camera sees (a person in smoke): such motion
still counts, in the fused video and in the bound alike.

If both sources are static (zero denominator) the value is 0 for a static fused video and ``inf``
otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..errors import InputError
from .validation import rgb2gray, to_scale255

__all__ = ["TemporalConsistency", "flicker", "flicker_mc", "frame_change", "temporal_consistency"]

FLOWS = ("farneback", "dis")


def _luma(frame: np.ndarray, role: str) -> np.ndarray:
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 3:
        a = rgb2gray(a)
    if a.ndim != 2:
        raise InputError(f"{role} frame: expected an HxW or HxWx3 image, got shape {a.shape}")
    return to_scale255(a)


def frame_change(frames: Iterable[np.ndarray]) -> float:
    """Mean absolute frame-to-frame change ``mean_t mean_p |X_{t+1}(p) - X_t(p)|`` of a sequence
    (0..255 scale; 0 for fewer than two frames)."""
    prev = None
    total, n = 0.0, 0
    for f in frames:
        x = _luma(f, "video")
        if prev is not None:
            if x.shape != prev.shape:
                raise InputError(f"frames change size: {prev.shape} then {x.shape}")
            total += float(np.abs(x - prev).mean())
            n += 1
        prev = x
    return total / n if n else 0.0


@dataclass(frozen=True)
class TemporalConsistency:
    """Result of :func:`temporal_consistency` (changes are mean absolute values per pixel and frame
    step, 0..255 scale; ``*_mc``: after motion compensation, over the valid pixels)."""

    frames: int
    flicker: float
    change_fused: float
    change_ir: float
    change_vi: float
    change_bound: float  # mean of max(dI, dV)
    flicker_mc: float | None = None
    change_fused_mc: float | None = None
    change_bound_mc: float | None = None
    flow: str | None = None

    def as_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return 0.0 if num == 0 else float("inf")


class _Flow:
    def __init__(self, method: str) -> None:
        if method not in FLOWS:
            raise InputError(f"flow must be one of {', '.join(FLOWS)}, got {method!r}")
        self.method = method
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None
        self.grid: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(map_x, map_y, valid) sending frame t+1 back onto frame t."""
        a = np.clip(np.rint(prev), 0, 255).astype(np.uint8)
        b = np.clip(np.rint(nxt), 0, 255).astype(np.uint8)
        if self.dis is not None:
            flow = self.dis.calc(a, b, None)
        else:
            flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        h, w = a.shape
        if self.grid is None or self.grid[0].shape != (h, w):
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            self.grid = (xx, yy)
        mx = self.grid[0] + flow[..., 0]
        my = self.grid[1] + flow[..., 1]
        valid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        return mx, my, valid


def temporal_consistency(
    fused: Iterable[np.ndarray],
    ir: Iterable[np.ndarray],
    vi: Iterable[np.ndarray],
    *,
    motion: bool = True,
    flow: str = "dis",
) -> TemporalConsistency:
    """Flicker and motion-compensated flicker of ``fused`` against ``ir`` and ``vi`` (see the module
    docstring), in one pass over three frame sequences of equal length and size (iterables:
    generators are read frame by frame, memory does not grow with the length). ``motion=False``
    skips the optical flow."""
    flow_fn = _Flow(flow) if motion else None
    prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    n = 0
    sums = dict.fromkeys(("f", "i", "v", "b", "f_mc", "b_mc"), 0.0)
    pix = pix_mc = 0
    sentinel = object()
    for trio in _zip3(fused, ir, vi, sentinel):
        f, i, v = (_luma(x, r) for x, r in zip(trio, ("fused", "infrared", "visible"), strict=True))
        if not (f.shape == i.shape == v.shape):
            raise InputError(
                f"frame {n}: fused {f.shape[::-1]}, infrared {i.shape[::-1]} and visible {v.shape[::-1]} "
                "sizes differ (register the infrared video first)"
            )
        n += 1
        if prev is not None:
            pf, pi, pv = prev
            if f.shape != pf.shape:
                raise InputError(f"frame {n - 1}: size changed from {pf.shape} to {f.shape}")
            df, di, dv = np.abs(f - pf), np.abs(i - pi), np.abs(v - pv)
            sums["f"] += float(df.sum())
            sums["i"] += float(di.sum())
            sums["v"] += float(dv.sum())
            sums["b"] += float(np.maximum(di, dv).sum())
            pix += df.size
            if flow_fn is not None:
                mx, my, valid = flow_fn(pv, v)

                def back(x: np.ndarray, mx=mx, my=my) -> np.ndarray:
                    return cv2.remap(
                        x.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
                    )

                mf = np.abs(back(f) - pf)[valid]
                mb = np.maximum(np.abs(back(i) - pi), np.abs(back(v) - pv))[valid]
                sums["f_mc"] += float(mf.sum())
                sums["b_mc"] += float(mb.sum())
                pix_mc += int(valid.sum())
        prev = (f, i, v)
    if n == 0:
        raise InputError("no frames")

    def mean(key: str, count: int) -> float:
        return sums[key] / count if count else 0.0

    mc = flow_fn is not None
    return TemporalConsistency(
        frames=n,
        flicker=_ratio(sums["f"], sums["b"]),
        change_fused=mean("f", pix),
        change_ir=mean("i", pix),
        change_vi=mean("v", pix),
        change_bound=mean("b", pix),
        flicker_mc=_ratio(sums["f_mc"], sums["b_mc"]) if mc else None,
        change_fused_mc=mean("f_mc", pix_mc) if mc else None,
        change_bound_mc=mean("b_mc", pix_mc) if mc else None,
        flow=flow if mc else None,
    )


def _zip3(a: Iterable, b: Iterable, c: Iterable, sentinel: object):
    ia, ib, ic = iter(a), iter(b), iter(c)
    while True:
        x, y, z = next(ia, sentinel), next(ib, sentinel), next(ic, sentinel)
        if x is sentinel and y is sentinel and z is sentinel:
            return
        if x is sentinel or y is sentinel or z is sentinel:
            raise InputError("the fused, infrared and visible sequences have different lengths")
        yield x, y, z


def flicker(fused: Iterable[np.ndarray], ir: Iterable[np.ndarray], vi: Iterable[np.ndarray]) -> float:
    """Flicker of a fused video against its sources (module docstring): 0 = static, <= 1 for a
    temporally stable fusion, > 1 = flicker added by the fusion. Lower is better."""
    return temporal_consistency(fused, ir, vi, motion=False).flicker


def flicker_mc(
    fused: Iterable[np.ndarray],
    ir: Iterable[np.ndarray],
    vi: Iterable[np.ndarray],
    *,
    flow: str = "dis",
) -> float:
    """Motion-compensated flicker (module docstring): the same ratio after warping frame t+1 back
    onto frame t with the visible video's optical flow. Lower is better."""
    value = temporal_consistency(fused, ir, vi, motion=True, flow=flow).flicker_mc
    assert value is not None
    return value
