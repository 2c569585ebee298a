"""Shared machinery of the metrics: input validation, colour handling, filters, cached planes.

Value scale
    Every metric works on intensities on the **8-bit scale 0..255**, exactly as VIFB's MATLAB
    code does after ``double(imread(...))``: there is no rescaling to [0, 1].

    * ``uint8`` arrays are used as they are;
    * ``uint16`` arrays are mapped with ``v / 257`` (65535 -> 255);
    * float arrays are taken to be on the 0..255 scale already (a network output in [0, 1] must
      be multiplied by 255 first);
    * histogram-based metrics quantise to the 256 integer levels (round half away from zero,
      clip to 0..255), which leaves 8-bit data unchanged.

Colour (the ``vifb`` rule, section 1 of ``design/metrics.md``)
    With a 3-channel fused image every two-source metric is ``mean_k metric(VI_k, IR_k, F_k)``
    where ``IR_k`` is the single infrared channel when the infrared image is gray (and ``VI_k``
    the visible image itself when that is gray). With a gray fused image, colour sources are
    converted with MATLAB's ``rgb2gray``. The ``gray`` rule (profile ``ma2019``) converts every
    colour image with ``rgb2gray`` and evaluates once.

Caching
    :class:`Plane` holds one 2-D channel and memoises what several metrics need (histograms,
    Gaussian moments, gradients, FFTs), so :func:`ivfuse.metrics.evaluate` computes each of them
    once however many metrics ask for it. The public metric functions build fresh planes, so
    they stay pure.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from scipy import ndimage

from ..errors import InputError

T = TypeVar("T")

#: MATLAB ``rgb2gray`` weights (the exact ones it uses: the inverse of the NTSC YIQ matrix row).
RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)


# --------------------------------------------------------------------------------------------
# validation and conversion


def check_image(x: Any, role: str) -> np.ndarray:
    """Validate one input array; return it as a C-contiguous array (dtype preserved).

    Accepts (H, W), (H, W, 1) and (H, W, 3) arrays of an integer, bool-free numeric or float
    dtype with finite values. Raises :class:`InputError` otherwise.
    """
    if x is None:
        raise InputError(f"{role} image is missing")
    arr = np.asarray(x)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InputError(f"{role} image has unsupported dtype {arr.dtype} (use uint8, uint16 or float)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise InputError(f"{role} image must be (H, W) gray or (H, W, 3) RGB, got shape {tuple(np.shape(x))}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InputError(f"{role} image is too small ({arr.shape[1]}x{arr.shape[0]} pixels)")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(f"{role} image contains NaN or infinite values")
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise InputError(f"{role} image has negative values")
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype not in (np.uint8, np.uint16) and arr.max() > 255:
        raise InputError(
            f"{role} image of dtype {arr.dtype} has values above 255; give uint8, or uint16 for "
            "16-bit data (mapped with / 257)"
        )
    if np.issubdtype(arr.dtype, np.floating) and arr.size and 0 < float(arr.max()) <= 1.0:
        warnings.warn(
            f"{role} image is float with values in [0, 1]; metrics use the 0..255 scale "
            "(multiply by 255 first)",
            UserWarning,
            stacklevel=3,
        )
    return np.ascontiguousarray(arr)


def check_same_size(fused: np.ndarray, other: np.ndarray, role: str) -> None:
    """Raise :class:`InputError` unless ``other`` has the height and width of ``fused``."""
    if fused.shape[:2] != other.shape[:2]:
        raise InputError(
            f"{role} image is {other.shape[1]}x{other.shape[0]} but the fused image is "
            f"{fused.shape[1]}x{fused.shape[0]}; metrics need images of equal size"
        )


def to_scale255(arr: np.ndarray) -> np.ndarray:
    """float64 copy of ``arr`` on the 0..255 scale (see the module docstring)."""
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 257.0
    return arr.astype(np.float64)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round``: halves go away from zero (numpy's ``round`` goes to even)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def rgb2gray(arr: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray``: weighted sum of R, G, B; integer inputs are rounded back to integers.

    Gray (2-D) input is returned unchanged. The result keeps the input's dtype for uint8/uint16.
    """
    if arr.ndim == 2:
        return arr
    w = np.asarray(RGB2GRAY)
    gray = arr.astype(np.float64) @ w
    if np.issubdtype(arr.dtype, np.integer):
        return round_half_away(gray).astype(arr.dtype)
    return gray


