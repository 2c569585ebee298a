"""Feature mutual information FMI (Haghighat, Aghagolzadeh & Seyedarabi 2011; fast FMI of Haghighat &
Razian 2014), as MEFB's ``metricsFMI.m`` computes it.

MEFB calls the authors' ``fmi(ima, imb, imf)`` with its defaults: the feature is MATLAB's
``edge(I)`` (Sobel, automatic threshold, thinning; :func:`matlab_edge_sobel`) and the window is
3 x 3. Per interior pixel, the 3 x 3 patches of the edge maps of a source and of F become
marginal PDFs (the patch divided by its sum; a constant patch counts as all ones), their joint
PDF is built with Nelsen's method from the Frechet bounds (upper bound for a non-negative
correlation of the two PDFs, lower bound for a negative one), and the patch value is the
normalised MI ``2 MI / (H_X + H_F)`` (1 for identical patches, 0 for zero MI).
``FMI = mean over the patches of (FMI_AF + FMI_BF) / 2``.

Because the features are binary, a patch is one of 512 patterns, so the patch value is a
function of two 9-bit codes: ivfuse computes it once per pattern pair (the same operations in
the same order as the MATLAB loops, vectorised over pairs) and keeps the table for the process;
an image then costs a few table look-ups per pixel.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..errors import InputError
from .definition import MEFB_SRC, Metric, per_triple
from .planes import Plane, Triple, channel_mean, prepare

__all__ = ["fmi", "matlab_edge_sobel"]

_EPS100 = 100 * float(np.finfo(np.float64).eps)


def matlab_edge_sobel(x: np.ndarray | Plane) -> np.ndarray:
    """MATLAB ``edge(I)`` with its defaults (method 'sobel', automatic threshold, thinning), as a
    boolean map; ``I`` is taken as double (its values are not rescaled).

    As the Image Processing Toolbox computes it: ``bx`` and ``by`` are the correlations
    (``imfilter``, replicated border) with ``fspecial('sobel')' / 8`` and ``fspecial('sobel') / 8``;
    ``b = bx^2 + by^2``; the cutoff is ``4 * mean(b)``. A pixel is an edge when ``b > cutoff``
    and either ``|bx| >= |by| - 100 eps`` with ``b`` a maximum across the row (``b(r,c-1) <=
    b(r,c) > b(r,c+1)``) or ``|by| >= |bx| - 100 eps`` with ``b`` a maximum down the column
    (``b(r-1,c) <= b(r,c) > b(r+1,c)``); a neighbour outside the image passes its test. For 8-bit
    data every value here is exact in float64 (multiples of 1/64), so the map is MATLAB's bit
    for bit.
    """
    p = x if isinstance(x, Plane) else Plane(np.asarray(x))

    def compute() -> np.ndarray:
        dx, dy = p.sobel("replicate")  # OpenCV's Sobel: +-8 bx and +-8 by, exact for 8-bit data
        bx = np.abs(dx, dtype=np.float64) / 8.0
        by = np.abs(dy, dtype=np.float64) / 8.0
        b = bx * bx + by * by
        cutoff = 4.0 * float(b.sum()) / b.size
        m, n = b.shape
        left = np.ones((m, n), bool)
        right = np.ones((m, n), bool)
        up = np.ones((m, n), bool)
        down = np.ones((m, n), bool)
        left[:, 1:] = b[:, :-1] <= b[:, 1:]
        right[:, :-1] = b[:, :-1] > b[:, 1:]
        up[1:] = b[:-1] <= b[1:]
        down[:-1] = b[:-1] > b[1:]
        across = (bx >= by - _EPS100) & left & right
        along = (by >= bx - _EPS100) & up & down
        return (b > cutoff) & (across | along)

    return p.cached("edge_sobel", compute)


def _patch_codes(e: np.ndarray) -> np.ndarray:
    """9-bit code of the 3 x 3 patch around every interior pixel: bit ``dr + 3 dc`` is the pixel
    at row offset ``dr``, column offset ``dc`` (MATLAB's column-major ``patch(:)`` order)."""
    m, n = e.shape
    code = np.zeros((m - 2, n - 2), np.uint16)
    for dc in range(3):
        for dr in range(3):
            code |= e[dr : m - 2 + dr, dc : n - 2 + dc].astype(np.uint16) << (dr + 3 * dc)
    return code


def _codes(p: Plane) -> np.ndarray:
    def compute() -> np.ndarray:
        if min(p.shape) < 3:
            raise InputError(f"FMI needs images of at least 3 pixels a side, got {p.shape[1]}x{p.shape[0]}")
        return _patch_codes(matlab_edge_sobel(p))

    return p.cached("fmi_codes", compute)


_BITS = ((np.arange(512)[:, None] >> np.arange(9)[None, :]) & 1).astype(np.float64)  # code -> patch(:)


def _seq_sum(cols: list[np.ndarray]) -> np.ndarray:
    """Left-to-right sum (MATLAB's order for short vectors)."""
    total = cols[0].copy()
    for c in cols[1:]:
        total += c
    return total


def _pdf(codes: np.ndarray) -> list[np.ndarray]:
    """patch(:) / sum(patch(:)) per code, a constant patch replaced by ones (as ``fmi.m``)."""
    x = _BITS[codes]
    const = (codes == 0) | (codes == 511)
    x[const] = 1.0
    s = _seq_sum([x[:, i] for i in range(9)])
    return [x[:, i] / s for i in range(9)]


def _entropy(pdf: list[np.ndarray]) -> np.ndarray:
    out = np.zeros_like(pdf[0])
    for p in pdf:
        nz = p != 0
        out[nz] += -p[nz] * np.log2(p[nz])
    return out


def _fmi_pairs(xc: np.ndarray, fc: np.ndarray) -> np.ndarray:
    """``fmi.m``'s per-patch value for the pattern pairs (xc, fc) (xc != fc), vectorised."""
    l = 9  # noqa: E741 - the name of fmi.m
    xp, fp = _pdf(xc), _pdf(fc)
    xcdf, fcdf = [xp[0].copy()], [fp[0].copy()]
    for i in range(1, l):
        xcdf.append(xp[i] + xcdf[i - 1])
        fcdf.append(fp[i] + fcdf[i - 1])
    xm = _seq_sum(xp) / l
    fm = _seq_sum(fp) / l
    xt = [v - xm for v in xp]
    ft = [v - fm for v in fp]
    sxf = _seq_sum([a * b for a, b in zip(xt, ft, strict=True)])
    sxx = _seq_sum([a * a for a in xt])
    sff = _seq_sum([a * a for a in ft])
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(sxf == 0, 0.0, sxf / np.sqrt(sxx * sff))
    # population standard deviations of the PDFs as distributions over the indices 1..9
    ex = _seq_sum([(i + 1) * xp[i] for i in range(l)])
    ex2 = _seq_sum([(i + 1) ** 2 * xp[i] for i in range(l)])
    ef = _seq_sum([(i + 1) * fp[i] for i in range(l)])
    ef2 = _seq_sum([(i + 1) ** 2 * fp[i] for i in range(l)])
    xsd = np.sqrt(np.maximum(ex2 - ex * ex, 0.0))  # exactly 0 for a point mass, else > 0.2
    fsd = np.sqrt(np.maximum(ef2 - ef * ef, 0.0))
    upper = c >= 0

    def bound(i: int, j: int) -> np.ndarray:
        """Frechet bound of the joint CDF at (i, j): min (upper) or max(.+.-1, 0) (lower)."""
        s = fcdf[i] + xcdf[j]
        hi = 0.5 * (s - np.abs(fcdf[i] - xcdf[j]))
        t = s - 1
        lo = 0.5 * (t + np.abs(t))
        return np.where(upper, hi, lo)

    cdf = [[bound(i, j) for j in range(l)] for i in range(l)]
    cov = np.zeros_like(c)
    for i in range(l):
        for j in range(l):
            cov += cdf[i][j]
            cov -= fcdf[i] * xcdf[j]
    degenerate = (xsd == 0) | (fsd == 0) | (upper & (c == 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(degenerate, 0.0, c / (cov / (fsd * xsd)))
    phi1 = 1 - phi

    def cell(i: int, j: int) -> np.ndarray:
        """Joint PDF of cell (i, j) by inclusion-exclusion of the bound CDF (fmi.m's order)."""
        u = cdf[i][j]
        if i > 0:
            u = u - cdf[i - 1][j]
        if j > 0:
            u = u - cdf[i][j - 1]
        if i > 0 and j > 0:
            u = u + cdf[i - 1][j - 1]
        return phi * u + phi1 * fp[i] * xp[j]

    joint = np.zeros_like(c)
    order = [(0, 0)] + [(i, 0) for i in range(1, l)] + [(0, j) for j in range(1, l)]
    order += [(i, j) for i in range(1, l) for j in range(1, l)]
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, j in order:
            q = cell(i, j)
            nz = q != 0
            # real(-q log2 q): a (round-off) negative q contributes -q log2 |q|
            joint[nz] += -q[nz] * np.log2(np.abs(q[nz]))
        hx, hf = _entropy(xp), _entropy(fp)
        mi = hx + hf - joint
        return np.where(mi == 0, 0.0, 2.0 * mi / (hx + hf))


_CHUNK = 1 << 14  # pattern pairs per vectorised batch (about 20 MB of temporaries)


class _Table:
    """The patch values of every (source pattern, fused pattern) pair met so far (512 x 512)."""

    def __init__(self) -> None:
        self.values = np.zeros(512 * 512)
        self.known = np.zeros(512 * 512, bool)
        diag = np.arange(512) * 513
        self.values[diag] = 1.0  # identical patches
        self.known[diag] = True
        self.lock = threading.Lock()

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        with self.lock:
            need = np.unique(keys)
            need = need[~self.known[need]]
            for k in range(0, need.size, _CHUNK):
                part = need[k : k + _CHUNK]
                self.values[part] = _fmi_pairs(part >> 9, part & 511)
                self.known[part] = True
        return self.values[keys]


_TABLE = _Table()


def _fmi(t: Triple) -> float:
    a, b = t.sources("FMI")
    ca, cb, cf = _codes(a), _codes(b), _codes(t.fused)
    keys = ca.astype(np.int64) << 9
    keys |= cf
    vaf = _TABLE.lookup(keys)
    # fmi.m overwrites the fused patch with its normalised version while comparing it with A:
    # a constant fused patch (unless equal to A's) becomes all ones for the comparison with B
    fmod = np.where((ca != cf) & ((cf == 0) | (cf == 511)), np.uint16(511), cf)
    keys = cb.astype(np.int64) << 9
    keys |= fmod
    vbf = _TABLE.lookup(keys)
    return float(((vaf + vbf) / 2.0).mean())


def fmi(fused: Any, a: Any, b: Any) -> float:
    """Feature mutual information FMI (Haghighat, Aghagolzadeh & Seyedarabi, Computers and
    Electrical Engineering 37(5), 2011; Haghighat & Razian, AICT 2014), as MEFB's
    ``metricsFMI.m`` computes it: edge features (MATLAB ``edge``, Sobel with thinning), 3 x 3
    windows, mean of the two sources' normalised feature MI. Colour: mean over RGB channels.
    Range [0, 1]; **higher is better**; 1 when both sources equal F.
    """
    prep = prepare(fused, b, a, color="mefb", need_sources=True, metric="FMI")
    return channel_mean([_fmi(t) for t in prep.triples])


# ---------------------------------------------------------------------------- registry entries

METRICS = (
    Metric(
        name="FMI",
        fn=per_triple(_fmi),
        family="information",
        higher_is_better=True,
        range=(0.0, 1.0),
        needs="sources",
        meaning="feature mutual information of edge maps (3 x 3 windows)",
        source=f"{MEFB_SRC}: metricsFMI.m (Haghighat et al. 2011, fast FMI 2014)",
        profiles=("mefb",),
        aliases=("Q_FMI",),
        cost=4.0,
    ),
)
