"""Filters of the metrics: separable correlations, Sobel, histograms, look-up tables, blocks.

Separable correlations run on OpenCV (``sepFilter2D`` / ``Sobel``, float64 accumulation, or
exact 16-bit integers for Sobel on 8-bit data). ``set_filter_impl("scipy")`` switches to
``scipy.ndimage`` (and ``np.bincount`` / ``np.take`` for histograms and look-up tables), an
independent implementation kept to cross-check the border handling (both agree to ~1e-15;
tested). The choice is process-wide; :func:`filter_impl` sets it for a ``with`` block.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from ..errors import InputError

__all__ = [
    "FILTER_IMPLS",
    "block_sums",
    "box_downsample",
    "filter_impl",
    "filter_valid",
    "fspecial_gaussian_1d",
    "get_filter_impl",
    "histogram",
    "lut_u8",
    "sep_filter",
    "set_filter_impl",
    "sobel",
    "sobel_dtype",
    "valid",
]

#: the implementations :func:`set_filter_impl` accepts
FILTER_IMPLS = ("opencv", "scipy")


class _FilterImpl:
    """The process-wide filter implementation (read by every filter of this module)."""

    def __init__(self) -> None:
        self.name = "opencv"
        self.lock = threading.Lock()

    @property
    def opencv(self) -> bool:
        return self.name == "opencv"


_IMPL = _FilterImpl()


def get_filter_impl() -> str:
    """The filter implementation in use: ``'opencv'`` (default) or ``'scipy'``."""
    return _IMPL.name


def set_filter_impl(name: str) -> str:
    """Run the metric filters on ``'opencv'`` (default) or ``'scipy'`` (``scipy.ndimage``,
    float64 throughout); returns the previous choice. Both give the same values up to
    floating-point round-off; the SciPy path exists to cross-check the OpenCV one. Not to be
    confused with :mod:`ivfuse.backends` (the inference engines of the fusion networks)."""
    if name not in FILTER_IMPLS:
        raise ValueError(f"unknown filter implementation {name!r} (use 'opencv' or 'scipy')")
    with _IMPL.lock:
        old, _IMPL.name = _IMPL.name, name
    return old


@contextmanager
def filter_impl(name: str) -> Iterator[str]:
    """``with filter_impl("scipy"): ...`` runs the block on that implementation, then restores
    the previous one."""
    old = set_filter_impl(name)
    try:
        yield name
    finally:
        set_filter_impl(old)


_CV_BORDER = {
    "valid": cv2.BORDER_REFLECT_101,  # any: the border part is cut off
    "zero": cv2.BORDER_CONSTANT,  # OpenCV's constant is 0
    "replicate": cv2.BORDER_REPLICATE,
    "mirror": cv2.BORDER_REFLECT_101,
}
_SCIPY_MODE = {"zero": "constant", "replicate": "nearest", "mirror": "mirror", "valid": "constant"}
_CV_DEPTHS = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


def sep_filter(
    x: np.ndarray,
    kr: np.ndarray,
    kc: np.ndarray,
    border: str = "valid",
    *,
    keep_size: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Correlate ``x`` with the separable kernel ``kr[:, None] * kc[None, :]`` (odd lengths);
    float64 result, accumulated in float64 (``x`` may be uint8/uint16/float), written into
    ``out`` (a full-size C-contiguous float64 array) when given.

    ``border``: ``'valid'`` (MATLAB ``filter2(..., 'valid')``: only fully covered pixels),
    ``'zero'`` (``filter2(..., 'same')``, zero padding), ``'replicate'`` (``imfilter(...,
    'replicate')``) or ``'mirror'`` (reflection without repeating the edge, pyrTools
    ``'reflect1'``). With ``keep_size`` a ``'valid'`` result comes as the full-size array whose
    :func:`valid` part it is (the margin holds values of some border rule): element-wise work on
    contiguous arrays is much faster than on the cropped views, so metrics crop last.
    """
    hr, hc = kr.size // 2, kc.size // 2
    m, n = x.shape
    if border == "valid" and (m < kr.size or n < kc.size):
        raise InputError(f"image of {n}x{m} pixels is smaller than the {kc.size}x{kr.size} metric window")
    if _IMPL.opencv and not (border == "mirror" and (m <= hr or n <= hc)):
        if x.dtype not in _CV_DEPTHS:
            x = x.astype(np.float64)
        y = cv2.sepFilter2D(
            np.ascontiguousarray(x),
            cv2.CV_64F,
            np.asarray(kc, dtype=np.float64),
            np.asarray(kr, dtype=np.float64),
            dst=out,
            borderType=_CV_BORDER[border],
        )
        if out is not None and y is not out:  # pragma: no cover - OpenCV reallocated
            out[...] = y
            y = out
    else:
        mode = _SCIPY_MODE[border]
        y = ndimage.correlate1d(np.asarray(x, dtype=np.float64), kr, axis=0, mode=mode)
        y = ndimage.correlate1d(y, kc, axis=1, mode=mode, output=out)
    if border == "valid" and not keep_size:
        return y[hr : m - hr, hc : n - hc]
    return y


