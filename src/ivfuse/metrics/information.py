"""Information-theoretic metrics: EN, CE, MI, NMI, TE (Tsallis), QNCIE.

All histograms have 256 bins, one per integer grey level 0..255 (see :mod:`.validation` for how
non-8-bit inputs are quantised), and are built with ``np.bincount`` on the 8-bit levels (joint
histograms on ``256 a + b`` as uint16, shared with VIFB's PSNR / RMSE).

Sources: ``A`` is the visible image and ``B`` the infrared image (VIFB's img1/img2 order); in the
``mefb`` profile ``A`` is the under- and ``B`` the over-exposed image. TE and QNCIE work, as
Z. Liu's code that MEFB uses, on images normalised with ``normalize1`` (min-max to 0..255, rounded;
:meth:`Plane.norm_plane`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .definition import MA2019_SRC, MEFB_SRC, VIFB_SRC, Metric, mefb_variant, per_fused, per_triple
from .filters import histogram
from .planes import Plane, Triple, channel_mean, prepare

__all__ = ["cross_entropy", "entropy", "mutual_information", "nmi", "qncie", "tsallis_entropy"]

_COMBINE = ("sum", "mean")


def _log(p: np.ndarray, base: float) -> np.ndarray:
    return np.log(p) / math.log(base)


def _entropy_of(p: np.ndarray, base: float) -> float:
    nz = p[p > 0]
    return float(-(nz * _log(nz, base)).sum())


def _check_base(base: float) -> None:
    if not (base > 0 and base != 1):
        raise ValueError(f"log base must be positive and not 1, got {base}")


def _combine(a: float, b: float, how: str) -> float:
    if how == "sum":
        return a + b
    if how == "mean":
        return (a + b) / 2.0
    raise ValueError(f"combine must be one of {_COMBINE}, got {how!r}")


# ---------------------------------------------------------------------------- plane-level


def _en(p: Plane, base: float = 2.0) -> float:
    return _entropy_of(p.hist(), base)


def _ce_pair(s: Plane, f: Plane, base: float) -> float:
    ps, pf = s.hist(), f.hist()
    m = (ps > 0) & (pf > 0)
    return float((ps[m] * _log(ps[m] / pf[m], base)).sum())


def _mi_pair(t: Triple, s: Plane, base: float, stretch: bool) -> tuple[float, float, float]:
    """(MI(S;F), H(S), H(F)) in the given base, from one joint histogram."""
    pj = t.joint_counts(s, stretch) / t.fused.size
    hs = _entropy_of(pj.sum(axis=1), base)
    hf = _entropy_of(pj.sum(axis=0), base)
    hj = _entropy_of(pj.ravel(), base)
    return hs + hf - hj, hs, hf


def _mi_cached(t: Triple, src: Plane, base: float, stretch: bool) -> tuple[float, float, float]:
    # the joint entropy does not depend on the base except by a factor: cache in nats
    key = ("mi", id(src), stretch)
    mi, hs, hf = t.cached(key, lambda: _mi_pair(t, src, math.e, stretch))
    c = 1.0 / math.log(base)
    return mi * c, hs * c, hf * c


def _ce(t: Triple, base: float = 2.0, combine: str = "mean") -> float:
    a, b = t.sources("CE")
    return _combine(_ce_pair(a, t.fused, base), _ce_pair(b, t.fused, base), combine)


def _mi(t: Triple, base: float = math.e, combine: str = "sum", stretch: bool = True) -> float:
    a, b = t.sources("MI")
    return _combine(_mi_cached(t, a, base, stretch)[0], _mi_cached(t, b, base, stretch)[0], combine)


def _nmi(t: Triple, stretch: bool = False) -> float:
    a, b = t.sources("NMI")
    total = 0.0
    for s in (a, b):
        mi, hs, hf = _mi_cached(t, s, math.e, stretch)
        total += mi / (hs + hf) if hs + hf > 0 else math.nan
    return 2.0 * total


def _joint_norm(t: Triple, x: Plane, y: Plane) -> np.ndarray:
    """256 x 256 joint probability of the ``normalize1`` levels of x (rows) and y (columns)."""

    def compute() -> np.ndarray:
        h = histogram([x.norm_plane().levels(), y.norm_plane().levels()])
        return h / float(h.sum())

    return t.cached(("joint_norm", id(x), id(y)), compute)


def _tsallis_pair(t: Triple, s: Plane, q: float) -> float:
    h = _joint_norm(t, s, t.fused)  # rows: source level, columns: fused level
    pf = h.sum(axis=0)  # Z. Liu's ``im1_marg = sum(h)``: the marginal of the fused image ...
    ps = h.sum(axis=1)
    buff = np.multiply.outer(pf, ps)  # ... multiplied as if it were the rows' marginal (sic)
    m = buff != 0
    total = float((h[m] ** q / buff[m] ** (q - 1)).sum())
    return (1.0 - total) / (1.0 - q)


def _te(t: Triple, q: float = 1.85) -> float:
    a, b = t.sources("TE")
    return _tsallis_pair(t, a, q) + _tsallis_pair(t, b, q)


def _ncc(t: Triple, x: Plane, y: Plane) -> float:
    """Z. Liu's ``NCC``: (H_x + H_y - H_xy) / log2(256) of the normalised images."""
    h = _joint_norm(t, x, y)
    hx = _entropy_of(h.sum(axis=0), 2.0)
    hy = _entropy_of(h.sum(axis=1), 2.0)
    return (hx + hy - _entropy_of(h.ravel(), 2.0)) / 8.0


