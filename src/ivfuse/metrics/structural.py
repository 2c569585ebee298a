"""Structural and gradient-preservation metrics: SSIM, QABF, QCB, QCV, QY, QC, QW, MEF-SSIM.

Sources: A = visible, B = infrared (VIFB's img1/img2). Local statistics use separable Gaussian
windows ('valid' part, MATLAB ``filter2``) in float64, read from the 8-bit values directly;
Sobel gradients of 8-bit images are exact integers; frequency-domain filters use real FFTs, and
the FFT of a normalised image is shared by QCB and QCV (and across channels for a gray IR image).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import cv2
import numpy as np
from scipy import fft as sfft

from ..errors import InputError
from .arctan import arctan
from .buffers import POOL, aligned_row_blocks, row_blocks
from .definition import MEFB_SRC, VIFB_SRC, Metric, first_triple, mefb_variant, per_triple
from .filters import block_sums, box_downsample, filter_valid, fspecial_gaussian_1d, sep_filter, valid
from .planes import Plane, Triple, channel_mean, prepare
from .threads import fft_workers

__all__ = ["mef_ssim", "qabf", "qc", "qcb", "qcv", "qw", "qy", "ssim", "ssim_fusion"]

_EPS = float(np.finfo(np.float64).eps)
_F32 = np.float32


# ---------------------------------------------------------------------------- SSIM


def _local_stats(
    p: Plane, size: int, sigma: float, from_float: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(mu, var) of the 'valid' Gaussian window, var = E[x^2] - mu^2 (float64), as full-size
    arrays (crop with :func:`valid`).

    ``from_float`` filters the float64 image instead of the 8-bit values: the same sums to
    ~1e-16, but with the round-off pattern of float input (see :func:`ssim_map`).
    """

    def compute() -> tuple[np.ndarray, np.ndarray]:
        k = fspecial_gaussian_1d(size, sigma)
        mu = filter_valid(p.x if from_float else p.data, k, keep_size=True, out=p.alloc())
        if from_float:
            sq = p.x * p.x
        else:
            sq = POOL.take(p.shape, np.uint16 if p.u8 is not None else np.float64)
            p.square(out=sq)
        var = filter_valid(sq, k, keep_size=True, out=p.alloc())
        if not from_float:
            POOL.give(sq)
        m, n = mu.shape
        buf = np.empty((row_blocks(0, m, n)[0].stop, n))
        for sl in row_blocks(0, m, n):
            var[sl] -= np.multiply(mu[sl], mu[sl], out=buf[: sl.stop - sl.start])  # E[x^2] - mu^2
        return mu, var

    return p.cached(("local_stats", size, sigma, from_float), compute)


def _ssim_blocks(
    x: Plane,
    y: Plane,
    size: int,
    sigma: float,
    c1: float,
    c2: float,
    from_float: bool,
    out: np.ndarray | None,
) -> float:
    """Row-blocked SSIM map of the 'valid' window: written into ``out`` (valid-sized) if given;
    returns the sum of the map."""
    mx, vx = _local_stats(x, size, sigma, from_float)
    my, vy = _local_stats(y, size, sigma, from_float)
    k = fspecial_gaussian_1d(size, sigma)
    if from_float:
        xy = x.x * y.x
    else:
        xy = POOL.take(x.shape, np.uint16 if x.u8 is not None and y.u8 is not None else np.float64)
        x.product(y, out=xy)
    num2 = POOL.take(x.shape)
    sep_filter(xy, 2.0 * k, k, "valid", keep_size=True, out=num2)  # 2 E[xy]: kernel doubled, exact
    if not from_float:
        POOL.give(xy)
    h = size // 2
    m, n = num2.shape
    blocks = row_blocks(h, m - h, n)
    b1 = np.empty((blocks[0].stop - blocks[0].start, n))
    b2 = np.empty_like(b1)
    b3 = np.empty_like(b1)
    total = 0.0
    # the operations are those of (2 (mx my) + C1) (2 (E[xy] - mx my) + C2) / ((mx mx + my my
    # + C1) (vx + vy + C2)) to the last bit (tiny constants, as QY's, need that order)
    with np.errstate(divide="ignore", invalid="ignore"):
        for sl in blocks:
            r = sl.stop - sl.start
            e = num2[sl]
            num1 = np.multiply(mx[sl], my[sl], out=b1[:r])
            num1 += num1  # 2 mx my
            e -= num1
            e += c2  # 2 (E[xy] - mx my) + C2
            num1 += c1
            num1 *= e
            den = np.multiply(mx[sl], mx[sl], out=e)
            den += np.multiply(my[sl], my[sl], out=b3[:r])
            den += c1
            den2 = np.add(vx[sl], vy[sl], out=b2[:r])
            den2 += c2
            den *= den2
            num1 /= den
            v = num1[:, h : n - h]
            if out is not None:
                out[sl.start - h : sl.stop - h] = v
            total += float(v.sum())
    POOL.give(num2)
    return total