def valid(y: np.ndarray, size: int) -> np.ndarray:
    """The 'valid' part of a ``keep_size`` result of a size x size window (a view)."""
    h = size // 2
    return y[h : y.shape[0] - h, h : y.shape[1] - h]


def fspecial_gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB ``fspecial('gaussian', size, sigma)`` (normalised to sum 1).

    MATLAB's 2-D kernel is the outer product of this vector with itself: its ``eps * max``
    cut-off removes nothing for the windows used here (11/1.5, 7/1.5, 17/3.4, 9/1.8, 5/1, 3/0.6),
    and the separable product is normalised exactly as the 2-D one.
    """
    r = (size - 1) / 2.0
    t = np.arange(size, dtype=np.float64) - r
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def filter_valid(
    x: np.ndarray, k: np.ndarray, *, keep_size: bool = False, out: np.ndarray | None = None
) -> np.ndarray:
    """``filter2(k ⊗ k, x, 'valid')`` for a symmetric 1-D kernel ``k`` (see :func:`sep_filter`
    for ``keep_size`` and ``out``)."""
    return sep_filter(x, k, k, "valid", keep_size=keep_size, out=out)


_SMOOTH = np.array([1.0, 2.0, 1.0])
_DIFF = np.array([-1.0, 0.0, 1.0])
_CV_SOBEL_BORDER = {"zero": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


def sobel(
    x: np.ndarray, border: str, out: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dy): correlation with ``[1 2 1]' * [-1 0 1]`` and ``[-1 0 1]' * [1 2 1]`` (OpenCV's
    Sobel) with ``border`` ``'zero'`` or ``'replicate'``, into ``out`` when given.

    For ``uint8`` input the responses are exact ``int16`` integers, otherwise float64
    (:func:`sobel_dtype`).
    """
    ox, oy = out if out is not None else (None, None)
    if _IMPL.opencv:
        depth = cv2.CV_16S if x.dtype == np.uint8 else cv2.CV_64F
        if x.dtype not in _CV_DEPTHS:
            x = x.astype(np.float64)
        b = _CV_SOBEL_BORDER[border]
        dx = cv2.Sobel(x, depth, 1, 0, dst=ox, ksize=3, borderType=b)
        dy = cv2.Sobel(x, depth, 0, 1, dst=oy, ksize=3, borderType=b)
        return dx, dy
    dx = sep_filter(x, _SMOOTH, _DIFF, border)
    dy = sep_filter(x, _DIFF, _SMOOTH, border)
    if x.dtype == np.uint8:  # the same exact integers as OpenCV's 16-bit responses
        return dx.astype(np.int16), dy.astype(np.int16)
    return dx, dy


def sobel_dtype(x: np.ndarray) -> Any:
    """dtype of :func:`sobel`'s responses for input ``x``."""
    return np.int16 if x.dtype == np.uint8 else np.float64


def histogram(levels: Sequence[np.ndarray]) -> np.ndarray:
    """Counts (int64) of the 256 levels of one uint8 image, or the 256 x 256 joint histogram of
    two (rows: the first image). OpenCV's ``calcHist`` (float32 counts, exact below 2^24
    pixels), else ``np.bincount`` (on ``256 a + b`` for two)."""
    size = levels[0].size
    if _IMPL.opencv and size < 1 << 24:
        dims = len(levels)
        h = cv2.calcHist(list(levels), list(range(dims)), None, [256] * dims, [0, 256] * dims)
        return h.astype(np.int64).reshape((256,) * dims)
    if len(levels) == 1:
        return np.bincount(levels[0].ravel(), minlength=256)
    key = np.left_shift(levels[0], 8, dtype=np.uint16)
    key |= levels[1]
    return np.bincount(key.ravel(), minlength=65536).reshape(256, 256)


def lut_u8(u8: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[u8]`` for a 256-entry ``uint8`` table."""
    if _IMPL.opencv:
        return cv2.LUT(u8, table)
    return np.take(table, u8)


def box_downsample(x: np.ndarray, f: int) -> np.ndarray:
    """``imfilter(x, ones(f)/f^2, 'symmetric', 'same')`` followed by ``x(1:f:end, 1:f:end)``.

    With the stride equal to the window, each kept output is the mean of one f x f block of the
    symmetrically padded image (MATLAB anchors the window at ``floor((f+1)/2)``).
    """
    if f <= 1:
        return x
    c = (f + 1) // 2
    m, n = x.shape
    om, on = -(-m // f), -(-n // f)
    before = c - 1
    pad_m = om * f - m - before
    pad_n = on * f - n - before
    p = np.pad(x, ((before, max(pad_m, 0)), (before, max(pad_n, 0))), mode="symmetric")
    p = p[: om * f, : on * f]
    return p.reshape(om, f, on, f).mean(axis=(1, 3))


def block_sums(x: np.ndarray, b: int) -> np.ndarray:
    """Sums over non-overlapping b x b blocks from the top left; partial blocks at the right and
    bottom are kept (as MATLAB ``blkproc``'s zero padding does)."""
    m, n = x.shape
    rows = np.add.reduceat(x, np.arange(0, m, b), axis=0)
    return np.add.reduceat(rows, np.arange(0, n, b), axis=1)