def _qncie(t: Triple) -> float:
    a, b = t.sources("QNCIE")
    f = t.fused
    nab, naf, nbf = _ncc(t, a, b), _ncc(t, a, f), _ncc(t, b, f)
    r = np.linalg.eigvalsh(np.array([[1.0, nab, naf], [nab, 1.0, nbf], [naf, nbf, 1.0]]))
    # eigenvalues of a singular R (e.g. F = A = B) come out as 0 or -1e-16: their term is 0,
    # its limit (MATLAB gives NaN or a complex number there)
    r = r[r > 0]
    hr = -float((r * np.log2(r / 3.0) / 3.0).sum()) / 8.0
    return 1.0 - hr


# ---------------------------------------------------------------------------- public API


def entropy(fused: Any, *, base: float = 2.0) -> float:
    """Entropy EN of the fused image (Shannon; VIFB ``metricsEntropy``; IFESNet eq. 15).

    ``EN = -sum_i p_i log p_i`` over the 256-bin normalised histogram ``p`` of F; bits by
    default. Colour: mean over the RGB channels. Range [0, 8] bits; **higher is better**.
    """
    _check_base(base)
    prep = prepare(fused, metric="EN")
    return channel_mean([_en(p, base) for p in prep.fused_channels])


def cross_entropy(fused: Any, ir: Any, vi: Any, *, base: float = 2.0, combine: str = "mean") -> float:
    """Cross entropy CE as VIFB computes it (``metricsCross_entropy``); **lower is better**.

    Per source S: ``CE(S, F) = sum_{i: p_S(i) > 0, p_F(i) > 0} p_S(i) log2(p_S(i) / p_F(i))``,
    the Kullback-Leibler divergence D(S || F) restricted to the common support (not the textbook
    cross entropy). ``CE = (CE(VI, F) + CE(IR, F)) / 2`` (``combine='mean'``), mean over RGB
    channels. Range [0, inf); 0 when both histograms equal F's.
    """
    _check_base(base)
    prep = prepare(fused, ir, vi, need_sources=True, metric="CE")
    return channel_mean([_ce(t, base, combine) for t in prep.triples])


