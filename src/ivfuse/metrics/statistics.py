"""Statistical and gradient metrics: SD, SF, AG, EI, GLD, CC, SCD and VIFB's PSNR / RMSE.

F-only metrics (SD, SF, AG, EI, GLD) take the fused image alone. Sources: A = visible,
B = infrared.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._core import Plane, Triple, channel_mean, filter_same, prepare

__all__ = [
    "average_gradient",
    "correlation_coefficient",
    "edge_intensity",
    "gray_level_difference",
    "psnr_vifb",
    "rmse_vifb",
    "scd",
    "spatial_frequency",
    "standard_deviation",
]

_SOBEL_SMOOTH = np.array([1.0, 2.0, 1.0])
_SOBEL_DIFF = np.array([1.0, 0.0, -1.0])


# ---------------------------------------------------------------------------- plane-level


def _sd(p: Plane, mean: str = "global") -> float:
    x = p.x
    if mean == "global":
        d = x - x.mean()
    elif mean == "column":
        d = x - x.mean(axis=0, keepdims=True)
    else:
        raise ValueError(f"mean must be 'global' or 'column', got {mean!r}")
    return float(math.sqrt(np.einsum("ij,ij->", d, d) / x.size))


def _sf_concat(planes: list[Plane]) -> float:
    """VIFB SF of the channels laid side by side (M x CN array), normaliser M * CN."""
    m, n = planes[0].shape
    rf = 0.0
    cf = 0.0
    for i, p in enumerate(planes):
        x = p.x
        dr = np.diff(x, axis=1)
        dc = np.diff(x, axis=0)
        rf += float(np.einsum("ij,ij->", dr, dr))
        cf += float(np.einsum("ij,ij->", dc, dc))
        if i > 0:  # seam between the last column of the previous channel and this one
            s = x[:, 0] - planes[i - 1].x[:, -1]
            rf += float(s @ s)
    total = m * n * len(planes)
    return math.sqrt(rf / total + cf / total)


def _ag(p: Plane, scheme: str = "central") -> float:
    x = p.x
    m, n = x.shape
    if scheme == "central":
        gy, gx = np.gradient(x)
    elif scheme == "forward":
        gx = x[:-1, 1:] - x[:-1, :-1]
        gy = x[1:, :-1] - x[:-1, :-1]
    else:
        raise ValueError(f"scheme must be 'central' or 'forward', got {scheme!r}")
    g = np.multiply(gx, gx)
    g += gy * gy
    g /= 2.0
    return float(np.sqrt(g, out=g).sum() / ((m - 1) * (n - 1)))


def _ei(p: Plane) -> float:
    gx = filter_same(p.x, _SOBEL_DIFF, _SOBEL_SMOOTH, mode="replicate")
    gy = filter_same(p.x, _SOBEL_SMOOTH, _SOBEL_DIFF, mode="replicate")
    gx *= gx
    gx += gy * gy
    return float(np.sqrt(gx, out=gx).mean())


def _gld(p: Plane) -> float:
    x = p.x
    m, n = x.shape
    dv = np.abs(x[:-1, :-1] - x[1:, :-1])
    dh = np.abs(x[:-1, :-1] - x[:-1, 1:])
    return float((dv.sum() + dh.sum()) / ((m - 1) * (n - 1)))


def _centred(p: Plane) -> tuple[np.ndarray, float]:
    def compute() -> tuple[np.ndarray, float]:
        d = p.x - p.x.mean()
        return d, float(np.einsum("ij,ij->", d, d))

    return p.cached("centred", compute)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    da = a - a.mean()
    db = b - b.mean()
    den = math.sqrt(float(np.einsum("ij,ij->", da, da)) * float(np.einsum("ij,ij->", db, db)))
    return float(np.einsum("ij,ij->", da, db)) / den if den > 0 else math.nan


def _cc(t: Triple) -> float:
    a, b = t.sources("CC")
    df, sf = _centred(t.fused)
    out = 0.0
    for s in (a, b):
        ds, ss = _centred(s)
        den = math.sqrt(sf * ss)
        out += float(np.einsum("ij,ij->", df, ds)) / den if den > 0 else math.nan
    return out / 2.0


def _scd(t: Triple) -> float:
    a, b = t.sources("SCD")
    f = t.fused.x
    return _corr(f - b.x, a.x) + _corr(f - a.x, b.x)


def _err(t: Triple, s: Plane) -> float:
    """VIFB's e(S, F) = sqrt(sum (S - F)^2) / (M N) (root of the SSE over the pixel count)."""

    def compute() -> float:
        d = s.x - t.fused.x
        return math.sqrt(float(np.einsum("ij,ij->", d, d))) / d.size

    return t.cached(("err", id(s)), compute)


def _rmse(t: Triple) -> float:
    a, b = t.sources("RMSE")
    return (_err(t, a) + _err(t, b)) / 2.0


def _psnr(t: Triple, peak: float = 255.0) -> float:
    r = _rmse(t)
    return 20.0 * math.log10(peak / math.sqrt(r)) if r > 0 else math.inf


# ---------------------------------------------------------------------------- public API


