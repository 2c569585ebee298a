"""Visual-information metrics: VIFF (Han et al. 2013), pixel-domain VIF (Sheikh & Bovik 2006) and
IFC (Sheikh, Bovik & de Veciana 2005).

VIF and VIFF share the per-scale Gaussian statistics of each (source, fused) pair; when both are
asked for in one :func:`ivfuse.metrics.evaluate` call they are computed once. Sources: A =
visible, B = infrared.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy import fft as sfft

from ..errors import InputError
from .buffers import POOL, row_blocks
from .definition import MA2019_SRC, MEFB_SRC, Metric, per_triple
from .filters import filter_valid, fspecial_gaussian_1d, sep_filter
from .planes import Plane, Triple, channel_mean, prepare

__all__ = ["ifc", "vif", "viff"]


# ---------------------------------------------------------------------------- VIF / VIFF


def _scale_window(scale: int) -> np.ndarray:
    """Scale s = 1..4: Gaussian of size 2^(5-s)+1 and sigma size/5 (both VIF codes)."""
    n = 2 ** (4 - scale + 1) + 1
    return fspecial_gaussian_1d(n, n / 5.0)


def _vif_pyramid(p: Plane) -> list[tuple[Plane, np.ndarray, np.ndarray]]:
    """Per scale: (image at that scale, local mean, local mean of squares)."""

    def compute() -> list[tuple[Plane, np.ndarray, np.ndarray]]:
        out = []
        x = p
        for s in range(1, 5):
            w = _scale_window(s)
            if s > 1:
                x = Plane(filter_valid(x.data, w)[::2, ::2])
            mu, ex2 = x.gauss_moments(w.size, w.size / 5.0)
            out.append((x, mu, ex2))
        return out

    m, n = p.shape
    if min(m, n) < 48:
        raise InputError(f"VIF/VIFF need images of at least 48 pixels a side, got {n}x{m}")
    return p.cached("vif_pyramid", compute)


_T = 1e-10


def _vif_channel(t: Triple, s: Plane) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per scale: (g, sv_sq, sigma_ref_sq) of the distortion channel source -> fused, on the
    'valid' part (row-blocked)."""

    def compute() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for scale, ((x, mx, ex2), (y, my, ey2)) in enumerate(
            zip(_vif_pyramid(s), _vif_pyramid(t.fused), strict=True), start=1
        ):
            w = _scale_window(scale)
            h = w.size // 2
            m, n = x.shape
            xy = x.product(
                y, out=POOL.take(x.shape, np.uint16 if x.u8 is not None and y.u8 is not None else np.float64)
            )
            c = filter_valid(xy, w, keep_size=True, out=POOL.take(x.shape))  # full size
            POOL.give(xy)
            shape = (m - 2 * h, n - 2 * h)
            g_out, sv_out, s1_out = (t.alloc(shape) for _ in range(3))
            blocks = row_blocks(h, m - h, n)
            rows = blocks[0].stop - blocks[0].start
            s1, s2, g, tmp = (np.empty((rows, n)) for _ in range(4))
            low1, low2, neg = (np.empty((rows, n), bool) for _ in range(3))
            for sl in blocks:
                r = sl.stop - sl.start
                b1, b2, bg, bt = s1[:r], s2[:r], g[:r], tmp[:r]
                l1, l2, ng = low1[:r], low2[:r], neg[:r]
                cc = c[sl]
                cc -= np.multiply(mx[sl], my[sl], out=bt)  # covariance
                # VIF's numerical guards, in the order of vifp_mscale.m / VIFF_Public.m:
                # negative variances are 0, variances below 1e-10 count as zero, a negative gain
                # becomes 0 (noise = fused variance), the noise variance is at least 1e-10
                np.subtract(ex2[sl], np.multiply(mx[sl], mx[sl], out=bt), out=b1)
                np.maximum(b1, 0.0, out=b1)
                np.subtract(ey2[sl], np.multiply(my[sl], my[sl], out=bt), out=b2)
                np.maximum(b2, 0.0, out=b2)
                np.add(b1, _T, out=bg)
                np.divide(cc, bg, out=bg)
                np.less(b1, _T, out=l1)
                np.less(b2, _T, out=l2)
                np.less(bg, 0, out=ng)
                sv = np.multiply(bg, cc, out=cc)
                np.subtract(b2, sv, out=sv)
                np.logical_or(l1, ng, out=ng)  # from here on: low1 | neg
                np.copyto(sv, b2, where=ng)
                np.copyto(sv, 0.0, where=l2)
                np.maximum(sv, _T, out=sv)
                np.copyto(bg, 0.0, where=ng)
                np.copyto(bg, 0.0, where=l2)
                np.copyto(b1, 0.0, where=l1)
                rs = slice(sl.start - h, sl.stop - h)
                g_out[rs] = bg[:, h : n - h]
                sv_out[rs] = sv[:, h : n - h]
                s1_out[rs] = b1[:, h : n - h]
            POOL.give(c)
            out.append((g_out, sv_out, s1_out))
        return out

    return t.cached(("vif_channel", id(s)), compute)