def mutual_information(
    fused: Any,
    ir: Any,
    vi: Any,
    *,
    base: float = math.e,
    combine: str = "sum",
    stretch: bool = True,
) -> float:
    """Mutual information MI = MI(VI, F) + MI(IR, F) (Qu, Zhang & Yan 2002; VIFB ``metricsMutinf``).

    ``MI(S, F) = H(S) + H(F) - H(S, F)`` from a 256 x 256 joint histogram. VIFB defaults:
    natural log (nats), **sum** over the two sources, each image min-max stretched to 0..255 and
    rounded first (``stretch=True``; no effect on 8-bit images). The ``ma2019`` profile uses
    ``base=2`` (bits), as in IFESNet eqs. 16-17. Colour: mean over RGB channels.
    Range [0, 2 * 8 ln 2] nats; **higher is better**. With both sources equal to F it is
    ``2 * EN(F)`` in the chosen base.
    """
    _check_base(base)
    prep = prepare(fused, ir, vi, need_sources=True, metric="MI")
    return channel_mean([_mi(t, base, combine, stretch) for t in prep.triples])


def nmi(fused: Any, ir: Any, vi: Any) -> float:
    """Normalised mutual information (Hossny, Nahavandi & Creighton, Electronics Letters 2008).

    ``NMI = 2 [MI(A, F) / (H(A) + H(F)) + MI(B, F) / (H(B) + H(F))]`` with 256-bin histograms of
    the raw grey levels (the log base cancels). Used by SSL-WAEIE. Colour: mean over RGB
    channels. Range [0, 2]; **higher is better**; 2 when both sources equal F; NaN when a
    source and F are both constant (0 / 0).
    """
    prep = prepare(fused, ir, vi, need_sources=True, metric="NMI")
    return channel_mean([_nmi(t) for t in prep.triples])


def tsallis_entropy(fused: Any, a: Any, b: Any, *, q: float = 1.85) -> float:
    """Tsallis-entropy fusion metric TE (Cvejic, Canagarajah & Bull, Electronics Letters 42(11),
    2006), as MEFB's ``metricsTE.m`` (Z. Liu's ``metricMI.m``, case 2) computes it.

    ``TE = I_q(A, F) + I_q(B, F)`` with Cvejic's ``q = 1.85`` and ``I_q(S, F) = (1 - sum_ij
    h(i,j)^q / (p_F(i) p_S(j))^(q-1)) / (1 - q)`` over the cells where the product is non-zero;
    ``h`` is the joint histogram of the ``normalize1`` images (rows: S), and, as in that code,
    the fused image's marginal is indexed by the row and the source's by the column. Colour:
    mean over RGB channels. Unbounded (values in the thousands are usual); **higher is better**.
    """
    if q == 1:
        raise ValueError("q must not be 1")
    prep = prepare(fused, b, a, color="mefb", need_sources=True, metric="TE")
    return channel_mean([_te(t, q) for t in prep.triples])


def qncie(fused: Any, a: Any, b: Any) -> float:
    """Nonlinear correlation information entropy Q_NCIE (Wang, Shen & Zhang, Physica D 200, 2005;
    Wang, Shen & Jin 2008), as MEFB's ``metricsQncie.m`` (Z. Liu's ``metricWang.m``) computes it.

    Nonlinear correlation coefficients ``NCC(X, Y) = (H_X + H_Y - H_XY) / log2(256)`` (256-bin
    histograms of the ``normalize1`` images) fill the 3 x 3 matrix R of (A, B, F);
    ``Q_NCIE = 1 + sum_i (l_i / 3) log_256(l_i / 3)`` over its eigenvalues l_i. Colour: mean over
    RGB channels. Range [0, 1]; **higher is better**; 1 when both sources equal F.
    """
    prep = prepare(fused, b, a, color="mefb", need_sources=True, metric="QNCIE")
    return channel_mean([_qncie(t) for t in prep.triples])


# ---------------------------------------------------------------------------- registry entries

