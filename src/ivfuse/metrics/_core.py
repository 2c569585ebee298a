"""Shared machinery of the metrics: input validation, colour handling, filters, cached planes.

Value scale
    Every metric works on intensities on the **8-bit scale 0..255**, exactly as VIFB's MATLAB
    code does after ``double(imread(...))``: there is no rescaling to [0, 1].

    * ``uint8`` arrays are used as they are (and kept as ``uint8``: histograms, gradients and
      filters read the 8-bit values directly, with exact integer arithmetic where it applies);
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
    colour image with ``rgb2gray`` and evaluates once. The ``mefb`` rule is ``vifb``'s, except
    that a colour fused image with two gray sources is evaluated on its red channel alone (MEFB's
    wrappers take ``fused(:,:,1)``).

Caching
    :class:`Plane` holds one 2-D channel and memoises what several metrics need (histograms,
    Gaussian moments, Sobel gradients, FFTs of the normalised image), so
    :func:`ivfuse.metrics.evaluate` computes each of them once however many metrics ask for it;
    a 3-channel infrared image whose channels are equal is one plane, shared by the three colour
    channels. The public metric functions build fresh planes, so they stay pure.

Filters
    Separable correlations run on OpenCV (``sepFilter2D`` / ``Sobel``, float64 accumulation, or
    exact 16-bit integers for Sobel on 8-bit data). ``use_backend("plain")`` switches to
    ``scipy.ndimage``, an independent implementation kept to cross-check the border handling
    (both agree to ~1e-15; tested).
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cv2
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
    """Integer grey levels 0..255 (as ``uint8``) of a 0..255-scale image (round half away, clip)."""
    q = np.floor(x + 0.5)
    np.clip(q, 0, 255, out=q)
    return q.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# filters: OpenCV, or scipy.ndimage as an independent cross-check (``use_backend("plain")``)

_FAST = True


def backend() -> str:
    """The filter engine in use: ``'opencv'`` (default) or ``'scipy'`` (the plain path)."""
    return "opencv" if _FAST else "scipy"


def use_backend(name: str) -> str:
    """``'fast'`` (OpenCV filters) or ``'plain'`` (``scipy.ndimage``, float64 throughout).

    Returns the previous setting. Both give the same values up to floating-point round-off; the
    plain path exists to cross-check the fast one.
    """
    global _FAST
    if name not in ("fast", "plain"):
        raise ValueError(f"unknown backend {name!r} (use 'fast' or 'plain')")
    old = "fast" if _FAST else "plain"
    _FAST = name == "fast"
    return old


#: ``POOL_THREAD.active`` is true in the threads of :mod:`._engine`'s pool
POOL_THREAD = threading.local()


def fft_workers() -> int:
    """scipy.fft ``workers``: 1 inside the metric thread pool (already parallel), else the
    metric thread count (:func:`ivfuse.metrics.get_threads`)."""
    if getattr(POOL_THREAD, "active", False):
        return 1
    from ._engine import get_threads  # the engine imports this module

    return get_threads()


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
    if _FAST and not (border == "mirror" and (m <= hr or n <= hc)):
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
    if _FAST:
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


class ArrayPool:
    """Image-sized arrays kept between metric calls for reuse.

    Fresh memory from the allocator costs a page fault per 4 KiB page on first touch, and on
    this kind of machine that is a large part of the time of a metric (an image-sized float64
    array per filter); arrays kept here are reused instead. Planes take arrays for their cached
    results (:meth:`Plane.alloc`) and give them back when released; kernels take and give back
    temporaries. At most ``limit`` bytes are kept; :meth:`clear` frees them.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._free: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """An uninitialised C-contiguous array."""
        key = (tuple(shape), np.dtype(dtype).str)
        with self._lock:
            stack = self._free.get(key)
            if stack:
                arr = stack.pop()
                self._bytes -= arr.nbytes
                return arr
        return np.empty(shape, dtype)

    def give(self, *arrays: np.ndarray | None) -> None:
        """Return arrays obtained from :meth:`take` (nothing else may use them afterwards)."""
        with self._lock:
            for arr in arrays:
                if arr is None or self._bytes + arr.nbytes > self.limit:
                    continue
                self._free.setdefault((arr.shape, arr.dtype.str), []).append(arr)
                self._bytes += arr.nbytes

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._bytes = 0


#: the pool of the metrics (128 MiB: the working set of the 13 VIFB metrics of a 0.3-megapixel
#: RGB image is about half of it)
POOL = ArrayPool(128 << 20)

#: element-wise kernels run over blocks of rows of about this many pixels: their temporaries
#: then stay in the CPU caches, which makes chains of numpy operations 2-3x faster than on whole
#: images (and allocates no image-sized temporaries); 2^15..2^17 measured alike, 2^16 best
BLOCK_PIXELS = 1 << 16