def levels(x: np.ndarray) -> np.ndarray:
    """Integer grey levels 0..255 of a 0..255-scale image (round half away, clip)."""
    q = np.floor(x + 0.5)
    np.clip(q, 0, 255, out=q)
    return q.astype(np.intp)


# --------------------------------------------------------------------------------------------
# filters (separable; OpenCV's SIMD ``sepFilter2D`` when it is installed, scipy.ndimage otherwise;
# both compute the same sums in float64, equal to ~1e-15)

try:  # optional accelerators; results agree with the plain path to ~1e-12 (tested)
    import cv2 as _cv2
except ImportError:  # pragma: no cover - depends on the environment
    _cv2 = None
try:
    import numexpr as _ne
except ImportError:  # pragma: no cover - depends on the environment
    _ne = None

_FAST = True


def backend() -> str:
    """The engines in use: filters (opencv or scipy) + element-wise maps (numexpr or numpy)."""
    filt = "opencv" if (_FAST and _cv2 is not None) else "scipy"
    expr = "numexpr" if (_FAST and _ne is not None) else "numpy"
    return f"{filt}+{expr}"


def use_backend(name: str) -> str:
    """``'fast'`` (OpenCV / numexpr where installed) or ``'plain'`` (scipy / numpy only).

    Returns the previous setting. Both give the same values up to floating-point round-off.
    """
    global _FAST
    if name not in ("fast", "plain"):
        raise ValueError(f"unknown backend {name!r} (use 'fast' or 'plain')")
    old = "fast" if _FAST else "plain"
    _FAST = name == "fast"
    return old


_NP_FUNCS = {
    "where": np.where,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "arctan": np.arctan,
    "abs": np.abs,
    "log10": np.log10,
    "log": np.log,
    "pi": math.pi,
}


def ev(expr: str, **arrays: Any) -> np.ndarray:
    """Evaluate an element-wise expression in one pass (numexpr) or with numpy.

    The expression uses numexpr's vocabulary (``where``, ``exp``, ``sqrt``, ``arctan``, ``abs``,
    ``log10``), which the numpy fallback maps to the numpy functions of the same name. Division
    by zero gives inf / NaN silently, as in MATLAB.
    """
    if _FAST and _ne is not None:
        return _ne.evaluate(expr, local_dict=arrays, global_dict={"pi": math.pi})
    with np.errstate(all="ignore"):
        return eval(expr, {"__builtins__": {}, **_NP_FUNCS}, arrays)  # noqa: S307 - fixed strings


_SCIPY_MODE = {"zero": "constant", "replicate": "nearest", "mirror": "mirror", "valid": "constant"}


