"""Planes: validated images split into channels, with a memo of what several metrics share.

Colour (the ``vifb`` rule; docs/metrics.md)
    With a 3-channel fused image every two-source metric is ``mean_k metric(VI_k, IR_k, F_k)``
    where ``IR_k`` is the single infrared channel when the infrared image is gray (and ``VI_k``
    the visible image itself when that is gray). With a gray fused image, colour sources are
    converted with MATLAB's ``rgb2gray``. The ``gray`` rule (profile ``ma2019``) converts every
    colour image with ``rgb2gray`` and evaluates once. The ``mefb`` rule is ``vifb``'s, except
    that a colour fused image with two gray sources is evaluated on its red channel alone (MEFB's
    wrappers take ``fused(:,:,1)``).

Caching
    :class:`Plane` holds one 2-D channel and memoises what several metrics need (histograms,
    Gaussian moments, Sobel gradients, FFTs of the normalised image), so
    :func:`ivfuse.metrics.evaluate` computes each of them once however many metrics ask for it;
    a 3-channel infrared image whose channels are equal is one plane, shared by the three colour
    channels. The public metric functions build fresh planes, so they stay pure. Arrays of cached
    results come from :data:`ivfuse.metrics.buffers.POOL` and go back to it on release.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..errors import InputError
from .buffers import POOL
from .filters import filter_valid, fspecial_gaussian_1d, histogram, lut_u8, sobel, sobel_dtype
from .validation import check_image, check_same_size, levels, rgb2gray, to_scale255

__all__ = ["Plane", "Prepared", "Triple", "channel_mean", "make_plane", "memo_get", "prepare"]

T = TypeVar("T")

_LOCKS_GUARD = threading.Lock()


def memo_get(
    memo: dict[Hashable, Any], locks: dict[Hashable, threading.Lock], key: Hashable, fn: Callable[[], T]
) -> T:
    """``memo[key]``, computing it with ``fn()`` once even when several threads ask at the same
    time (one lock per key; values depend on other keys without cycles, so this cannot
    deadlock)."""
    try:
        return memo[key]
    except KeyError:
        pass
    with _LOCKS_GUARD:
        lock = locks.get(key)
        if lock is None:
            lock = locks[key] = threading.Lock()
    with lock:
        try:
            return memo[key]
        except KeyError:
            val = fn()
            memo[key] = val
            return val


def _minmax_formula(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """round(255 (v - lo) / (hi - lo)) as in Z. Liu's ``normalize1`` (round half away)."""
    return np.floor((v - lo) / (hi - lo) * 255.0 + 0.5)


def _is_8bit(x: np.ndarray) -> bool:
    """Whether a float image holds only the integers 0..255."""
    if x.size == 0 or not (0.0 <= float(x.min()) and float(x.max()) <= 255.0):
        return False
    return bool(np.array_equal(x, np.floor(x)))