_EN_DEF = Metric(
    name="EN",
    fn=per_fused(_en, base=2.0),
    family="information",
    higher_is_better=True,
    range=(0.0, 8.0),
    needs="none",
    meaning="entropy of F (bits)",
    source=f"{VIFB_SRC}: metricsEntropy",
    profiles=("vifb", "ma2019"),
    aliases=("Entropy",),
)
_CE_DEF = Metric(
    name="CE",
    fn=per_triple(_ce, base=2.0, combine="mean"),
    family="information",
    higher_is_better=False,
    # on the common support only, D_KL can dip below 0 (log-sum inequality: >= -log2(e)/e)
    range=(-1.0, math.inf),
    needs="sources",
    meaning="cross entropy, mean of D_KL(S||F) on the common support (bits)",
    source=f"{VIFB_SRC}: metricsCross_entropy",
    profiles=("vifb", "ma2019"),
    aliases=("Cross_entropy",),
)
_MI_DEF = Metric(
    name="MI",
    fn=per_triple(_mi, base=math.e, combine="sum", stretch=True),
    family="information",
    higher_is_better=True,
    range=(0.0, 16.0 * math.log(2.0)),
    needs="sources",
    meaning="mutual information MI(VI,F)+MI(IR,F) (nats)",
    source=f"{VIFB_SRC}: metricsMutinf (min-max stretched, natural log, sum)",
    profiles=("vifb",),
    aliases=("Mutinf",),
)
_NMI_DEF = Metric(
    name="NMI",
    fn=per_triple(_nmi),
    family="information",
    higher_is_better=True,
    range=(0.0, 2.0),
    needs="sources",
    meaning="normalised MI 2[MI(A,F)/(H(A)+H(F)) + MI(B,F)/(H(B)+H(F))]",
    source="Hossny, Nahavandi & Creighton, Electronics Letters 44(18), 2008 (SSL-WAEIE)",
    profiles=("vifb", "ma2019"),
    aliases=("Q_MI",),
)

METRICS = (
    _EN_DEF,
    mefb_variant(_EN_DEF, "Entropy"),
    _CE_DEF,
    mefb_variant(_CE_DEF, "Cross_entropy"),
    _MI_DEF,
    _MI_DEF.variant(
        fn=per_triple(_mi, base=2.0, combine="sum", stretch=False),
        range=(0.0, 16.0),
        meaning="mutual information MI(VI,F)+MI(IR,F) (bits)",
        source=f"{MA2019_SRC}: 256x256 joint histogram, log2, sum",
        profiles=("ma2019",),
        aliases=(),
    ),
    _NMI_DEF,
    _NMI_DEF.variant(
        fn=per_triple(_nmi, stretch=True),
        source=f"{MEFB_SRC}: metricsNMI.m (Hossny et al. 2008; normalize1 images)",
        profiles=("mefb",),
    ),
    Metric(
        name="QNCIE",
        fn=per_triple(_qncie),
        family="information",
        higher_is_better=True,
        range=(0.0, 1.0),
        needs="sources",
        meaning="nonlinear correlation information entropy",
        source=f"{MEFB_SRC}: metricsQncie.m (Wang, Shen & Zhang 2005; Z. Liu's metricWang.m)",
        profiles=("mefb",),
        aliases=("Qncie", "NCIE"),
    ),
    Metric(
        name="TE",
        fn=per_triple(_te, q=1.85),
        family="information",
        higher_is_better=True,
        range=(-2.0 / 0.85, math.inf),  # (sum - 1) / (q - 1) per source, the sum >= 0
        needs="sources",
        meaning="Tsallis entropy I_q(A,F)+I_q(B,F), q = 1.85",
        source=f"{MEFB_SRC}: metricsTE.m (Cvejic et al. 2006; Z. Liu's metricMI.m)",
        profiles=("mefb",),
        aliases=("Tsallis",),
    ),
)