def sep_filter(x: np.ndarray, kr: np.ndarray, kc: np.ndarray, border: str = "valid") -> np.ndarray:
    """Correlate ``x`` with the separable kernel ``kr[:, None] * kc[None, :]`` (odd lengths).

    ``border``: ``'valid'`` (MATLAB ``filter2(..., 'valid')``: only fully covered pixels),
    ``'zero'`` (``filter2(..., 'same')``, zero padding), ``'replicate'`` (``imfilter(...,
    'replicate')``) or ``'mirror'`` (reflection without repeating the edge, pyrTools
    ``'reflect1'``).
    """
    hr, hc = kr.size // 2, kc.size // 2
    m, n = x.shape
    if border == "valid" and (m < kr.size or n < kc.size):
        raise InputError(f"image of {n}x{m} pixels is smaller than the {kc.size}x{kr.size} metric window")
    if _FAST and _cv2 is not None:
        x = np.ascontiguousarray(x, dtype=np.float64)
        kx = np.ascontiguousarray(kc, dtype=np.float64)
        ky = np.ascontiguousarray(kr, dtype=np.float64)
        if border == "valid":
            y = _cv2.sepFilter2D(x, _cv2.CV_64F, kx, ky, borderType=_cv2.BORDER_REFLECT_101)
            return y[hr : m - hr, hc : n - hc]
        if border == "zero":
            p = _cv2.copyMakeBorder(x, hr, hr, hc, hc, _cv2.BORDER_CONSTANT, value=0)
            y = _cv2.sepFilter2D(p, _cv2.CV_64F, kx, ky, borderType=_cv2.BORDER_CONSTANT)
            return y[hr : hr + m, hc : hc + n]
        if border == "replicate":
            return _cv2.sepFilter2D(x, _cv2.CV_64F, kx, ky, borderType=_cv2.BORDER_REPLICATE)
        if border == "mirror" and m > hr and n > hc:
            return _cv2.sepFilter2D(x, _cv2.CV_64F, kx, ky, borderType=_cv2.BORDER_REFLECT_101)
    mode = _SCIPY_MODE[border]
    y = ndimage.correlate1d(x, kr, axis=0, mode=mode)
    y = ndimage.correlate1d(y, kc, axis=1, mode=mode)
    if border == "valid":
        return y[hr : m - hr, hc : n - hc]
    return y