class Plane:
    """One 2-D channel on the 0..255 scale with a memo of derived quantities.

    ``u8`` holds the values when they are the integers 0..255 (uint8 input, or another dtype
    holding only such values), else None; ``x`` is the float64 image, built on first use for
    uint8 input.
    """

    __slots__ = ("u8", "_x", "_memo", "_locks", "_owned", "shape", "size")

    def __init__(self, data: np.ndarray):
        self.u8: np.ndarray | None = None
        self._x: np.ndarray | None = None
        if data.dtype == np.uint8:
            self.u8 = np.ascontiguousarray(data)
        else:
            x = np.ascontiguousarray(to_scale255(data))
            if _is_8bit(x):  # e.g. uint16 = 257 k, or floats holding integers: the exact paths
                self.u8 = x.astype(np.uint8)
            self._x = x
        self._memo: dict[Hashable, Any] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._owned: list[np.ndarray] = []
        self.shape: tuple[int, int] = (int(data.shape[0]), int(data.shape[1]))
        self.size = self.shape[0] * self.shape[1]

    @property
    def x(self) -> np.ndarray:
        """The image as float64 (0..255 scale)."""
        if self._x is None:
            assert self.u8 is not None
            self._x = self.u8.astype(np.float64)
        return self._x

    @property
    def data(self) -> np.ndarray:
        """The cheapest exact representation: the uint8 values, else the float64 image."""
        return self.u8 if self.u8 is not None else self.x

    def square(self, out: np.ndarray | None = None) -> np.ndarray:
        """x^2 (exact ``uint16`` for 8-bit planes, else float64)."""
        if self.u8 is not None:
            return np.multiply(self.u8, self.u8, out=out, dtype=np.uint16)
        return np.multiply(self.x, self.x, out=out)

    def product(self, other: Plane, out: np.ndarray | None = None) -> np.ndarray:
        """x * y with another plane (exact ``uint16`` when both are 8-bit, else float64)."""
        if self.u8 is not None and other.u8 is not None:
            return np.multiply(self.u8, other.u8, out=out, dtype=np.uint16)
        return np.multiply(self.x, other.x, out=out)

    def cached(self, key: Hashable, fn: Callable[[], T]) -> T:
        """Return ``fn()`` computed once per plane and key (thread-safe)."""
        return memo_get(self._memo, self._locks, key, fn)

    def alloc(self, dtype: Any = np.float64, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """An array (image-sized unless ``shape`` is given) from :data:`POOL` for a cached result
        of this plane; it goes back to the pool when the plane is released."""
        arr = POOL.take(self.shape if shape is None else shape, dtype)
        self._owned.append(arr)
        return arr

    def release(self) -> None:
        """Forget the memo (and the float64 copy of an 8-bit plane); give the arrays of the
        cached results back to :data:`POOL`. Nothing computed from this plane before may be
        used afterwards."""
        for v in list(self._memo.values()):
            if isinstance(v, Plane) and v is not self:  # e.g. the normalised image
                v.release()
        self._memo.clear()
        self._locks.clear()
        owned, self._owned = self._owned, []
        POOL.give(*owned)
        if self.u8 is not None:
            self._x = None

    # ---- quantities shared by several metrics

    def levels(self) -> np.ndarray:
        """Integer grey levels 0..255 as uint8 (the values themselves for 8-bit planes)."""
        if self.u8 is not None:
            return self.u8
        return self.cached("levels", lambda: levels(self.x))

    def hist_counts(self) -> np.ndarray:
        """256-bin histogram (counts) of the integer levels."""
        return self.cached("hist_counts", lambda: histogram([self.levels()]).ravel())

    def hist(self) -> np.ndarray:
        """256-bin probability histogram of the integer levels."""
        return self.cached("hist", lambda: self.hist_counts() / self.size)

    def minmax(self) -> tuple[float, float]:
        def compute() -> tuple[float, float]:
            d = self.data
            return float(d.min()), float(d.max())

        return self.cached("minmax", compute)

    def mi_levels(self) -> np.ndarray:
        """VIFB Mutinf quantisation: own min-max stretch, round(255 *) (int16 cast), as uint8.

        For 8-bit planes the stretch maps distinct levels to distinct levels (its slope is at
        least 1), so it only relabels the histogram bins and the raw levels give the same MI;
        they are returned as they are.
        """
        if self.u8 is not None:
            return self.u8

        def compute() -> np.ndarray:
            lo, hi = self.minmax()
            if hi == lo:
                return np.zeros(self.shape, np.uint8)
            return _minmax_formula(self.x, lo, hi).astype(np.uint8)

        return self.cached("mi_levels", compute)

    def norm_plane(self) -> Plane:
        """Z. Liu's ``normalize1`` (min-max to 0..255, rounded; a constant image gives zeros) as
        an 8-bit plane; the plane itself when that is the identity (8-bit, min 0, max 255), so
        the normalised and the original image share their cached gradients and FFTs."""

        def compute() -> Plane:
            lo, hi = self.minmax()
            if hi == lo:
                return Plane(np.zeros(self.shape, np.uint8))
            if self.u8 is not None:
                if lo == 0 and hi == 255:
                    return self
                table = _minmax_formula(np.arange(256, dtype=np.float64).clip(lo, hi), lo, hi)
                return Plane(lut_u8(self.u8, table.astype(np.uint8)))
            return Plane(_minmax_formula(self.x, lo, hi).astype(np.uint8))

        return self.cached("norm_plane", compute)

    def gauss_moments(self, size: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """'valid' Gaussian-window mean and mean of squares, as full-size arrays (``keep_size``
        of :func:`sep_filter`: crop with :func:`valid`)."""

        def compute() -> tuple[np.ndarray, np.ndarray]:
            k = fspecial_gaussian_1d(size, sigma)
            return (
                filter_valid(self.data, k, keep_size=True),
                filter_valid(self.square(), k, keep_size=True),
            )

        return self.cached(("gauss", size, sigma), compute)

    def sobel(self, border: str) -> tuple[np.ndarray, np.ndarray]:
        """(dx, dy) of :func:`sobel` (exact int16 for 8-bit planes)."""

        def compute() -> tuple[np.ndarray, np.ndarray]:
            dt = sobel_dtype(self.data)
            return sobel(self.data, border, out=(self.alloc(dt), self.alloc(dt)))

        return self.cached(("sobel", border), compute)


@dataclass
class Triple:
    """Fused channel with the two source channels it is compared with (A = visible, B = IR).

    ``memo`` holds quantities of (source, fused) pairs, keyed by the source plane identity,
    so that pair statistics shared by several metrics are computed once.
    """

    fused: Plane
    vi: Plane | None
    ir: Plane | None
    memo: dict[Hashable, Any] = field(default_factory=dict)
    locks: dict[Hashable, threading.Lock] = field(default_factory=dict, repr=False)
    owned: list[np.ndarray] = field(default_factory=list, repr=False)

    def sources(self, metric: str) -> tuple[Plane, Plane]:
        """(A, B) = (visible, infrared); raise if a source is missing."""
        if self.vi is None or self.ir is None:
            missing = " and ".join(n for n, p in (("infrared", self.ir), ("visible", self.vi)) if p is None)
            raise InputError(f"{metric} needs the source images; the {missing} image is missing")
        return self.vi, self.ir

    def cached(self, key: Hashable, fn: Callable[[], T]) -> T:
        """Return ``fn()`` computed once per triple and key (thread-safe)."""
        return memo_get(self.memo, self.locks, key, fn)

    def alloc(self, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """An array from :data:`POOL` for a cached pair result (see :meth:`Plane.alloc`)."""
        arr = POOL.take(shape, dtype)
        self.owned.append(arr)
        return arr

    def release(self) -> None:
        """Forget the pair quantities and give their arrays back to :data:`POOL`."""
        self.memo.clear()
        self.locks.clear()
        owned, self.owned = self.owned, []
        POOL.give(*owned)

    def joint_counts(self, src: Plane, stretch: bool = False) -> np.ndarray:
        """256 x 256 joint histogram (counts, :func:`histogram`) of the levels of ``src`` (rows)
        and of the fused plane (columns); ``stretch`` uses VIFB's min-max stretched levels
        (:meth:`Plane.mi_levels`), which for 8-bit planes are the levels themselves."""
        f = self.fused
        stretch = stretch and (src.u8 is None or f.u8 is None)

        def compute() -> np.ndarray:
            a = src.mi_levels() if stretch else src.levels()
            b = f.mi_levels() if stretch else f.levels()
            return histogram([a, b])

        return self.cached(("joint", id(src), stretch), compute)


# --------------------------------------------------------------------------------------------
# building planes from user input


@dataclass
class Prepared:
    """Validated inputs split into channel triples according to a colour rule."""

    triples: list[Triple]
    fused_channels: list[Plane]  # the fused planes in channel order (for whole-image metrics)
    reference: list[Plane] | None = None  # ground-truth channels (reference-based metrics)


def make_plane(arr2d: np.ndarray) -> Plane:
    """Plane of a 2-D array (8-bit values kept as they are)."""
    return Plane(arr2d)


def _plane_list(arr: np.ndarray, collapse: bool = False) -> list[Plane]:
    """One plane per channel; with ``collapse`` a colour image whose channels are all equal
    (VIFB's 3-channel infrared JPEGs) gives a single plane, which is exactly equivalent."""
    if arr.ndim == 2:
        return [Plane(arr)]
    chans = np.ascontiguousarray(np.moveaxis(arr, 2, 0))  # one pass: three contiguous planes
    if collapse and np.array_equal(chans[0], chans[1]) and np.array_equal(chans[0], chans[2]):
        return [Plane(chans[0])]
    return [Plane(c) for c in chans]


def prepare(
    fused: Any,
    ir: Any = None,
    vi: Any = None,
    *,
    color: str = "vifb",
    reference: Any = None,
    need_sources: bool = False,
    metric: str = "metric",
) -> Prepared:
    """Validate inputs and split them into :class:`Triple` objects under a colour rule.

    ``color='vifb'``: per-channel triples for a colour fused image (mean over them later);
    ``color='gray'``: everything converted with ``rgb2gray``, one triple; ``color='mefb'``: as
    ``'vifb'``, except that a colour fused image with two gray sources is evaluated on its first
    (red) channel alone, as every wrapper of MEFB's ``metrics*.m`` does (``fused(:,:,1)``).
    """
    if color not in ("vifb", "gray", "mefb"):
        raise InputError(f"unknown colour rule {color!r} (use 'vifb', 'gray' or 'mefb')")
    f = check_image(fused, "fused")
    srcs: dict[str, np.ndarray | None] = {}
    for role, val in (("infrared", ir), ("visible", vi)):
        if val is None:
            srcs[role] = None
            continue
        s = check_image(val, role)
        check_same_size(f, s, role)
        srcs[role] = s
    if need_sources and (srcs["infrared"] is None or srcs["visible"] is None):
        missing = " and ".join(r for r in ("infrared", "visible") if srcs[r] is None)
        raise InputError(f"{metric} needs the source images; the {missing} image is missing")
    ref = None
    if reference is not None:
        r = check_image(reference, "reference")
        check_same_size(f, r, "reference")
        ref = r
    ir_a, vi_a = srcs["infrared"], srcs["visible"]
    if color == "mefb" and f.ndim == 3 and ir_a is not None and vi_a is not None:
        if ir_a.ndim == 2 and vi_a.ndim == 2:
            f = np.ascontiguousarray(f[:, :, 0])

    if color == "gray" or f.ndim == 2:
        fp = make_plane(rgb2gray(f))
        vip = make_plane(rgb2gray(vi_a)) if vi_a is not None else None
        irp = make_plane(rgb2gray(ir_a)) if ir_a is not None else None
        refp = [make_plane(rgb2gray(ref))] if ref is not None else None
        return Prepared([Triple(fp, vip, irp)], [fp], refp)

    fps = _plane_list(f)
    irps = _plane_list(ir_a, collapse=True) if ir_a is not None else None
    vips = _plane_list(vi_a, collapse=True) if vi_a is not None else None
    triples = []
    for k, fp in enumerate(fps):
        irp = None if irps is None else irps[k if len(irps) > 1 else 0]
        vip = None if vips is None else vips[k if len(vips) > 1 else 0]
        triples.append(Triple(fp, vip, irp))
    refp = None
    if ref is not None:
        rps = _plane_list(ref)
        refp = [rps[k if len(rps) > 1 else 0] for k in range(len(fps))]
    return Prepared(triples, fps, refp)


def channel_mean(values: Sequence[float]) -> float:
    """Mean of per-channel results (NaN propagates, as in MATLAB's ``mean``)."""
    return float(math.fsum(values) / len(values)) if values else float("nan")
