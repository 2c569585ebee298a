"""Structural and gradient-preservation metrics: SSIM, QABF, QCB, QCV, QY, MEF-SSIM.

Sources: A = visible, B = infrared (VIFB's img1/img2). Local statistics use separable Gaussian
windows ('valid' part, MATLAB ``filter2``); frequency-domain filters use real FFTs, and the
FFT of a normalised image is shared by QCB and QCV (and across channels for a gray IR image).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy import fft as sfft

from ._core import (
    Plane,
    Triple,
    box_downsample,
    channel_mean,
    ev,
    filter_same,
    filter_valid,
    filter_zero_many,
    fspecial_gaussian_1d,
    prepare,
)

__all__ = ["mef_ssim", "qabf", "qcb", "qcv", "qy", "ssim", "ssim_fusion"]

_EPS = float(np.finfo(np.float64).eps)


# ---------------------------------------------------------------------------- SSIM


def ssim_map(
    x: Plane,
    y: Plane,
    *,
    size: int = 11,
    sigma: float = 1.5,
    c1: float = (0.01 * 255) ** 2,
    c2: float = (0.03 * 255) ** 2,
    variances: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """SSIM map of Wang et al. 2004 ('valid' Gaussian window), optionally with the local variances.

    Returns (map, var_x, var_y); the variances are None unless ``variances`` is true.
    """
    mx, ex2 = x.gauss_moments(size, sigma)
    my, ey2 = y.gauss_moments(size, sigma)
    exy = filter_valid(x.x * y.x, fspecial_gaussian_1d(size, sigma))
    smap = ev(
        "((2 * (mx * my) + c1) * (2 * (exy - mx * my) + c2))"
        " / ((mx * mx + my * my + c1) * ((ex2 - mx * mx) + (ey2 - my * my) + c2))",
        mx=mx, my=my, ex2=ex2, ey2=ey2, exy=exy, c1=c1, c2=c2,
    )  # fmt: skip
    if not variances:
        return smap, None, None
    return smap, ev("ex2 - mx * mx", ex2=ex2, mx=mx), ev("ey2 - my * my", ey2=ey2, my=my)


def _ssim_pair(t: Triple, s: Plane) -> float:
    return t.cached(("ssim", id(s)), lambda: float(ssim_map(s, t.fused)[0].mean()))


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


def _qabf_grad(p: Plane) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sobel magnitude (float64 and float32) and atan angle (float32) of 255 * p, as VIFB's
    ``metricsQabf`` (conv2 'same').

    The magnitudes are exact enough in float64 to detect VIFB's ties (g_X == g_F); the smooth
    per-pixel sigmoids then run in float32 (relative effect on Q^AB/F ~1e-8).
    """

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = p.x * 255.0
        # conv2(x, [-1 0 1; -2 0 2; -1 0 1]) == correlation with the flipped kernel
        sx = filter_same(x, np.array([1.0, 2.0, 1.0]), np.array([1.0, 0.0, -1.0]))
        # conv2(x, [1 2 1; 0 0 0; -1 -2 -1])
        sy = filter_same(x, np.array([-1.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0]))
        g = np.sqrt(sx * sx + sy * sy)
        zero = sx == 0
        sx[zero] = 1.0  # atan(sy / sx), and pi / 2 where sx == 0 (atan, not atan2)
        np.divide(sy, sx, out=sy)
        a = np.arctan(sy.astype(np.float32))
        a[zero] = math.pi / 2
        return g, g.astype(np.float32), a

    return p.cached("qabf_grad", compute)


_F32 = np.float32