_INV_LN10 = 1.0 / math.log(10.0)


def _vid_into(out: np.ndarray, tmp: np.ndarray, g: np.ndarray, sv: np.ndarray, s1: np.ndarray, n: float):
    """out = log10(1 + g^2 s1 / (sv + n)), the information the fused image carries about the
    source."""
    np.multiply(g, g, out=out)
    out *= s1
    out /= np.add(sv, n, out=tmp)
    np.log1p(out, out=out)
    out *= _INV_LN10
    return out


def _vind_into(out: np.ndarray, s1: np.ndarray, n: float) -> np.ndarray:
    """out = log10(1 + s1 / n), the information of the source itself."""
    np.divide(s1, n, out=out)
    np.log1p(out, out=out)
    out *= _INV_LN10
    return out


def _vifp(t: Triple, s: Plane, sigma_nsq: float = 2.0) -> float:
    num = 0.0
    den = 0.0
    for g, sv, s1 in _vif_channel(t, s):
        m, n = g.shape
        blocks = row_blocks(0, m, n)
        b1, b2 = (np.empty((blocks[0].stop, n)) for _ in range(2))
        for sl in blocks:
            r = sl.stop - sl.start
            num += float(_vid_into(b1[:r], b2[:r], g[sl], sv[sl], s1[sl], sigma_nsq).sum())
            den += float(_vind_into(b1[:r], s1[sl], sigma_nsq).sum())
    return num / den if den > 0 else math.nan


def _vif(t: Triple, sigma_nsq: float = 2.0) -> float:
    a, b = t.sources("VIF")
    return _vifp(t, a, sigma_nsq) + _vifp(t, b, sigma_nsq)


_VIFF_WEIGHTS = (1.0 / 2.15, 0.0, 0.15 / 2.15, 1.0 / 2.15)


def _viff(t: Triple, sigma_nsq: float = 0.005 * 255 * 255) -> float:
    a, b = t.sources("VIFF")
    c = 1e-7
    total = 0.0
    for wgt, (ga, sva, s1a), (gb, svb, s1b) in zip(
        _VIFF_WEIGHTS, _vif_channel(t, a), _vif_channel(t, b), strict=True
    ):
        if wgt == 0.0:  # F_s is always finite, so this scale adds exactly 0
            continue
        m, n = ga.shape
        blocks = row_blocks(0, m, n)
        va, vb, tmp = (np.empty((blocks[0].stop, n)) for _ in range(3))
        take = np.empty((blocks[0].stop, n), bool)
        vid = vind = 0.0
        for sl in blocks:
            r = sl.stop - sl.start
            # the source with the smaller gain supplies VID and VIND; ties go to B
            ta = np.less(ga[sl], gb[sl], out=take[:r])
            x = _vid_into(va[:r], tmp[:r], ga[sl], sva[sl], s1a[sl], sigma_nsq)
            y = _vid_into(vb[:r], tmp[:r], gb[sl], svb[sl], s1b[sl], sigma_nsq)
            np.copyto(y, x, where=ta)
            vid += float(y.sum())
            x = _vind_into(va[:r], s1a[sl], sigma_nsq)
            y = _vind_into(vb[:r], s1b[sl], sigma_nsq)
            np.copyto(y, x, where=ta)
            vind += float(y.sum())
        size = ga.size
        total += wgt * float((vid + c * size) / (vind + c * size))
    return total


# ---------------------------------------------------------------------------- IFC


