"""Statistical and gradient metrics: SD, SF, AG, EI, GLD, CC, SCD and VIFB's PSNR / RMSE.

F-only metrics (SD, SF, AG, EI, GLD) take the fused image alone. Sources: A = visible,
B = infrared.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .buffers import POOL, row_blocks
from .definition import MA2019_SRC, MEFB_SRC, VIFB_SRC, Metric, mefb_variant, per_fused, per_triple
from .filters import sobel, sobel_dtype
from .planes import Plane, Prepared, Triple, channel_mean, prepare

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

_LEVELS = np.arange(256, dtype=np.float64)
#: (a - b)^2 for every cell of a 256 x 256 joint histogram of levels (a, b)
_SQDIFF = np.subtract.outer(_LEVELS, _LEVELS) ** 2


# ---------------------------------------------------------------------------- plane-level


def _sd(p: Plane, mean: str = "global") -> float:
    if mean == "global" and p.u8 is not None:
        # exact from the histogram: sum over the 256 levels instead of the pixels
        c = p.hist_counts().astype(np.float64)
        mu = float(c @ _LEVELS) / p.size
        d = _LEVELS - mu
        return math.sqrt(float(c @ (d * d)) / p.size)
    x = p.x
    if mean == "global":
        d = x - x.mean()
    elif mean == "column":
        d = x - x.mean(axis=0, keepdims=True)
    else:
        raise ValueError(f"mean must be 'global' or 'column', got {mean!r}")
    return float(math.sqrt(np.einsum("ij,ij->", d, d) / x.size))


def _sumsq(a: np.ndarray, b: np.ndarray) -> float:
    """sum((a - b)^2) in float64 (exact for 8-bit inputs), over blocks of rows."""
    m, n = a.shape
    blocks = row_blocks(0, m, n)
    buf = np.empty((blocks[0].stop, n))
    total = 0.0
    for sl in blocks:
        d = np.subtract(a[sl], b[sl], out=buf[: sl.stop - sl.start], dtype=np.float64)
        total += float(np.einsum("ij,ij->", d, d))
    return total


def _sf_concat(planes: list[Plane]) -> float:
    """VIFB SF of the channels laid side by side (M x CN array), normaliser M * CN."""
    m, n = planes[0].shape
    rf = 0.0
    cf = 0.0
    for i, p in enumerate(planes):
        x = p.data
        rf += _sumsq(x[:, 1:], x[:, :-1])
        cf += _sumsq(x[1:], x[:-1])
        if i > 0:  # seam between the last column of the previous channel and this one
            rf += _sumsq(x[:, :1], planes[i - 1].data[:, -1:])
    total = m * n * len(planes)
    return math.sqrt(rf / total + cf / total)


def _sf_plane(p: Plane) -> float:
    """SF of one channel, normaliser M N (MEFB's ``metricsSpatial_frequency.m``, per channel)."""
    return _sf_concat([p])


def _ag_central_u8(u: np.ndarray) -> float:
    """sum of sqrt(4 (gx^2 + gy^2)) of MATLAB ``gradient`` for 8-bit data: the differences and
    their squares are exact in float32 (< 2^24); the square roots are summed in float64."""
    f32 = np.float32
    m, n = u.shape
    blocks = row_blocks(0, m, n)
    rows = blocks[0].stop
    gx = np.empty((rows, n), f32)  # 2 gx: full differences, doubled one-sided ones at the borders
    gy = np.empty((rows, n), f32)
    root = np.empty((rows, n))
    total = 0.0
    for sl in blocks:
        r0, r1 = sl.start, sl.stop
        r = r1 - r0
        bx, by = gx[:r], gy[:r]
        np.subtract(u[sl, 2:], u[sl, :-2], out=bx[:, 1:-1], dtype=f32)
        np.subtract(u[sl, 1:2], u[sl, :1], out=bx[:, :1], dtype=f32)
        np.subtract(u[sl, -1:], u[sl, -2:-1], out=bx[:, -1:], dtype=f32)
        bx[:, :1] *= 2
        bx[:, -1:] *= 2
        lo, hi = max(r0, 1), min(r1, m - 1)  # rows with a neighbour on both sides
        if hi > lo:
            np.subtract(u[lo + 1 : hi + 1], u[lo - 1 : hi - 1], out=by[lo - r0 : hi - r0], dtype=f32)
        if r0 == 0:
            np.subtract(u[1], u[0], out=by[0], dtype=f32)
            by[0] *= 2
        if r1 == m:
            np.subtract(u[m - 1], u[m - 2], out=by[r - 1], dtype=f32)
            by[r - 1] *= 2
        bx *= bx
        by *= by
        bx += by
        total += float(np.sqrt(bx, out=root[:r], dtype=np.float64).sum())
    return total


def _ag(p: Plane, scheme: str = "central") -> float:
    m, n = p.shape
    if scheme == "central" and p.u8 is not None:
        # sqrt((gx^2 + gy^2) / 2) = sqrt(4 (gx^2 + gy^2)) / sqrt(8)
        return _ag_central_u8(p.u8) / math.sqrt(8.0) / ((m - 1) * (n - 1))
    x = p.x
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
    x = p.data
    dt = sobel_dtype(x)
    dx, dy = sobel(x, "replicate", out=(POOL.take(p.shape, dt), POOL.take(p.shape, dt)))
    # exact in float32 for 8-bit data (|d| <= 1020, so d^2 + d^2 < 2^24)
    qt = np.float32 if p.u8 is not None else np.float64
    m, n = p.shape
    blocks = row_blocks(0, m, n)
    q = np.empty((blocks[0].stop, n), qt)
    q2 = np.empty_like(q)
    root = np.empty((blocks[0].stop, n))
    total = 0.0
    for sl in blocks:
        r = sl.stop - sl.start
        a = np.square(dx[sl], out=q[:r], dtype=qt)
        a += np.square(dy[sl], out=q2[:r], dtype=qt)
        total += float(np.sqrt(a, out=root[:r], dtype=np.float64).sum())
    POOL.give(dx, dy)
    return total / p.size


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
        if s.u8 is not None and t.fused.u8 is not None:
            # exact from the joint histogram that MI shares: sum_ab count(a, b) (a - b)^2
            sse = float(np.einsum("ij,ij->", t.joint_counts(s).astype(np.float64), _SQDIFF))
        else:
            sse = _sumsq(s.x, t.fused.x)
        return math.sqrt(sse) / t.fused.size

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
    DeFusion; docs/metrics.md). Colour: mean over RGB channels.
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