def standard_deviation(fused: Any, *, mean: str = "global") -> float:
    """Standard deviation SD of the fused image (VIFB ``metricsVariance``).

    ``SD = sqrt(sum (F - mu)^2 / (M N))``, the population standard deviation (VIFB calls it
    "Variance"), mean over RGB channels. ``mean='column'`` subtracts each column's own mean
    instead of the global one: the slip of the Ma et al. 2019 evaluation code that reproduces the
    DIDFuse table (profile ``ma2019`` only). Range [0, 127.5]; **higher is better**.
    """
    prep = prepare(fused, metric="SD")
    return channel_mean([_sd(p, mean) for p in prep.fused_channels])


def spatial_frequency(fused: Any) -> float:
    """Spatial frequency SF (Eskicioglu & Fisher 1995; VIFB ``metricsSpatial_frequency``; IFESNet
    eqs. 19-21).

    ``RF = sum_{i, j>=2} (F(i,j) - F(i,j-1))^2 / (M N)``, ``CF = sum_{i>=2, j} (F(i,j) -
    F(i-1,j))^2 / (M N)``, ``SF = sqrt(RF + CF)``. A colour F is treated as VIFB's MATLAB code
    does: the M x 3N array [R | G | B], seams included, normaliser M * 3N. Range [0, inf);
    **higher is better**.
    """
    prep = prepare(fused, metric="SF")
    return _sf_concat(prep.fused_channels)


def average_gradient(fused: Any, *, scheme: str = "central") -> float:
    """Average gradient AG.

    ``scheme='central'`` (VIFB ``metricsAvg_gradient``; also the ``ma2019`` AG): MATLAB
    ``gradient`` (central differences inside, one-sided at the borders),
    ``AG = sum_{all M N pixels} sqrt((gx^2 + gy^2) / 2) / ((M - 1)(N - 1))``.
    ``scheme='forward'`` (IFESNet eq. 14, metric ``AG_FWD``): forward differences over the
    (M-1)(N-1) top-left pixels, same normaliser. Colour: mean over RGB channels.
    Range [0, inf); **higher is better**.
    """
    prep = prepare(fused, metric="AG")
    return channel_mean([_ag(p, scheme) for p in prep.fused_channels])


def edge_intensity(fused: Any) -> float:
    """Edge intensity EI (Rajalingam & Priya 2018; VIFB ``metricsEdge_intensity``).

    Sobel responses by correlation with ``[1 2 1; 0 0 0; -1 -2 -1]`` and its transpose with
    replicated borders; ``EI = mean sqrt(gx^2 + gy^2)`` over all pixels of all channels.
    Range [0, inf); **higher is better**.
    """
    prep = prepare(fused, metric="EI")
    return channel_mean([_ei(p) for p in prep.fused_channels])


def gray_level_difference(fused: Any) -> float:
    """Gray level difference GLD (IFESNet eq. 18, after Zhao, Lu & Wang, IEEE TMM 2017).

    ``GLD = sum_{i<M, j<N} (|F(i,j) - F(i+1,j)| + |F(i,j) - F(i,j+1)|) / ((M - 1)(N - 1))``.
    Colour: mean over RGB channels. Range [0, 510]; **higher is better** (more texture).
    """
    prep = prepare(fused, metric="GLD")
    return channel_mean([_gld(p) for p in prep.fused_channels])


def correlation_coefficient(fused: Any, ir: Any, vi: Any) -> float:
    """Correlation coefficient CC = (r(F, VI) + r(F, IR)) / 2 with Pearson's r (used by JCAE and
    DeFusion; design/metrics.md section 7). Colour: mean over RGB channels.
    Range [-1, 1]; **higher is better**; 1 when both sources equal F.
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="CC")
    return channel_mean([_cc(t) for t in prep.triples])


def scd(fused: Any, ir: Any, vi: Any) -> float:
    """Sum of the correlations of differences (Aslantas & Bendes, AEU 69(12), 2015, eqs. 1-4).

    ``D1 = F - B``, ``D2 = F - A``, ``SCD = r(D1, A) + r(D2, B)`` with Pearson's r. Colour: mean
    over RGB channels. Range [-2, 2]; **higher is better**. Symmetric in the two sources.
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="SCD")
    return channel_mean([_scd(t) for t in prep.triples])


def rmse_vifb(fused: Any, ir: Any, vi: Any) -> float:
    """VIFB's (non-standard) RMSE: ``(e(VI, F) + e(IR, F)) / 2`` with ``e(S, F) = sqrt(sum (S -
    F)^2) / (M N)`` (root of the sum of squared errors over the pixel count, i.e. the usual RMSE
    divided by sqrt(M N)); mean over RGB channels. Typical values 0.05-0.3; **lower is better**.
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="RMSE")
    return channel_mean([_rmse(t) for t in prep.triples])


def psnr_vifb(fused: Any, ir: Any, vi: Any) -> float:
    """VIFB's (non-standard) PSNR: ``20 log10(255 / sqrt(RMSE_vifb))`` per channel, mean over RGB
    channels. Typical values 55-65, not comparable with a standard PSNR; **higher is better**.
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="PSNR")
    return channel_mean([_psnr(t) for t in prep.triples])