def filter_zero_many(x: np.ndarray, kernels: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``filter2(k ⊗ k, x, 'same')`` (zero padding) for several symmetric odd 1-D kernels of the
    same length, padding ``x`` once."""
    n = kernels[0].size
    if not (_FAST and _cv2 is not None) or any(k.size != n for k in kernels):
        return [sep_filter(x, k, k, "zero") for k in kernels]
    h = n // 2
    m, w = x.shape
    p = _cv2.copyMakeBorder(
        np.ascontiguousarray(x, dtype=np.float64), h, h, h, h, _cv2.BORDER_CONSTANT, value=0
    )
    out = []
    for k in kernels:
        k = np.ascontiguousarray(k, dtype=np.float64)
        out.append(
            _cv2.sepFilter2D(p, _cv2.CV_64F, k, k, borderType=_cv2.BORDER_CONSTANT)[h : h + m, h : h + w]
        )
    return out


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


def filter_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``filter2(k ⊗ k, x, 'valid')`` for a symmetric 1-D kernel ``k``."""
    return sep_filter(x, k, k, "valid")


def filter_same(x: np.ndarray, kr: np.ndarray, kc: np.ndarray, mode: str = "zero") -> np.ndarray:
    """Same-size correlation with ``kr ⊗ kc``; ``mode`` as the ``border`` of :func:`sep_filter`."""
    return sep_filter(x, kr, kc, mode)


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


# --------------------------------------------------------------------------------------------
# cached planes


class Plane:
    """One 2-D channel (float64, 0..255 scale) with a memo of derived quantities."""

    __slots__ = ("x", "_memo", "_u8")

    def __init__(self, x: np.ndarray, u8: np.ndarray | None = None):
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self._memo: dict[Hashable, Any] = {}
        self._u8 = u8  # the original uint8 values when the input was uint8 (fast histograms)

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape  # type: ignore[return-value]

    def cached(self, key: Hashable, fn: Callable[[], T]) -> T:
        """Return ``fn()`` computed once per plane and key."""
        try:
            return self._memo[key]
        except KeyError:
            val = fn()
            self._memo[key] = val
            return val

    # ---- quantities shared by several metrics

    def levels(self) -> np.ndarray:
        """Integer grey levels 0..255 (the uint8 values themselves for uint8 input)."""
        if self._u8 is not None:
            return self._u8
        return self.cached("levels", lambda: levels(self.x))

    def _lut_or(self, key: str, fn: Callable[[np.ndarray], np.ndarray], dtype: Any) -> np.ndarray:
        """Apply an element-wise map through a 256-entry lookup table for uint8 input."""

        def compute() -> np.ndarray:
            if self._u8 is None:
                return fn(self.x).astype(dtype)
            lv = np.arange(256, dtype=np.float64)
            lo, hi = float(self._u8.min()), float(self._u8.max())
            lut = fn(np.clip(lv, lo, hi)).astype(dtype)  # same formula, evaluated per level
            if hi == lo:
                lut = np.zeros(256, dtype=dtype)
            return lut[self._u8]

        return self.cached(key, compute)

    def hist(self) -> np.ndarray:
        """256-bin probability histogram of the integer levels."""
        return self.cached(
            "hist", lambda: np.bincount(self.levels().ravel(), minlength=256)[:256] / self.x.size
        )

    def _minmax(self, v: np.ndarray) -> np.ndarray:
        lo, hi = float(self.x.min()), float(self.x.max())
        if hi == lo:
            return np.zeros_like(v)
        return np.floor((v - lo) / (hi - lo) * 255.0 + 0.5)

    def stretched_levels(self) -> np.ndarray:
        """VIFB Mutinf quantisation: own min-max stretch, round(255 *) (int16 cast)."""
        return self._lut_or("stretched", self._minmax, np.uint8)

    def norm255(self) -> np.ndarray:
        """Z. Liu's ``normalize1``: min-max to 0..255, rounded; an all-zero image unchanged."""
        return self._lut_or("norm255", self._minmax, np.float64)

    def gauss_moments(self, size: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """'valid' Gaussian-window mean and mean of squares."""

        def compute() -> tuple[np.ndarray, np.ndarray]:
            k = fspecial_gaussian_1d(size, sigma)
            return filter_valid(self.x, k), filter_valid(self.x * self.x, k)

        return self.cached(("gauss", size, sigma), compute)


@dataclass
class Triple:
    """Fused channel with the two source channels it is compared with (A = visible, B = IR).

    ``pair`` memoises quantities of (source, fused) pairs, keyed by the source plane identity,
    so that pair statistics shared by several metrics are computed once.
    """

    fused: Plane
    vi: Plane | None
    ir: Plane | None
    memo: dict[Hashable, Any] = field(default_factory=dict)

    def sources(self, metric: str) -> tuple[Plane, Plane]:
        """(A, B) = (visible, infrared); raise if a source is missing."""
        if self.vi is None or self.ir is None:
            missing = " and ".join(n for n, p in (("infrared", self.ir), ("visible", self.vi)) if p is None)
            raise InputError(f"{metric} needs the source images; the {missing} image is missing")
        return self.vi, self.ir

    def cached(self, key: Hashable, fn: Callable[[], T]) -> T:
        try:
            return self.memo[key]
        except KeyError:
            val = fn()
            self.memo[key] = val
            return val


# --------------------------------------------------------------------------------------------
# building planes from user input


@dataclass
class Prepared:
    """Validated inputs split into channel triples according to a colour rule."""

    triples: list[Triple]
    fused_channels: list[Plane]  # the fused planes in channel order (for whole-image metrics)
    reference: list[Plane] | None = None  # ground-truth channels (reference-based metrics)


def make_plane(arr2d: np.ndarray) -> Plane:
    """Plane of a 2-D array (keeps uint8 values for the histogram fast path)."""
    u8 = np.ascontiguousarray(arr2d) if arr2d.dtype == np.uint8 else None
    return Plane(to_scale255(arr2d), u8)


def _plane_list(arr: np.ndarray, collapse: bool = False) -> list[Plane]:
    """One plane per channel; with ``collapse`` a colour image whose channels are all equal
    (VIFB's 3-channel infrared JPEGs) gives a single plane, which is exactly equivalent."""
    if arr.ndim == 2:
        return [make_plane(arr)]
    if collapse and np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 0], arr[:, :, 2]):
        return [make_plane(arr[:, :, 0])]
    return [make_plane(arr[:, :, k]) for k in range(arr.shape[2])]


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
    ``color='gray'``: everything converted with ``rgb2gray``, one triple.
    """
    if color not in ("vifb", "gray"):
        raise InputError(f"unknown colour rule {color!r} (use 'vifb' or 'gray')")
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