def ssim_map(
    x: Plane,
    y: Plane,
    *,
    size: int = 11,
    sigma: float = 1.5,
    c1: float = (0.01 * 255) ** 2,
    c2: float = (0.03 * 255) ** 2,
    variances: bool = False,
    from_float: bool = False,
    exact_flat: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """SSIM map of Wang et al. 2004 ('valid' Gaussian window), optionally with the local variances.

    ``(2 mx my + C1)(2 sxy + C2) / ((mx^2 + my^2 + C1)(sx^2 + sy^2 + C2))``. Returns (map, var_x,
    var_y); the variances are None unless ``variances`` is true. ``from_float`` takes the local
    statistics of the float64 images rather than of the 8-bit values: with constants as tiny as
    QY's (2e-16), windows of constant value are decided by round-off, and this keeps QY's values
    those of the float64 computation.

    ``exact_flat``: in a window where x (or y) is constant, its variance and the covariance are
    exactly 0, but ``E[x^2] - mu^2`` leaves round-off of about 1e-11 (at 255), of either sign.
    With C = 2e-16 the map there is a ratio of that noise (values from -2 to 7e4 were seen where
    both images are flat at different levels). This option gives such windows their exact value,
    ``(2 mx my + C1) C2 / ((mx^2 + my^2 + C1)(sx^2 + sy^2 + C2))`` with the flat image's variance
    0 (the luminance term alone when both are flat), and returns the flat image's variance as 0.
    """
    m, n = x.shape
    h = size // 2
    if m < size or n < size:
        raise InputError(f"image of {n}x{m} pixels is smaller than the {size}x{size} metric window")
    smap = np.empty((m - 2 * h, n - 2 * h))
    _ssim_blocks(x, y, size, sigma, c1, c2, from_float, smap)
    if not (variances or exact_flat):
        return smap, None, None
    mx, vx = (valid(a, size) for a in _local_stats(x, size, sigma, from_float))
    my, vy = (valid(a, size) for a in _local_stats(y, size, sigma, from_float))
    if not exact_flat:
        return smap, vx, vy
    fx, fy = _flat_windows(x, size), _flat_windows(y, size)
    any_x, any_y = bool(fx.any()), bool(fy.any())
    if any_x or any_y:
        f = np.nonzero(fx | fy if any_x and any_y else (fx if any_x else fy))
        mxf, myf = mx[f], my[f]
        vxf = np.where(fx[f], 0.0, vx[f])
        vyf = np.where(fy[f], 0.0, vy[f])
        smap[f] = (2 * mxf * myf + c1) * c2 / ((mxf * mxf + myf * myf + c1) * (vxf + vyf + c2))
        if variances:
            vx, vy = np.where(fx, 0.0, vx) if any_x else vx, np.where(fy, 0.0, vy) if any_y else vy
    return smap, (vx if variances else None), (vy if variances else None)


def _flat_windows(p: Plane, size: int) -> np.ndarray:
    """Boolean map of the 'valid' size x size windows in which ``p`` is constant (read-only)."""

    def compute() -> np.ndarray:
        kernel = np.ones((size, size), np.uint8)
        d = p.data
        flat = valid(cv2.dilate(d, kernel) == cv2.erode(d, kernel), size).copy()
        flat.setflags(write=False)
        return flat

    return p.cached(("flat_windows", size), compute)


def ssim_mean(x: Plane, y: Plane, *, size: int = 11, sigma: float = 1.5) -> float:
    """Mean of the (VIFB) SSIM map of x and y, without building the map."""
    m, n = x.shape
    h = size // 2
    if m < size or n < size:
        raise InputError(f"image of {n}x{m} pixels is smaller than the {size}x{size} metric window")
    total = _ssim_blocks(x, y, size, sigma, (0.01 * 255) ** 2, (0.03 * 255) ** 2, False, None)
    return total / ((m - 2 * h) * (n - 2 * h))


def _ssim_pair(t: Triple, s: Plane) -> float:
    return t.cached(("ssim", id(s)), lambda: ssim_mean(s, t.fused))


def _ssim(t: Triple, combine: str = "sum") -> float:
    a, b = t.sources("SSIM")
    va, vb = _ssim_pair(t, a), _ssim_pair(t, b)
    if combine == "sum":
        return va + vb
    if combine == "mean":
        return (va + vb) / 2.0
    raise ValueError(f"combine must be 'sum' or 'mean', got {combine!r}")


# ---------------------------------------------------------------------------- QABF


_QABF = {"Tg": 0.9994, "kg": -15.0, "Dg": 0.5, "Ta": 0.9879, "ka": -22.0, "Da": 0.8}


#: side of the arctangent table: Sobel responses of 8-bit images lie in [-1020, 1020]
_ATAN_LUT_SIDE = 4 * 255 + 1


@functools.cache
def _atan_ratio_lut() -> np.ndarray:
    """Flat table ``T[a * 1021 + b] = atan(float32(b) / float32(a))`` in float32 for the exact
    Sobel magnitudes ``0 <= a, b <= 1020`` of 8-bit images (the same float32 ratio and
    arctangent as computing them pixel by pixel); row ``a = 0`` holds pi/2, VIFB's value where
    ``sx == 0``. 4 MB, built once; replaces an arctangent per pixel by a table look-up."""
    v = np.arange(_ATAN_LUT_SIDE, dtype=_F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.arctan(v[None, :] / v[:, None])
    t[0, :] = _F32(math.pi / 2)
    return np.ascontiguousarray(t, dtype=_F32).reshape(-1)


def _qabf_grad(p: Plane) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Sobel data of one image as VIFB's ``metricsQabf`` uses it: conv2 'same' (zero padding)
    of the image x 255.

    Returns (tie key, g, alpha, sum g): g = sqrt(sx^2 + sy^2) and alpha = atan(sy / sx) (pi / 2
    where sx == 0) in float32, and the key that decides VIFB's ties g_X == g_F exactly: g itself
    for 8-bit images (from exact integer responses; distinct squared magnitudes below 2^24 stay
    distinct in float32, also x 255), else the float64 magnitude (:func:`_qabf_key64`).
    """

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        m, n = p.shape
        g = p.alloc(_F32)
        a = p.alloc(_F32)
        blocks = row_blocks(0, m, n)
        fx = np.empty((blocks[0].stop, n), _F32)
        zero = np.empty((blocks[0].stop, n), bool)
        if p.u8 is not None:
            dx, dy = p.sobel("zero")  # exact integers
            # conv2 with [-1 0 1; -2 0 2; -1 0 1] is -dx, with [1 2 1; 0 0 0; -1 -2 -1] is dy
            key = g
        else:
            key = _qabf_key64(p)
            sx, sy = p.cached("qabf_sobel255", lambda: _sobel255(p))
        if p.u8 is not None:
            lut = _atan_ratio_lut()
            idx = np.empty((blocks[0].stop, n), np.int32)
        for sl in blocks:
            r = sl.stop - sl.start
            f = fx[:r]
            aa = a[sl]
            if p.u8 is not None:
                gg = np.square(dx[sl], out=g[sl], dtype=_F32)  # exact integers (< 2^24)
                gg += np.square(dy[sl], out=f, dtype=_F32)
                np.sqrt(gg, out=gg)
                gg *= _F32(255.0)
                # alpha = atan(sy / sx) = atan(dy / (-dx)): |alpha| from the table of the exact
                # integer magnitudes, its sign that of -(dx dy); +pi/2 where dx == 0
                ii = np.abs(dx[sl], out=idx[:r], dtype=np.int32)
                ii *= _ATAN_LUT_SIDE
                ii += np.abs(dy[sl])
                np.take(lut, ii, out=aa)
                sgn = np.multiply(dx[sl], dy[sl], out=f, dtype=_F32)  # exact (< 2^24)
                np.negative(sgn, out=sgn)
                sgn += np.equal(dx[sl], 0, out=zero[:r])
                np.copysign(aa, sgn, out=aa)
            else:
                g[sl] = key[sl]
                z = np.equal(sx[sl], 0, out=zero[:r])
                d = np.where(z, 1.0, sx[sl])
                np.divide(sy[sl], d, out=aa, casting="same_kind")  # float64 ratio, then float32
                arctan(aa, out=aa)  # float32; vectorised also without AVX-512
                np.copyto(aa, _F32(math.pi / 2), where=z)  # atan, not atan2: pi / 2 where sx == 0
        return key, g, a, float(g.sum(dtype=np.float64))

    return p.cached("qabf_grad", compute)


def _sobel255(p: Plane) -> tuple[np.ndarray, np.ndarray]:
    """(sx, sy) = conv2 'same' of 255 x (float64; VIFB's own arithmetic for non-8-bit data)."""
    x = p.x * 255.0
    # conv2(x, [-1 0 1; -2 0 2; -1 0 1]) and conv2(x, [1 2 1; 0 0 0; -1 -2 -1]) are
    # correlations with the flipped kernels
    return (
        sep_filter(x, np.array([1.0, 2.0, 1.0]), np.array([1.0, 0.0, -1.0]), "zero"),
        sep_filter(x, np.array([-1.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0]), "zero"),
    )


def _qabf_key64(p: Plane) -> np.ndarray:
    """g of VIFB's Q^AB/F in float64: sqrt(sx^2 + sy^2) of the image x 255."""

    def compute() -> np.ndarray:
        if p.u8 is not None:
            dx, dy = p.sobel("zero")
            q = np.square(dx, dtype=np.float64)
            q += np.square(dy, dtype=np.float64)
            q *= 255.0 * 255.0  # exact: integers below 2^53
        else:
            sx, sy = p.cached("qabf_sobel255", lambda: _sobel255(p))
            q = np.square(sx)
            q += np.square(sy)
        return np.sqrt(q, out=q)

    return p.cached("qabf_key64", compute)


_QG = (_F32(_QABF["Dg"]), _F32(_QABF["kg"]))
_QA = (_F32(-_QABF["ka"] / (math.pi / 2)), _F32(_QABF["ka"] * (1.0 - _QABF["Da"])))


def _qabf_weighted_sum(px: Plane, pf: Plane) -> float:
    """sum(Q_XF * g_X): edge-strength and orientation preservation (VIFB's tie rule included)."""
    kx, gx, ax, _ = _qabf_grad(px)
    kf, gf, af, _ = _qabf_grad(pf)
    if kx.dtype != kf.dtype:  # an 8-bit and a float image: compare the float64 magnitudes
        kx, kf = _qabf_key64(px), _qabf_key64(pf)
    m, n = gx.shape
    blocks = row_blocks(0, m, n)
    b1 = np.empty((blocks[0].stop, n), _F32)
    b2 = np.empty_like(b1)
    tie = np.empty(b1.shape, bool)
    one = _F32(1.0)
    total = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        for sl in blocks:
            r = sl.stop - sl.start
            # G = g_F / g_X if g_X > g_F, g_F if g_X == g_F (VIFB quirk), g_X / g_F otherwise
            g = np.minimum(gx[sl], gf[sl], out=b1[:r])
            g /= np.maximum(gx[sl], gf[sl], out=b2[:r])
            t = np.equal(kx[sl], kf[sl], out=tie[:r])
            np.copyto(g, gf[sl], where=t)
            # Q_g = Tg / (1 + exp(kg (G - Dg)))
            g -= _QG[0]
            g *= _QG[1]
            np.exp(g, out=g)
            g += one
            # Q_a = Ta / (1 + exp(ka (A - Da))), A = 1 - |a_X - a_F| / (pi / 2)
            d = np.subtract(ax[sl], af[sl], out=b2[:r])
            np.abs(d, out=d)
            d *= _QA[0]
            d += _QA[1]
            np.exp(d, out=d)
            d += one
            d *= g
            np.divide(gx[sl], d, out=d)
            total += float(d.sum(dtype=np.float64))
    return total * _QABF["Tg"] * _QABF["Ta"]


def _qabf(t: Triple) -> float:
    a, b = t.sources("QABF")
    num = _qabf_weighted_sum(a, t.fused) + _qabf_weighted_sum(b, t.fused)
    den = _qabf_grad(a)[3] + _qabf_grad(b)[3]
    return num / den if den > 0 else math.nan


# ---------------------------------------------------------------------------- frequency domain


@functools.lru_cache(maxsize=16)
def _freq_radius(shape: tuple[int, int], div: float) -> np.ndarray:
    """r = sqrt(u^2 + v^2) on the rfft2 grid, ``freqspace`` frequencies scaled by n/div."""
    m, n = shape

    def axis(k: int) -> np.ndarray:
        f = (np.arange(k) - k // 2) * 2.0 / k  # freqspace: [-1, 1), zero at floor(k/2)
        return np.fft.ifftshift(f) * (k / div)

    v = axis(m)[:, None]
    u = axis(n)[: n // 2 + 1][None, :]
    r = np.sqrt(u * u + v * v)
    r.setflags(write=False)  # shared through the cache
    return r


def _rfft_norm(p: Plane) -> np.ndarray:
    """rfft2 of Z. Liu's ``normalize1`` image (shared by QCB and QCV, and across channels)."""
    n = p.norm_plane()

    def compute() -> np.ndarray:
        m, w = n.shape
        x = POOL.take(n.shape)
        x[...] = n.data  # float64 input: the transforms' own conversion of 8-bit data is slower
        workers = fft_workers()
        if workers == 1:  # numpy's pocketfft (the same transforms) into pooled memory
            spec = n.alloc(np.complex128, (m, w // 2 + 1))
            np.fft.rfft(x, axis=1, out=spec)
            np.fft.fft(spec, axis=0, out=spec)
        else:
            spec = sfft.rfft2(x, workers=workers)
        POOL.give(x)
        return spec

    return n.cached("rfft", compute)


def _irfft2(spec: np.ndarray, shape: tuple[int, int], out: np.ndarray) -> np.ndarray:
    """Inverse of rfft2 into ``out`` (``spec`` is overwritten): column transforms, then the real
    row ones (faster than ``irfft2`` on one thread)."""
    workers = fft_workers()
    if workers == 1:
        np.fft.ifft(spec, axis=0, out=spec)
        return np.fft.irfft(spec, n=shape[1], axis=1, out=out)
    cols = sfft.ifft(spec, axis=0, workers=workers, overwrite_x=True)
    out[...] = sfft.irfft(cols, n=shape[1], axis=1, workers=workers, overwrite_x=True)
    return out


def _filtered(spec: np.ndarray, h: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Real part of ifft2(spectrum * H) for a real, even filter H given on the rfft2 grid, in
    an array from :data:`POOL` (give it back)."""
    tmp = np.multiply(spec, h, out=POOL.take(spec.shape, spec.dtype))
    out = _irfft2(tmp, shape, POOL.take(shape))
    POOL.give(tmp)
    return out


_CB = {"f0": 15.3870, "f1": 1.3456, "a": 0.7622, "k": 1.0, "h": 1.0, "p": 3.0, "q": 2.0, "Z": 1e-4}


@functools.lru_cache(maxsize=16)
def _qcb_filter(shape: tuple[int, int]) -> np.ndarray:
    r = _freq_radius(shape, 30.0)
    h = np.exp(-((r / _CB["f0"]) ** 2)) - _CB["a"] * np.exp(-((r / _CB["f1"]) ** 2))
    h.setflags(write=False)
    return h


@functools.lru_cache(maxsize=4)
def _gauss31(sigma: float) -> np.ndarray:
    """1-D factor of exp(-(x^2+y^2)/(2 s^2)) / (2 pi s^2) on [-15, 15], not renormalised."""
    t = np.arange(-15, 16, dtype=np.float64)
    k = np.exp(-(t * t) / (2 * sigma * sigma)) / math.sqrt(2 * math.pi * sigma * sigma)
    k.setflags(write=False)
    return k


def _qcb_masked_contrast(p: Plane) -> np.ndarray:
    """C': masked local contrast of the CSF-filtered normalised image (float64: flat regions
    make the contrast ratio sensitive to round-off)."""

    def compute() -> np.ndarray:
        i_f = _filtered(_rfft_norm(p), _qcb_filter(p.shape), p.shape)
        k1, k2 = _gauss31(2.0), _gauss31(4.0)
        c = sep_filter(i_f, k1, k1, "zero", out=p.alloc())
        g2 = sep_filter(i_f, k2, k2, "zero", out=POOL.take(p.shape))
        POOL.give(i_f)
        m, n = c.shape
        blocks = row_blocks(0, m, n)
        buf = np.empty((blocks[0].stop, n))
        z = _CB["Z"]
        for sl in blocks:
            cc = c[sl]
            cc /= g2[sl]
            cc -= 1.0
            np.abs(cc, out=cc)  # C = |G1 * I / G2 * I - 1|
            # masked C' = k C^p / (h C^q + Z) with k = h = 1, p = 3, q = 2
            c2 = np.multiply(cc, cc, out=buf[: sl.stop - sl.start])
            cc *= c2
            c2 += z
            cc /= c2
        POOL.give(g2)
        return c

    return p.cached("qcb_contrast", compute)


def _qcb(t: Triple) -> float:
    a, b = t.sources("QCB")
    ca, cb, cf = (_qcb_masked_contrast(p) for p in (a, b, t.fused))
    m, n = ca.shape
    blocks = row_blocks(0, m, n)
    b1, b2, b3, b4 = (np.empty((blocks[0].stop, n)) for _ in range(4))
    total = 0.0
    # Q_XF = C'_X / C'_F if C'_X < C'_F else C'_F / C'_X (= min / max);
    # lambda_X = C'_X^2 / (C'_A^2 + C'_B^2); Q = mean(lambda_A Q_AF + lambda_B Q_BF)
    with np.errstate(divide="ignore", invalid="ignore"):
        for sl in blocks:
            r = sl.stop - sl.start
            xa, xb, xf = ca[sl], cb[sl], cf[sl]
            qa = np.minimum(xa, xf, out=b1[:r])
            qa /= np.maximum(xa, xf, out=b3[:r])
            a2 = np.multiply(xa, xa, out=b3[:r])
            qa *= a2
            qb = np.minimum(xb, xf, out=b2[:r])
            qb /= np.maximum(xb, xf, out=b4[:r])
            b2_ = np.multiply(xb, xb, out=b4[:r])
            qb *= b2_
            qa += qb
            qa /= np.add(a2, b2_, out=b3[:r])
            total += float(qa.sum())
    return total / (m * n)


@functools.lru_cache(maxsize=16)
def _qcv_filter(shape: tuple[int, int]) -> np.ndarray:
    r = _freq_radius(shape, 8.0)
    h = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    h.setflags(write=False)
    return h


def _qcv_saliency(p: Plane, alpha: float, block: int) -> np.ndarray:
    """Per block: sum of G^alpha, G the Sobel magnitude of the normalised image (filter2 'same')."""
    n = p.norm_plane()

    def compute() -> np.ndarray:
        dx, dy = n.sobel("zero")
        m, w = n.shape
        out = np.empty((-(-m // block), -(-w // block)))
        blocks = aligned_row_blocks(m, w, block)
        q = np.empty((blocks[0].stop, w))
        g = np.empty_like(q)
        for sl in blocks:
            r = sl.stop - sl.start
            qq = np.square(dx[sl], out=q[:r], dtype=np.float64)  # exact: integer responses
            qq += np.square(dy[sl], out=g[:r], dtype=np.float64)
            if alpha == 5:
                gg = np.sqrt(qq, out=g[:r])
                qq *= qq
                qq *= gg  # G^5 = (G^2)^2 G
            else:
                np.sqrt(qq, out=qq)
                np.power(qq, alpha, out=qq)
            out[sl.start // block : -(-sl.stop // block)] = block_sums(qq, block)
        return out

    return n.cached(("qcv_saliency", alpha, block), compute)


def _qcv(t: Triple, alpha: float = 5.0, block: int = 16) -> float:
    a, b = t.sources("QCV")
    f = t.fused
    h = _qcv_filter(f.shape)
    ff = _rfft_norm(f)
    num = 0.0
    den = 0.0
    for s in (a, b):
        lam = _qcv_saliency(s, alpha, block)
        spec = np.subtract(_rfft_norm(s), ff, out=POOL.take(ff.shape, ff.dtype))
        spec *= h
        d = _irfft2(spec, f.shape, POOL.take(f.shape))
        np.multiply(d, d, out=d)
        dist = block_sums(d, block) / (block * block)
        POOL.give(spec, d)
        num += float(np.einsum("ij,ij->", lam, dist))
        den += float(lam.sum())
    return num / den if den > 0 else math.nan


# ---------------------------------------------------------------------------- QY


def _qy(t: Triple) -> float:
    a, b = t.sources("QY")
    s_ab, va, vb = ssim_map(a, b, variances=True, **_YANG)
    s_af = _yang_map(t, a)
    s_bf = _yang_map(t, b)
    assert va is not None and vb is not None
    # the variance of a flat window is exactly 0 (exact_flat); a variance is >= 0 (a guard for
    # the round-off of nearly flat float images), so l = var_A / (var_A + var_B) lies in [0, 1],
    # or is 0/0 where both sources are flat: such windows are dropped, as metricYang.m drops NaN
    va, vb = np.maximum(va, 0.0), np.maximum(vb, 0.0)
    # where SSIM(A,B) >= 0.75: l SSIM(A,F) + (1 - l) SSIM(B,F), l = var_A / (var_A + var_B);
    # elsewhere max(SSIM(A,F), SSIM(B,F)). As in metricYang.m, a NaN weight (0/0) drops the
    # window even where the max branch applies (Q1 * bin_map is NaN there).
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = va / (va + vb)
        q = lam * s_af
        q += (1 - lam) * s_bf
    q = np.where(s_ab >= 0.75, q, np.maximum(s_af, s_bf) + 0.0 * q)
    q = q[~np.isnan(q)]
    return float(q.mean()) if q.size else math.nan


# ---------------------------------------------------------------------------- QC, QW

_YANG = {"size": 7, "sigma": 1.5, "c1": 2e-16, "c2": 2e-16, "from_float": True, "exact_flat": True}


def _yang_map(t: Triple, s: Plane) -> np.ndarray:
    """Z. Liu's ``ssim_yang`` map of a source with F (7 x 7 Gaussian, C1 = C2 = 2e-16), shared
    by QY and QC (read-only).

    Flat windows get their exact value (``exact_flat`` of :func:`ssim_map`): with constants this
    small, round-off made a RoadScene pair whose source and fused image are both saturated score
    QY = 198. Values are then clipped to SSIM's range [-1, 1], a guard for nearly flat windows of
    non-integer images (8-bit images need none: a non-flat window's variance dwarfs the round-off).
    """

    def compute() -> np.ndarray:
        m = ssim_map(s, t.fused, **_YANG)[0]
        np.clip(m, -1.0, 1.0, out=m)
        m.setflags(write=False)
        return m

    return t.cached(("yang_map", id(s)), compute)


def _covariance(x: Plane, y: Plane, size: int, sigma: float) -> np.ndarray:
    """'valid' Gaussian-window covariance E[xy] - mu_x mu_y (float64 images)."""
    k = fspecial_gaussian_1d(size, sigma)
    mx, _ = _local_stats(x, size, sigma, True)
    my, _ = _local_stats(y, size, sigma, True)
    c = filter_valid(x.x * y.x, k)
    c -= valid(mx, size) * valid(my, size)
    return c


def _qc(t: Triple) -> float:
    a, b = t.sources("QC")
    f = t.fused
    s_af = _yang_map(t, a)
    s_bf = _yang_map(t, b)
    c_af = _covariance(a, f, 7, 1.5)
    c_bf = _covariance(b, f, 7, 1.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = c_af / (c_af + c_bf)
        q = w * s_af + (1 - w) * s_bf
    q[w < 0] = 0.0
    q[w > 1] = 1.0
    q = q[~np.isnan(q)]
    return float(q.mean()) if q.size else math.nan


def _prewitt_magnitude(p: Plane) -> Plane:
    """sqrt(gx^2 + gy^2) of filter2 'same' (zero padding) with [1 0 -1; 1 0 -1; 1 0 -1] and
    [1 1 1; 0 0 0; -1 -1 -1] (Z. Liu's ``metricPeilla.m``), as a float plane."""

    def compute() -> Plane:
        one, diff = np.ones(3), np.array([1.0, 0.0, -1.0])
        gx = sep_filter(p.data, one, diff, "zero")
        gy = sep_filter(p.data, diff, one, "zero")
        return Plane(np.sqrt(gx * gx + gy * gy))

    return p.cached("prewitt_magnitude", compute)


def _qw(t: Triple) -> float:
    a, b = t.sources("QW")
    ea, eb, ef = (_prewitt_magnitude(p) for p in (a, b, t.fused))
    # the local variances of ssim_index(A_edges, B_edges); its map is not used
    va = valid(_local_stats(ea, 11, 1.5)[1], 11)
    vb = valid(_local_stats(eb, 11, 1.5)[1], 11)
    tie = (va + vb) == 0
    va = va + 0.5 * tie
    vb = vb + 0.5 * tie
    lam = va / (va + vb)
    s_a = ssim_map(ef, ea)[0]
    s_b = ssim_map(ef, eb)[0]
    cw = np.maximum(va, vb)
    cw /= cw.sum()
    return float((cw * (lam * s_a + (1 - lam) * s_b)).sum())


def _mef_ssim_scale(seq: list[np.ndarray], f: np.ndarray, k: float = 0.03) -> float:
    """One scale of Ma, Zeng & Wang's MEF-SSIM (all patch operations as window filters)."""
    w = 11
    n2 = float(w * w)
    box = np.ones(w) / w
    g = fspecial_gaussian_1d(w, 1.5)
    mu = [filter_valid(x, box) for x in seq]
    var = [np.maximum(filter_valid(x * x, box) - m * m, 0.0) for x, m in zip(seq, mu, strict=True)]
    sig = [np.sqrt(n2 * v) for v in var]  # ||x_k - mu_k|| over the patch
    ed = [s + 0.001 for s in sig]
    total = np.sum(seq, axis=0)
    mt = filter_valid(total, box)
    num = np.sqrt(np.maximum(n2 * (filter_valid(total * total, box) - mt * mt), 0.0))
    r = (num + _EPS) / (np.sum(sig, axis=0) + _EPS)
    r[r > 1] = 1 - _EPS
    r[r < 0] = _EPS
    pw = np.minimum(np.tan(math.pi / 2 * r), 10.0)
    wts = [(e / w) ** pw + _EPS for e in ed]
    wsum = np.sum(wts, axis=0)
    a = [wk / wsum / e for wk, e in zip(wts, ed, strict=True)]  # weight of (x_k - mu_k)
    kk = len(seq)
    # cross moments (box for the norm of the desired patch, Gaussian for the SSIM statistics)
    norm2 = np.zeros_like(mu[0])
    gx = [filter_valid(x, g) for x in seq]
    gxx: dict[tuple[int, int], np.ndarray] = {}
    for i in range(kk):
        for j in range(i, kk):
            prod = seq[i] * seq[j]
            cov = filter_valid(prod, box) - mu[i] * mu[j]
            fac = 1.0 if i == j else 2.0
            norm2 += fac * a[i] * a[j] * n2 * cov
            gxx[(i, j)] = filter_valid(prod, g)
    nr = np.sqrt(np.maximum(norm2, 0.0))
    max_ed = np.max(ed, axis=0)
    scale = np.where(nr > 0, max_ed / np.where(nr > 0, nr, 1.0), 1.0)
    c = [ak * scale for ak in a]
    mf = filter_valid(f, g)
    vf = filter_valid(f * f, g) - mf * mf
    m1 = sum(c[i] * (gx[i] - mu[i]) for i in range(kk))
    er2 = np.zeros_like(m1)
    for (i, j), gij in gxx.items():
        fac = 1.0 if i == j else 2.0
        er2 += fac * c[i] * c[j] * (gij - mu[i] * gx[j] - mu[j] * gx[i] + mu[i] * mu[j])
    v1 = er2 - m1 * m1
    erf = sum(c[i] * (filter_valid(seq[i] * f, g) - mu[i] * mf) for i in range(kk))
    c12 = erf - m1 * mf
    cc = (k * 255.0) ** 2
    return float(((2 * c12 + cc) / (v1 + vf + cc)).mean())


_MEF_WEIGHTS = np.array([0.0448, 0.2856, 0.3001])


def _mef_ssim(t: Triple) -> float:
    a, b = t.sources("MEF-SSIM")
    seq = [a.x, b.x]
    f = t.fused.x
    if min(f.shape) / 4 < 11:
        raise InputError(f"MEF-SSIM needs images of at least 44 pixels a side, got {f.shape[1]}x{f.shape[0]}")
    w = _MEF_WEIGHTS / _MEF_WEIGHTS.sum()
    qs = []
    for level in range(3):
        qs.append(_mef_ssim_scale(seq, f))
        if level < 2:
            seq = [box_downsample(x, 2) for x in seq]
            f = box_downsample(f, 2)
    q = np.asarray(qs)
    if (q < 0).any():
        return math.nan
    return float(np.prod(q**w))


# ---------------------------------------------------------------------------- public API


def ssim(x: Any, y: Any) -> float:
    """Single-scale SSIM of two images (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 13(4), 2004).

    VIFB's variant: 11 x 11 Gaussian window (sigma 1.5), K = (0.01, 0.03), L = 255, 'valid'
    local statistics, mean of the map, **no** downsampling. Colour: mean over RGB channels.
    Range [-1, 1]; **higher is better**; 1 for identical images.
    """
    prep = prepare(y, x, None, metric="SSIM")
    vals = [float(ssim_map(t.ir, t.fused)[0].mean()) for t in prep.triples]  # type: ignore[arg-type]
    return channel_mean(vals)


def ssim_fusion(fused: Any, ir: Any, vi: Any, *, combine: str = "sum") -> float:
    """Fusion SSIM as VIFB computes it (``metricsSsim``): ``SSIM(VI, F) + SSIM(IR, F)``.

    The **sum** over the two sources (``combine='sum'``; range [-2, 2]) of :func:`ssim`,
    mean over RGB channels. ``combine='mean'`` gives the average (range [-1, 1]).
    **Higher is better**; 2 (sum) when both sources equal F.
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="SSIM")
    return channel_mean([_ssim(t, combine) for t in prep.triples])


def qabf(fused: Any, ir: Any, vi: Any) -> float:
    """Gradient-based fusion metric Q^AB/F (Xydeas & Petrovic, Electronics Letters 36(4), 2000).

    VIFB's ``metricsQabf``: Sobel magnitude g and angle alpha = atan(sy / sx) of each image
    (x 255, conv2 'same'); edge-strength and orientation preservation through sigmoids with
    Tg = 0.9994, kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22, Da = 0.8 (including VIFB's tie rule
    G = g_F when g_X == g_F); ``Q = sum(Q_AF g_A + Q_BF g_B) / sum(g_A + g_B)``. Mean over RGB
    channels. Range [0, 1]; **higher is better**.
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="QABF")
    return channel_mean([_qabf(t) for t in prep.triples])


def qcb(fused: Any, ir: Any, vi: Any) -> float:
    """Chen-Blum metric Q_CB (Chen & Blum, Image Vision Computing 27(10), 2009; Z. Liu's
    ``metricChenBlum.m`` as used by VIFB).

    Min-max normalised images filtered by the DoG contrast sensitivity function (f0 = 15.3870,
    f1 = 1.3456, a = 0.7622) in the frequency domain; local contrast from 31 x 31 Gaussians
    (sigma 2 and 4); masked contrast ``C^3 / (C^2 + 1e-4)``; saliency-weighted preservation,
    averaged over pixels; mean over RGB channels. Range [0, 1]; **higher is better**.
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="QCB")
    return channel_mean([_qcb(t) for t in prep.triples])


def qcv(fused: Any, ir: Any, vi: Any, *, alpha: float = 5.0) -> float:
    """Chen-Varshney metric Q_CV (Chen & Varshney, Information Fusion 8(2), 2007; Z. Liu's
    ``metricChen.m`` as used by VIFB).

    16 x 16 blocks; block saliency = sum of Sobel magnitude^alpha (alpha = 5) of each source;
    block distortion = mean square of the source-minus-fused difference filtered by the
    Mannos-Sakrison CSF; ``Q = sum(l_A d_A + l_B d_B) / sum(l_A + l_B)``. Mean over RGB channels.
    Range [0, inf); **lower is better**; 0 when both sources equal F.
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="QCV")
    return channel_mean([_qcv(t, alpha) for t in prep.triples])


def qy(fused: Any, ir: Any, vi: Any) -> float:
    """Yang's metric Q_Y (Yang, Zhang, Wang & Liu, Information Fusion 9(2), 2008; Z. Liu's
    ``metricYang.m``), used by SSL-WAEIE.

    Local SSIM maps (7 x 7 Gaussian window, sigma 1.5, C1 = C2 = 2e-16): where SSIM(A, B) >= 0.75
    the local value is ``l SSIM(A, F) + (1 - l) SSIM(B, F)`` with ``l = var_A / (var_A + var_B)``,
    elsewhere ``max(SSIM(A, F), SSIM(B, F))``; mean over the windows where it is defined.
    Mean over RGB channels. Range [-1, 1]; **higher is better**; 1 when both sources equal F.
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="QY")
    return channel_mean([_qy(t) for t in prep.triples])


def mef_ssim(fused: Any, ir: Any, vi: Any) -> float:
    """MEF-SSIM (Ma, Zeng & Wang, "Perceptual quality assessment for multi-exposure image
    fusion", IEEE TIP 24(11), 2015), as MEFB calls it (used by DeFusion).

    Colour images are converted with ``rgb2gray``. Per 11 x 11 patch the desired signal has the
    largest source contrast and a structure that is a consistency-weighted (p = tan(pi R / 2),
    R the structural consistency) mean of the source structures; it is compared with F by the
    SSIM contrast-structure term (K = 0.03, Gaussian window sigma 1.5). Three scales (2 x 2 mean
    downsampling), combined as prod Q_l^w_l with w = (0.0448, 0.2856, 0.3001) / sum.
    For MEF sets the ``ir`` argument is the under-exposed and ``vi`` the over-exposed image
    (the order does not matter). Range [-1, 1]; **higher is better**.
    """
    prep = prepare(fused, ir, vi, color="gray", need_sources=True, metric="MEF-SSIM")
    return _mef_ssim(prep.triples[0])


def qc(fused: Any, a: Any, b: Any) -> float:
    """Cvejic's metric Q_C (Cvejic, Loza, Bull & Canagarajah, Int. J. Signal Processing 2(3),
    2005), as MEFB's ``metricsQc.m`` (Z. Liu's ``metricCvejic.m``) computes it.

    Local SSIM maps of each source with F (7 x 7 Gaussian window, sigma 1.5, C1 = C2 = 2e-16,
    'valid'); weight ``w = s_AF / (s_AF + s_BF)`` from the local covariances; ``Q = w SSIM(A, F)
    + (1 - w) SSIM(B, F)``, set to 0 where w < 0 and to 1 where w > 1; mean over the windows
    where it is defined (not NaN). Not symmetric in A and B (the clipping). Colour: mean over RGB
    channels. Range [-1, 1]; **higher is better**; 1 when both sources equal F.
    """
    prep = prepare(fused, b, a, color="mefb", need_sources=True, metric="QC")
    return channel_mean([_qc(t) for t in prep.triples])


def qw(fused: Any, a: Any, b: Any) -> float:
    """Piella's edge-dependent (weighted) fusion quality index Q_W (Piella & Heijmans, ICIP 2003),
    as MEFB's ``metricsQw.m`` (Z. Liu's ``metricPeilla.m``, case 3, alpha = 1) computes it.

    On the Prewitt edge magnitudes (filter2 'same') of A, B and F: SSIM maps (Wang's
    ``ssim_index``: 11 x 11 Gaussian, sigma 1.5, K = (0.01, 0.03), L = 255, 'valid') of F with
    each source; local saliency = the local variances of the source edge maps (0.5 added to both
    where both are 0); ``Q_W = sum c(w) (l SSIM(A, F) + (1 - l) SSIM(B, F))`` with ``l = s_A /
    (s_A + s_B)`` and ``c(w) = max(s_A, s_B) / sum max(s_A, s_B)``. Colour: mean over RGB channels.
    Range [-1, 1]; **higher is better**; 1 when both sources equal F.
    """
    prep = prepare(fused, b, a, color="mefb", need_sources=True, metric="QW")
    return channel_mean([_qw(t) for t in prep.triples])


# ---------------------------------------------------------------------------- registry entries

_SSIM_DEF = Metric(
    name="SSIM",
    fn=per_triple(_ssim, combine="sum"),
    family="structural",
    higher_is_better=True,
    range=(-2.0, 2.0),
    needs="sources",
    meaning="SSIM(VI,F)+SSIM(IR,F) (sum, max 2)",
    source=f"{VIFB_SRC}: metricsSsim (Wang et al. 2004, 11x11 Gaussian, no downsampling)",
    profiles=("vifb", "ma2019"),
    aliases=("Ssim",),
    cost=6.0,
)
_QABF_DEF = Metric(
    name="QABF",
    fn=per_triple(_qabf),
    family="structural",
    higher_is_better=True,
    range=(0.0, 1.0),
    needs="sources",
    meaning="gradient information preservation Q^AB/F",
    source=f"{VIFB_SRC}: metricsQabf (Xydeas & Petrovic 2000)",
    profiles=("vifb", "ma2019"),
    aliases=("Qabf", "Q_ABF", "QAB/F"),
    cost=4.0,
)
_QCB_DEF = Metric(
    name="QCB",
    fn=per_triple(_qcb),
    family="structural",
    higher_is_better=True,
    range=(0.0, 1.0),
    needs="sources",
    meaning="Chen-Blum perceptual contrast preservation",
    source=f"{VIFB_SRC}: metricsQcb (Chen & Blum 2009, Z. Liu's metricChenBlum.m)",
    profiles=("vifb", "ma2019"),
    aliases=("Qcb", "Q_CB"),
    cost=12.0,
)
_QCV_DEF = Metric(
    name="QCV",
    fn=per_triple(_qcv, alpha=5.0),
    family="structural",
    higher_is_better=False,
    range=(0.0, math.inf),
    needs="sources",
    meaning="Chen-Varshney regional CSF-weighted distortion",
    source=f"{VIFB_SRC}: metricsQcv (Chen & Varshney 2007, Z. Liu's metricChen.m)",
    profiles=("vifb", "ma2019"),
    aliases=("Qcv", "Q_CV"),
    cost=6.0,
)
_QY_DEF = Metric(
    name="QY",
    fn=per_triple(_qy),
    family="structural",
    higher_is_better=True,
    range=(-1.0, 1.0),
    needs="sources",
    meaning="Yang's SSIM-based fusion metric",
    source="Yang et al., Information Fusion 9(2), 2008; Z. Liu's metricYang.m (SSL-WAEIE)",
    profiles=("vifb", "ma2019"),
    aliases=("Q_Y",),
    cost=6.0,
)
_MEF_SSIM_DEF = Metric(
    name="MEF-SSIM",
    fn=first_triple(_mef_ssim),
    family="structural",
    higher_is_better=True,
    range=(-1.0, 1.0),
    needs="sources",
    meaning="multi-exposure fusion SSIM (3 scales, gray)",
    source="Ma, Zeng & Wang, IEEE TIP 24(11), 2015, mef_ms_ssim.m as MEFB calls it (DeFusion)",
    profiles=("vifb", "ma2019"),
    aliases=("MEFSSIM", "Q_MEF"),
    color="gray",
    cost=12.0,
)

METRICS = (
    _SSIM_DEF,
    # not one of MEFB's metrics (so not in its default set): DeFusion's Table 1 reports an SSIM
    # on MEFB whose values (0.5-0.6) fit the mean over the two sources
    _SSIM_DEF.variant(
        fn=per_triple(_ssim, combine="mean"),
        range=(-1.0, 1.0),
        meaning="(SSIM(A,F) + SSIM(B,F)) / 2 (not a MEFB metric; DeFusion's Table 1)",
        source="VIFB's metricsSsim SSIM (Wang et al. 2004, 11x11 Gaussian, no downsampling), averaged",
        profiles=("mefb",),
    ),
    _QABF_DEF,
    mefb_variant(_QABF_DEF, "Qabf"),
    _QCB_DEF,
    mefb_variant(_QCB_DEF, "Qcb"),
    _QCV_DEF,
    mefb_variant(_QCV_DEF, "Qcv"),
    _QY_DEF,
    mefb_variant(_QY_DEF, "Qy"),
    _MEF_SSIM_DEF,
    mefb_variant(_MEF_SSIM_DEF, "MEF_SSIM"),
    Metric(
        name="QC",
        fn=per_triple(_qc),
        family="structural",
        higher_is_better=True,
        range=(-1.0, 1.0),
        needs="sources",
        meaning="Cvejic's covariance-weighted SSIM",
        source=f"{MEFB_SRC}: metricsQc.m (Cvejic et al. 2005; Z. Liu's metricCvejic.m)",
        profiles=("mefb",),
        aliases=("Qc", "Q_C"),
        cost=5.0,
    ),
    Metric(
        name="QW",
        fn=per_triple(_qw),
        family="structural",
        higher_is_better=True,
        range=(-1.0, 1.0),
        needs="sources",
        meaning="Piella's edge-dependent weighted fusion quality index",
        source=f"{MEFB_SRC}: metricsQw.m (Piella & Heijmans 2003; Z. Liu's metricPeilla.m)",
        profiles=("mefb",),
        aliases=("Qw", "Q_W"),
        cost=8.0,
    ),
)