# ---------------------------------------------------------------------------- registry entries


def _sf_side_by_side(prep: Prepared) -> float:
    """VIFB's SF of a colour image: its channels side by side."""
    return _sf_concat(prep.fused_channels)


_PSNR_DEF = Metric(
    name="PSNR",
    fn=per_triple(_psnr),
    family="statistics",
    higher_is_better=True,
    range=(0.0, math.inf),
    needs="sources",
    meaning="VIFB's non-standard PSNR 20 log10(255 / sqrt(RMSE_vifb))",
    source=f"{VIFB_SRC}: metricsPsnr",
    profiles=("vifb", "ma2019"),
    aliases=("Psnr",),
)
_AG_DEF = Metric(
    name="AG",
    fn=per_fused(_ag, scheme="central"),
    family="statistics",
    higher_is_better=True,
    range=(0.0, 255.0),
    needs="none",
    meaning="average gradient (central differences)",
    source=f"{VIFB_SRC}: metricsAvg_gradient",
    profiles=("vifb", "ma2019"),
    aliases=("Avg_gradient",),
)
_EI_DEF = Metric(
    name="EI",
    fn=per_fused(_ei),
    family="statistics",
    higher_is_better=True,
    range=(0.0, 1020.0 * math.sqrt(2.0)),
    needs="none",
    meaning="edge intensity (mean Sobel magnitude)",
    source=f"{VIFB_SRC}: metricsEdge_intensity",
    profiles=("vifb", "ma2019"),
    aliases=("Edge_intensity",),
)
_SF_DEF = Metric(
    name="SF",
    fn=_sf_side_by_side,
    family="statistics",
    higher_is_better=True,
    range=(0.0, 255.0 * math.sqrt(2.0)),
    needs="none",
    meaning="spatial frequency (RGB side by side)",
    source=f"{VIFB_SRC}: metricsSpatial_frequency",
    profiles=("vifb",),
    aliases=("Spatial_frequency",),
)
_SD_DEF = Metric(
    name="SD",
    fn=per_fused(_sd, mean="global"),
    family="statistics",
    higher_is_better=True,
    range=(0.0, 127.5),
    needs="none",
    meaning="standard deviation (population)",
    source=f"{VIFB_SRC}: metricsVariance",
    profiles=("vifb",),
    aliases=("Variance", "STD"),
)