def _rcos_hi(log_r: np.ndarray, top: float) -> np.ndarray:
    """Raised-cosine high-pass amplitude: 0 below ``top - 1`` octaves, 1 above ``top``."""
    z = np.clip(log_r - top, -1.0, 0.0)
    return np.cos(math.pi / 2 * z)


@functools.lru_cache(maxsize=8)
def _pyramid_masks(shape: tuple[int, int], levels: int, nbands: int, use: tuple[int, ...]):
    """Frequency masks of the steerable pyramid for one image size (shared by all images)."""
    m, n = shape
    xr = (np.arange(n) - n // 2) / (n / 2)
    yr = (np.arange(m) - m // 2) / (m / 2)
    xx, yy = np.meshgrid(xr, yr)
    angle = np.arctan2(yy, xx)
    rad = np.sqrt(xx * xx + yy * yy)
    rad[m // 2, n // 2] = rad[m // 2, n // 2 - 1]
    log_r = np.log2(rad)
    lo0 = np.sqrt(1.0 - _rcos_hi(log_r, 0.0) ** 2)  # the hi0 residual is not used
    order = nbands - 1
    const = (2 ** (2 * order)) * math.factorial(order) ** 2 / (nbands * math.factorial(2 * order))
    steps = []
    top = -1.0
    for _ in range(levels):
        hi = _rcos_hi(log_r, top)
        bands = [
            ((-1j) ** order) * math.sqrt(const) * np.cos(angle - math.pi * b / nbands) ** order * hi
            for b in use
        ]
        dm, dn = log_r.shape
        lm, ln = math.ceil((dm - 0.5) / 2), math.ceil((dn - 0.5) / 2)
        s0, s1 = dm // 2 - lm // 2, dn // 2 - ln // 2
        sl = (slice(s0, s0 + lm), slice(s1, s1 + ln))
        log_r, angle = log_r[sl], angle[sl]
        lo = np.sqrt(1.0 - _rcos_hi(log_r, top) ** 2)
        steps.append((bands, sl, lo))
        top -= 1.0
    return lo0, steps


def _steerable_bands(x: np.ndarray, levels: int = 4, nbands: int = 6, use: tuple[int, ...] = (0, 3)):
    """Frequency-domain steerable pyramid (Simoncelli & Freeman 1995; as ``buildSFpyr``).

    Returns, finest level first, the list of the oriented band-pass subbands with the
    orientation indices ``use`` (0 = 0 rad, 3 = pi/2 for 6 bands). Each level's bands are at
    that level's resolution; the low-pass is halved in the frequency domain between levels.
    """
    lo0, steps = _pyramid_masks(x.shape, levels, nbands, use)
    lo = np.fft.fftshift(sfft.fft2(x, workers=-1)) * lo0
    out = []
    for bands, sl, lomask in steps:
        out.append([sfft.ifft2(np.fft.ifftshift(lo * b), workers=-1).real for b in bands])
        lo = lo[sl] * lomask
    return out


def _ifc_bands(p: Plane) -> list[list[np.ndarray]]:
    m, n = p.shape
    if min(m, n) < 64:
        raise InputError(f"IFC needs images of at least 64 pixels a side, got {n}x{m}")
    return p.cached("ifc_bands", lambda: _steerable_bands(p.x))


def _crop3(y: np.ndarray, m: int = 3) -> np.ndarray:
    a, b = (y.shape[0] // m) * m, (y.shape[1] // m) * m
    return y[:a, :b]


def _ifc_ref_params(p: Plane, m: int = 3) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per subband: (s^2 field on the non-overlapping M x M blocks, eigenvalues of C_U)."""

    def one(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = _crop3(y, m)
        r, c = y.shape
        over = np.stack(
            [y[k : r - (m - 1 - k), j : c - (m - 1 - j)].ravel() for j in range(m) for k in range(m)]
        )
        mu = over.mean(axis=1, keepdims=True)
        d = over - mu
        cu = d @ d.T / over.shape[1]
        blocks = np.stack([y[k::m, j::m] for j in range(m) for k in range(m)])  # (M^2, r/M, c/M)
        inv = np.linalg.pinv(cu)
        ss = np.einsum("ij,jab,iab->ab", inv, blocks, blocks) / (m * m)
        return ss, np.linalg.eigvalsh(cu)

    return p.cached(("ifc_ref", m), lambda: [[one(b) for b in lev] for lev in _ifc_bands(p)])


def _ifc_pair(t: Triple, s: Plane, m: int = 3) -> float:
    ref = _ifc_ref_params(s, m)
    tol = 1e-15
    total = 0.0
    nlev = len(ref)
    for li, (bands_s, bands_f, params) in enumerate(
        zip(_ifc_bands(s), _ifc_bands(t.fused), ref, strict=True)
    ):
        lev = nlev - li  # ifcvec numbers levels from the coarsest (1) to the finest (4)
        win = 2**lev + 1
        off = math.ceil(((win - 1) / 2) / m)
        for y, yn, (ss, lam) in zip(bands_s, bands_f, params, strict=True):
            y, yn = _crop3(y, m), _crop3(yn, m)
            k = np.ones(win)
            nw = float(win * win)

            def wsum(z: np.ndarray, k: np.ndarray = k) -> np.ndarray:
                return sep_filter(z, k, k, "mirror")[m // 2 :: m, m // 2 :: m]

            mx, my = wsum(y) / nw, wsum(yn) / nw
            cov = wsum(y * yn) - nw * mx * my
            sx = np.maximum(wsum(y * y) - nw * mx * mx, 0.0)
            sy = np.maximum(wsum(yn * yn) - nw * my * my, 0.0)
            g = cov / (sx + tol)
            vv = (sy - g * cov) / nw
            lowx = sx < tol
            g[lowx] = 0.0
            vv[lowx] = sy[lowx]
            lowy = sy < tol
            g[lowy] = 0.0
            vv[lowy] = 0.0
            neg = g < 0
            vv[neg] = sy[neg]
            g[neg] = 0.0
            vv[vv <= tol] = tol
            sl = (slice(off, g.shape[0] - off), slice(off, g.shape[1] - off))
            gg, v2, s2 = g[sl] ** 2, vv[sl] + 1e-10, ss[sl]
            for lj in lam:
                total += float(np.log2(1.0 + gg * s2 * lj / v2).sum())
    return total / t.fused.x.size


_IFC_COMBINE = ("sum", "mean")


def _ifc(t: Triple, combine: str = "sum") -> float:
    a, b = t.sources("IFC")
    total = _ifc_pair(t, a) + _ifc_pair(t, b)
    return total / 2.0 if combine == "mean" else total


# ---------------------------------------------------------------------------- public API


def viff(fused: Any, ir: Any, vi: Any) -> float:
    """VIFF, visual information fidelity for fusion (Han, Cai, Cao & Xu, Information Fusion
    14(2), 2013; the authors' ``VIFF_Public.m``). The ``VIF`` of the ``ma2019`` profile and
    IFESNet's VIFF.

    Four scales (Gaussian windows of size 2^(5-s)+1, sigma size/5, 'valid', dyadic downsampling
    from scale 2); pixel-domain VIF statistics of each source against F with visual noise
    0.005 * 255^2; at each pixel the source with the smaller gain g supplies the VID / VIND
    terms (ties: the infrared image); ``F_s = sum(VID + 1e-7) / sum(VIND + 1e-7)``;
    ``VIFF = sum_s w_s F_s`` with w = (1, 0, 0.15, 1) / 2.15. Mean over RGB channels.
    Range [0, 1] for non-enhancing fusion (can exceed 1); **higher is better**; 1 when both
    sources equal F.
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="VIFF")
    return channel_mean([_viff(t) for t in prep.triples])


def vif(fused: Any, ir: Any, vi: Any, *, sigma_nsq: float = 2.0) -> float:
    """Pixel-domain VIF (Sheikh & Bovik, IEEE TIP 15(2), 2006; ``vifp_mscale.m``), summed over
    the two sources: ``VIF = VIFp(VI, F) + VIFp(IR, F)``, what CDDFuse's evaluator calls VIF.

    Same four-scale statistics as :func:`viff`, noise variance 2, ``VIFp = sum log10(1 + g^2
    s_ref^2 / (sv^2 + 2)) / sum log10(1 + s_ref^2 / 2)`` over all scales. Mean over RGB channels.
    Range [0, 2] for non-enhancing fusion; **higher is better**; 2 when both sources equal F.
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="VIF")
    return channel_mean([_vif(t, sigma_nsq) for t in prep.triples])


def ifc(fused: Any, ir: Any, vi: Any, *, combine: str = "sum") -> float:
    """Information fidelity criterion (Sheikh, Bovik & de Veciana, IEEE TIP 14(12), 2005;
    the LIVE ``ifcvec.m``), summed over the two sources: ``IFC(VI, F) + IFC(IR, F)``.
    ``combine='mean'`` averages them instead (metric ``IFC_MEAN``: the reading that fits the
    tables of SSL-WAEIE, which uses IFC; docs/metrics.md).

    Gaussian scale mixture model on a 4-level, 6-orientation steerable pyramid (the 0 and pi/2
    bands of every level, as ``ifcvec``'s subbands 4, 7, ..., 25); 3 x 3 coefficient vectors;
    distortion channel (gain g, noise vv) estimated in (2^lev + 1)^2 windows with mirrored
    borders; ``IFC = sum log2(1 + g^2 s^2 lambda_j / (vv + 1e-10))`` over blocks and the
    eigenvalues lambda_j of C_U, divided by the number of pixels (as in the widely used copies of
    ``ifcvec.m``). The pyramid is the frequency-domain one (``buildSFpyr``), not the spatial
    ``sp5Filters`` pyramid of ``ifcvec.m``, so values differ slightly from MATLAB.
    Mean over RGB channels. Range [0, inf); **higher is better**.
    """
    if combine not in _IFC_COMBINE:
        raise InputError(f"combine must be one of {', '.join(_IFC_COMBINE)}, got {combine!r}")
    prep = prepare(fused, ir, vi, need_sources=True, metric="IFC")
    return channel_mean([_ifc(t, combine) for t in prep.triples])


# ---------------------------------------------------------------------------- registry entries

_VIFF_DEF = Metric(
    name="VIFF",
    fn=per_triple(_viff),
    family="visual",
    higher_is_better=True,
    range=(0.0, math.inf),  # [0, 1] unless the fusion enhances
    needs="sources",
    meaning="visual information fidelity for fusion",
    source="Han, Cai, Cao & Xu, Information Fusion 14(2), 2013, VIFF_Public.m (IFESNet)",
    profiles=("vifb", "ma2019"),
    cost=10.0,
)

_IFC_DEF = Metric(
    name="IFC",
    fn=per_triple(_ifc),
    family="visual",
    higher_is_better=True,
    range=(0.0, math.inf),
    needs="sources",
    meaning="information fidelity criterion IFC(VI,F)+IFC(IR,F)",
    source="Sheikh, Bovik & de Veciana, IEEE TIP 14(12), 2005; ifcvec.m with a "
    "frequency-domain steerable pyramid, per pixel (SSL-WAEIE)",
    profiles=("vifb", "ma2019"),
    cost=30.0,
)

METRICS = (
    _IFC_DEF,
    _IFC_DEF.variant(
        name="IFC_MEAN",
        fn=per_triple(_ifc, combine="mean"),
        meaning="IFC averaged over the two sources, (IFC(VI,F)+IFC(IR,F))/2",
        source="IFC as above; the mean over the sources is the reading that fits SSL-WAEIE's "
        "tables (its DenseFuse and DIDFuse rows; docs/metrics.md)",
    ),
    Metric(
        name="VIFP",
        fn=per_triple(_vif, sigma_nsq=2.0),
        family="visual",
        higher_is_better=True,
        range=(0.0, math.inf),  # [0, 2] unless the fusion enhances
        needs="sources",
        meaning="pixel-domain VIF, VIFp(VI,F)+VIFp(IR,F)",
        source="Sheikh & Bovik, IEEE TIP 15(2), 2006, vifp_mscale.m, sigma_n^2 = 2 (CDDFuse's 'VIF')",
        profiles=("vifb", "ma2019"),
        aliases=("VIF_SB",),
        cost=10.0,
    ),
    _VIFF_DEF,
    _VIFF_DEF.variant(
        name="VIF",
        meaning="VIFF of Han et al. 2013",
        source=f"{MA2019_SRC}: Han, Cai, Cao & Xu, Information Fusion 14(2), 2013",
        profiles=("ma2019",),
    ),
    _VIFF_DEF.variant(
        name="VIF",
        meaning="VIFF of Han et al. 2013 (per RGB channel; ties: B)",
        source=f"{MEFB_SRC}: metricsVIF.m (Han, Cai, Cao & Xu, Information Fusion 14(2), 2013)",
        profiles=("mefb",),
        aliases=("VIFF",),
    ),
)