def row_blocks(start: int, stop: int, width: int) -> list[slice]:
    """Slices of rows ``start..stop`` in blocks of about :data:`BLOCK_PIXELS` pixels."""
    step = max(4, BLOCK_PIXELS // max(width, 1))
    return [slice(r, min(r + step, stop)) for r in range(start, stop, step)]


# Cephes ``atanf``: range reduction to |r| <= tan(pi/8), then an odd degree-9 polynomial.
_ATAN_T3 = np.float32(2.414213562373095)  # tan(3 pi / 8)
_ATAN_T1 = np.float32(0.4142135623730950)  # tan(pi / 8)
_ATAN_CHUNK = 16384  # 64 KiB temporaries: heap memory, cache-resident
_ATAN_P = tuple(
    np.float32(c) for c in (8.05374449538e-2, -1.38776856032e-1, 1.99777106478e-1, -3.33329491539e-1)
)


def _numpy_has_simd_arctan() -> bool:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as feats
    return bool(feats.get("AVX512_SKX"))


#: numpy's float32 arctan is vectorised only on AVX-512 CPUs; elsewhere it is scalar libm
NUMPY_SIMD_ARCTAN = _numpy_has_simd_arctan()


def arctan(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 arctangent: ``np.arctan`` where numpy vectorises it, else :func:`arctan_f32`."""
    if NUMPY_SIMD_ARCTAN:
        return np.arctan(x, out=out)
    return arctan_f32(x, out=out)


def arctan_f32(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Element-wise arctangent of a float32 array, within 3 float32 ulp of ``np.arctan``;
    about 2x faster than numpy's scalar libm loop on CPUs without AVX-512.

    Moshier's Cephes ``atanf``: ``|x| > tan(3 pi/8)`` -> ``pi/2 + atan(-1/|x|)``,
    ``|x| > tan(pi/8)`` -> ``pi/4 + atan((|x|-1)/(|x|+1))``, then ``r + r z P(z)``, ``z = r^2``.
    The branches are blended arithmetically (masked copies are slow on random masks).
    ``out`` may be ``x`` itself. Meant for cache-sized blocks (:func:`row_blocks`).
    """
    if x.dtype != np.float32:
        raise TypeError(f"arctan_f32 needs float32, got {x.dtype}")
    if out is None:
        out = np.empty_like(x, order="C")
    if not (x.flags.c_contiguous and out.flags.c_contiguous) or out.shape != x.shape:
        raise ValueError("arctan_f32 needs C-contiguous arrays of the same shape")
    xf, of = x.reshape(-1), out.reshape(-1)  # views
    for i in range(0, xf.size, _ATAN_CHUNK):  # small chunks: heap temporaries, L1/L2-resident
        _arctan_chunk(xf[i : i + _ATAN_CHUNK], of[i : i + _ATAN_CHUNK])
    return out


def _arctan_chunk(x: np.ndarray, out: np.ndarray) -> None:
    one = np.float32(1.0)
    t = np.abs(x)
    np.minimum(t, np.float32(1e30), out=t)  # inf -> finite: the blend below stays NaN-free
    m1 = np.empty_like(t)
    m2 = np.empty_like(t)
    np.greater(t, _ATAN_T1, out=m1, casting="unsafe")  # 1 on the pi/4 and the pi/2 branch
    np.greater(t, _ATAN_T3, out=m2, casting="unsafe")  # 1 on the pi/2 branch only
    # r = t, (t - 1) / (t + 1) or -1 / t by branch: a sum of exact 0/1-weighted terms
    rm = t - one
    rm /= t + one
    r = np.maximum(t, np.float32(1e-30))
    np.divide(np.float32(-1.0), r, out=r)
    r *= m2
    y = np.subtract(m1, m2)
    rm *= y
    r += rm
    np.subtract(one, m1, out=rm)
    t *= rm
    r += t  # the reduced argument, |r| <= tan(pi/8)
    y += m2
    y += m2
    y *= np.float32(math.pi / 4)
    z = np.multiply(r, r, out=rm)
    p = np.multiply(z, _ATAN_P[0], out=t)
    for c in _ATAN_P[1:]:
        p += c
        p *= z
    p *= r
    p += r
    p += y
    np.copysign(p, x, out=out)


def histogram(levels: Sequence[np.ndarray]) -> np.ndarray:
    """Counts (int64) of the 256 levels of one uint8 image, or the 256 x 256 joint histogram of
    two (rows: the first image). OpenCV's ``calcHist`` (float32 counts, exact below 2^24
    pixels), else ``np.bincount`` (on ``256 a + b`` for two)."""
    size = levels[0].size
    if _FAST and size < 1 << 24:
        dims = len(levels)
        h = cv2.calcHist(list(levels), list(range(dims)), None, [256] * dims, [0, 256] * dims)
        return h.astype(np.int64).reshape((256,) * dims)
    if len(levels) == 1:
        return np.bincount(levels[0].ravel(), minlength=256)
    key = np.left_shift(levels[0], 8, dtype=np.uint16)
    key |= levels[1]
    return np.bincount(key.ravel(), minlength=65536).reshape(256, 256)


def aligned_row_blocks(m: int, width: int, b: int) -> list[slice]:
    """Like :func:`row_blocks`, with blocks starting at multiples of ``b`` rows."""
    step = max(b, BLOCK_PIXELS // max(width, 1) // b * b)
    return [slice(r, min(r + step, m)) for r in range(0, m, step)]


def lut_u8(u8: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[u8]`` for a 256-entry ``uint8`` table."""
    if _FAST:
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


# --------------------------------------------------------------------------------------------
# cached planes

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