METRICS = (
    _PSNR_DEF,
    mefb_variant(_PSNR_DEF, "Psnr"),
    Metric(
        name="RMSE",
        fn=per_triple(_rmse),
        family="statistics",
        higher_is_better=False,
        range=(0.0, 255.0),
        needs="sources",
        meaning="VIFB's non-standard RMSE: mean over sources of sqrt(SSE)/(M N)",
        source=f"{VIFB_SRC}: metricsRmse",
        profiles=("vifb", "ma2019"),
        aliases=("Rmse",),
    ),
    _AG_DEF,
    mefb_variant(_AG_DEF, "Avg_gradient"),
    _EI_DEF,
    mefb_variant(_EI_DEF, "Edge_intensity"),
    _SF_DEF,
    _SF_DEF.variant(
        meaning="spatial frequency (standard, normaliser M N)",
        source="Eskicioglu & Fisher 1995 / VIFB; the DIDFuse table's SF is not reproducible by "
        "any standard definition",
        profiles=("ma2019",),
        aliases=(),
    ),
    _SF_DEF.variant(
        fn=per_fused(_sf_plane),
        meaning="spatial frequency, per RGB channel",
        source=f"{MEFB_SRC}: metricsSpatial_frequency.m (normaliser M N, mean over channels)",
        profiles=("mefb",),
    ),
    _SD_DEF,
    _SD_DEF.variant(
        fn=per_fused(_sd, mean="column"),
        meaning="standard deviation with column means (reproduces the DIDFuse table)",
        source=f"{MA2019_SRC}: sqrt(sum (F_ij - mean_j)^2 / (M N)) - a slip of that code",
        profiles=("ma2019",),
        aliases=("STD",),
    ),
    mefb_variant(_SD_DEF, "SD", "Variance"),
    Metric(
        name="GLD",
        fn=per_fused(_gld),
        family="statistics",
        higher_is_better=True,
        range=(0.0, 510.0),
        needs="none",
        meaning="gray level difference (forward differences)",
        source="IFESNet eq. 18 (after Zhao, Lu & Wang, IEEE TMM 2017)",
        profiles=("vifb", "ma2019"),
    ),
    _AG_DEF.variant(
        name="AG_FWD",
        fn=per_fused(_ag, scheme="forward"),
        meaning="average gradient with forward differences",
        source="IFESNet eq. 14",
        aliases=("AGF",),
    ),
    Metric(
        name="CC",
        fn=per_triple(_cc),
        family="statistics",
        higher_is_better=True,
        range=(-1.0, 1.0),
        needs="sources",
        meaning="correlation coefficient (r(F,VI)+r(F,IR))/2",
        source="Pearson correlation (as JCAE and DeFusion use it; docs/metrics.md)",
        profiles=("vifb", "ma2019"),
    ),
    Metric(
        name="SCD",
        fn=per_triple(_scd),
        family="statistics",
        higher_is_better=True,
        range=(-2.0, 2.0),
        needs="sources",
        meaning="sum of the correlations of differences",
        source="Aslantas & Bendes, AEU 69(12), 2015 (JCAE)",
        profiles=("vifb", "ma2019"),
    ),
)