def _qabf_weighted_sum(
    x: tuple[np.ndarray, np.ndarray, np.ndarray], f: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> float:
    """sum(Q_XF * g_X): edge-strength and orientation preservation (VIFB's tie rule included)."""
    c = _QABF
    gx64, gx, ax = x
    gf64, gf, af = f
    with np.errstate(divide="ignore", invalid="ignore"):
        # G = g_F / g_X if g_X > g_F, g_F if g_X == g_F (VIFB quirk), g_X / g_F otherwise
        g = np.minimum(gx, gf)
        g /= np.maximum(gx, gf)
        tie = gx64 == gf64
        g[tie] = gf[tie]
    # Q_g = Tg / (1 + exp(kg (G - Dg)))
    g -= _F32(c["Dg"])
    g *= _F32(c["kg"])
    np.exp(g, out=g)
    g += _F32(1.0)
    # Q_a = Ta / (1 + exp(ka (A - Da))), A = 1 - |a_X - a_F| / (pi / 2)
    d = np.subtract(ax, af)
    np.abs(d, out=d)
    d *= _F32(-c["ka"] / (math.pi / 2))
    d += _F32(c["ka"] * (1.0 - c["Da"]))
    np.exp(d, out=d)
    d += _F32(1.0)
    d *= g
    np.divide(gx, d, out=d)
    return float(d.sum(dtype=np.float64)) * c["Tg"] * c["Ta"]


def _qabf(t: Triple) -> float:
    a, b = t.sources("QABF")
    ga, gb, gf = _qabf_grad(a), _qabf_grad(b), _qabf_grad(t.fused)
    num = _qabf_weighted_sum(ga, gf) + _qabf_weighted_sum(gb, gf)
    den = float(ga[0].sum() + gb[0].sum())
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
    return p.cached("rfft_norm255", lambda: sfft.rfft2(p.norm255(), workers=-1))


def _irfft(spec: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return sfft.irfft2(spec, s=shape, workers=-1)


_CB = {"f0": 15.3870, "f1": 1.3456, "a": 0.7622, "k": 1.0, "h": 1.0, "p": 3.0, "q": 2.0, "Z": 1e-4}


@functools.lru_cache(maxsize=16)
def _qcb_filter(shape: tuple[int, int]) -> np.ndarray:
    r = _freq_radius(shape, 30.0)
    h = np.exp(-((r / _CB["f0"]) ** 2)) - _CB["a"] * np.exp(-((r / _CB["f1"]) ** 2))
    h.setflags(write=False)
    return h


def _gauss31(sigma: float) -> np.ndarray:
    """1-D factor of exp(-(x^2+y^2)/(2 s^2)) / (2 pi s^2) on [-15, 15], not renormalised."""
    t = np.arange(-15, 16, dtype=np.float64)
    return np.exp(-(t * t) / (2 * sigma * sigma)) / math.sqrt(2 * math.pi * sigma * sigma)


def _qcb_masked_contrast(p: Plane, h: np.ndarray) -> np.ndarray:
    def compute() -> np.ndarray:
        i_f = _irfft(_rfft_norm(p) * h, p.shape)
        k1, k2 = _gauss31(2.0), _gauss31(4.0)
        g1, g2 = filter_zero_many(i_f, [k1, k2])
        # C = |G1 * I / G2 * I - 1|, masked C' = k C^p / (h C^q + Z) with k=h=1, p=3, q=2
        return ev(
            "k * abs(g1 / g2 - 1) ** 3 / (hh * abs(g1 / g2 - 1) ** 2 + Z)",
            g1=g1, g2=g2, k=_CB["k"], hh=_CB["h"], Z=_CB["Z"],
        )  # fmt: skip

    return p.cached("qcb_contrast", compute)


def _qcb(t: Triple) -> float:
    a, b = t.sources("QCB")
    h = _qcb_filter(t.fused.shape)
    ca, cb, cf = (_qcb_masked_contrast(p, h) for p in (a, b, t.fused))
    # Q_XF = C'_X / C'_F if C'_X < C'_F else C'_F / C'_X; lambda_X = C'_X^2 / (C'_A^2 + C'_B^2)
    q = ev(
        "(ca * ca * where(ca < cf, ca / cf, cf / ca) + cb * cb * where(cb < cf, cb / cf, cf / cb))"
        " / (ca * ca + cb * cb)",
        ca=ca, cb=cb, cf=cf,
    )  # fmt: skip
    return float(q.mean())


def _block_sums(x: np.ndarray, b: int = 16) -> np.ndarray:
    """Sums over non-overlapping b x b blocks, zero-padded at the right/bottom (``blkproc``)."""
    m, n = x.shape
    mb, nb = -(-m // b), -(-n // b)
    padded = np.zeros((mb * b, nb * b))
    padded[:m, :n] = x
    return padded.reshape(mb, b, nb, b).sum(axis=(1, 3))


@functools.lru_cache(maxsize=16)
def _qcv_filter(shape: tuple[int, int]) -> np.ndarray:
    r = _freq_radius(shape, 8.0)
    h = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    h.setflags(write=False)
    return h


def _qcv_saliency(p: Plane, alpha: float) -> np.ndarray:
    def compute() -> np.ndarray:
        n = p.norm255()
        gx = filter_same(n, np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0]))
        gy = filter_same(n, np.array([-1.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0]))
        gx *= gx
        gy *= gy
        gx += gy
        np.sqrt(gx, out=gx)
        return _block_sums(gx**5 if alpha == 5 else gx**alpha)

    return p.cached(("qcv_saliency", alpha), compute)


def _qcv(t: Triple, alpha: float = 5.0, block: int = 16) -> float:
    a, b = t.sources("QCV")
    f = t.fused
    h = _qcv_filter(f.shape)
    ff = _rfft_norm(f)
    num = 0.0
    den = 0.0
    for s in (a, b):
        lam = _qcv_saliency(s, alpha)
        d = _irfft((_rfft_norm(s) - ff) * h, f.shape)
        np.multiply(d, d, out=d)
        dist = _block_sums(d, block) / (block * block)
        num += float((lam * dist).sum())
        den += float(lam.sum())
    return num / den if den > 0 else math.nan


# ---------------------------------------------------------------------------- QY


def _qy(t: Triple) -> float:
    a, b = t.sources("QY")
    f = t.fused
    opts = {"size": 7, "sigma": 1.5, "c1": 2e-16, "c2": 2e-16}
    s_ab, va, vb = ssim_map(a, b, variances=True, **opts)
    s_af = ssim_map(a, f, **opts)[0]
    s_bf = ssim_map(b, f, **opts)[0]
    # where SSIM(A,B) >= 0.75: l SSIM(A,F) + (1 - l) SSIM(B,F), l = var_A / (var_A + var_B);
    # elsewhere max(SSIM(A,F), SSIM(B,F)). As in metricYang.m, a NaN weight (0/0) drops the
    # window even where the max branch applies (Q1 * bin_map is NaN there).
    q = ev(
        "(va / (va + vb) * saf + (1 - va / (va + vb)) * sbf) * where(sab >= 0.75, 1, 0)"
        " + where(saf > sbf, saf, sbf) * where(sab >= 0.75, 0, 1)",
        va=va, vb=vb, saf=s_af, sbf=s_bf, sab=s_ab,
    )  # fmt: skip
    q = q[~np.isnan(q)]
    return float(q.mean()) if q.size else math.nan


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
        from ..errors import InputError

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
