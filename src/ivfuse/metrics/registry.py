"""The metric registry: every metric of every profile with its family, direction and definition.

A *profile* is a set of conventions: a colour rule and, for names that papers use for different
formulas (MI, SD, VIF, ...), which formula the name means. Profiles are built from the same
parameterised functions, never from copies:

``vifb`` (default)
    The 13 metrics of the VIFB benchmark (Zhang, Ye & Xiao, CVPRW 2020) exactly as its MATLAB
    code computes them, with its colour rule (mean over RGB channels, img1 = visible,
    img2 = infrared, uint8 values not rescaled), plus the other metrics of the seed papers.
``ma2019``
    The convention of the evaluation code of Ma et al. 2019 (Information Fusion 45) that
    reproduces the DIDFuse paper's table: gray images (colour converted with ``rgb2gray``), MI in
    bits, SD with column means, VIF meaning Han et al.'s VIFF.
``mefb``
    The 20 metrics of the MEFB multi-exposure benchmark (X. Zhang, Information Fusion 74, 2021)
    as its MATLAB code computes them: ``metricsX(imgA, imgB, fused)`` with A the under- and B
    the over-exposed image (the first and second source given to
    :func:`ivfuse.metrics.evaluate`), mean over RGB channels (SF per channel too), uint8 values
    not rescaled, VIF meaning Han et al.'s VIFF.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import InputError
from . import feature as _f
from . import information as _i
from . import phase as _p
from . import reference as _r
from . import statistics as _s
from . import structural as _t
from . import visual as _v
from ._core import Prepared, channel_mean

Compute = Callable[[Prepared], float]

FAMILIES = ("information", "statistics", "structural", "visual", "reference")


@dataclass(frozen=True)
class MetricInfo:
    """One metric of one profile."""

    name: str
    profile: str
    family: str
    direction: str  # "higher" or "lower" is better
    needs: str  # "none" (fused only), "sources" (IR and VI) or "reference" (ground truth)
    meaning: str
    source: str  # where the exact definition comes from
    compute: Compute = field(repr=False, compare=False)
    aliases: tuple[str, ...] = ()
    color: str | None = None  # overrides the profile's colour rule ("gray" for MEF-SSIM)
    cost: float = field(default=1.0, compare=False, repr=False)  # relative time, for scheduling

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "profile": self.profile,
            "family": self.family,
            "direction": self.direction,
            "needs": self.needs,
            "meaning": self.meaning,
            "source": self.source,
            "aliases": ", ".join(self.aliases),
        }


@dataclass(frozen=True)
class Profile:
    name: str
    color: str
    description: str
    default: tuple[str, ...]
    metrics: dict[str, MetricInfo]
    #: the first source given to evaluate() is the metric code's img1 (MEFB: A, under-exposed);
    #: otherwise the second one is (VIFB: img1 = visible, given after the infrared image)
    first_is_img1: bool = False
    sources: tuple[str, str] = ("infrared", "visible")  # names of the two sources, in call order


# ---------------------------------------------------------------------------- compute builders


class PerChannel:
    """A metric computed channel by channel and averaged (``channel_mean``).

    ``one(prep, k)`` is the value of channel ``k``; :func:`ivfuse.metrics.evaluate` schedules
    these per-channel parts itself (so that a channel's cached planes can be freed once all its
    metrics are done, and so that parts can run in parallel). Calling the object on a
    :class:`Prepared` gives the channel mean directly.
    """

    __slots__ = ("fn", "kw", "on_fused")

    def __init__(self, fn: Callable[..., float], kw: dict[str, object], on_fused: bool):
        self.fn = fn
        self.kw = kw
        self.on_fused = on_fused  # True: fn(Plane) of the fused channel; False: fn(Triple)

    def one(self, prep: Prepared, k: int) -> float:
        arg = prep.fused_channels[k] if self.on_fused else prep.triples[k]
        return self.fn(arg, **self.kw)

    def __call__(self, prep: Prepared) -> float:
        return channel_mean([self.one(prep, k) for k in range(len(prep.triples))])


def _per_triple(fn: Callable[..., float], **kw: object) -> Compute:
    return PerChannel(fn, kw, on_fused=False)


def _per_fused(fn: Callable[..., float], **kw: object) -> Compute:
    return PerChannel(fn, kw, on_fused=True)


def _sf(prep: Prepared) -> float:
    return _s._sf_concat(prep.fused_channels)


def _first_triple(fn: Callable[..., float]) -> Compute:
    return lambda prep: fn(prep.triples[0])


def _with_reference(fn: Callable[..., float]) -> Compute:
    def compute(prep: Prepared) -> float:
        if prep.reference is None:
            raise InputError("this metric needs a ground-truth (reference) image")
        vals = [fn(f, r) for f, r in zip(prep.fused_channels, prep.reference, strict=True)]
        return channel_mean(vals)

    return compute


# ---------------------------------------------------------------------------- definitions

_VIFB_SRC = "VIFB MATLAB code (Zhang, Ye & Xiao, CVPRW 2020), design/metrics.md section 2"

# name -> (family, direction, needs, meaning, source, compute, aliases, colour override)
_Def = tuple[str, str, str, str, str, Compute, tuple[str, ...], str | None]


def _vifb_defs() -> dict[str, _Def]:
    return {
        "EN": (
            "information",
            "higher",
            "none",
            "entropy of F (bits)",
            f"{_VIFB_SRC}: metricsEntropy",
            _per_fused(_i._en, base=2.0),
            ("Entropy",),
            None,
        ),
        "CE": (
            "information",
            "lower",
            "sources",
            "cross entropy, mean of D_KL(S||F) on the common support (bits)",
            f"{_VIFB_SRC}: metricsCross_entropy",
            _per_triple(_i._ce, base=2.0, combine="mean"),
            ("Cross_entropy",),
            None,
        ),
        "MI": (
            "information",
            "higher",
            "sources",
            "mutual information MI(VI,F)+MI(IR,F) (nats)",
            f"{_VIFB_SRC}: metricsMutinf (min-max stretched, natural log, sum)",
            _per_triple(_i._mi, base=math.e, combine="sum", stretch=True),
            ("Mutinf",),
            None,
        ),
        "PSNR": (
            "statistics",
            "higher",
            "sources",
            "VIFB's non-standard PSNR 20 log10(255 / sqrt(RMSE_vifb))",
            f"{_VIFB_SRC}: metricsPsnr",
            _per_triple(_s._psnr),
            ("Psnr",),
            None,
        ),
        "RMSE": (
            "statistics",
            "lower",
            "sources",
            "VIFB's non-standard RMSE: mean over sources of sqrt(SSE)/(M N)",
            f"{_VIFB_SRC}: metricsRmse",
            _per_triple(_s._rmse),
            ("Rmse",),
            None,
        ),
        "AG": (
            "statistics",
            "higher",
            "none",
            "average gradient (central differences)",
            f"{_VIFB_SRC}: metricsAvg_gradient",
            _per_fused(_s._ag, scheme="central"),
            ("Avg_gradient",),
            None,
        ),
        "EI": (
            "statistics",
            "higher",
            "none",
            "edge intensity (mean Sobel magnitude)",
            f"{_VIFB_SRC}: metricsEdge_intensity",
            _per_fused(_s._ei),
            ("Edge_intensity",),
            None,
        ),
        "SF": (
            "statistics",
            "higher",
            "none",
            "spatial frequency (RGB side by side)",
            f"{_VIFB_SRC}: metricsSpatial_frequency",
            _sf,
            ("Spatial_frequency",),
            None,
        ),
        "SD": (
            "statistics",
            "higher",
            "none",
            "standard deviation (population)",
            f"{_VIFB_SRC}: metricsVariance",
            _per_fused(_s._sd, mean="global"),
            ("Variance", "STD"),
            None,
        ),
        "SSIM": (
            "structural",
            "higher",
            "sources",
            "SSIM(VI,F)+SSIM(IR,F) (sum, max 2)",
            f"{_VIFB_SRC}: metricsSsim (Wang et al. 2004, 11x11 Gaussian, no downsampling)",
            _per_triple(_t._ssim, combine="sum"),
            ("Ssim",),
            None,
        ),
        "QABF": (
            "structural",
            "higher",
            "sources",
            "gradient information preservation Q^AB/F",
            f"{_VIFB_SRC}: metricsQabf (Xydeas & Petrovic 2000)",
            _per_triple(_t._qabf),
            ("Qabf", "Q_ABF", "QAB/F"),
            None,
        ),
        "QCB": (
            "structural",
            "higher",
            "sources",
            "Chen-Blum perceptual contrast preservation",
            f"{_VIFB_SRC}: metricsQcb (Chen & Blum 2009, Z. Liu's metricChenBlum.m)",
            _per_triple(_t._qcb),
            ("Qcb", "Q_CB"),
            None,
        ),
        "QCV": (
            "structural",
            "lower",
            "sources",
            "Chen-Varshney regional CSF-weighted distortion",
            f"{_VIFB_SRC}: metricsQcv (Chen & Varshney 2007, Z. Liu's metricChen.m)",
            _per_triple(_t._qcv, alpha=5.0),
            ("Qcv", "Q_CV"),
            None,
        ),
    }


def _extra_defs() -> dict[str, _Def]:
    return {
        "NMI": (
            "information",
            "higher",
            "sources",
            "normalised MI 2[MI(A,F)/(H(A)+H(F)) + MI(B,F)/(H(B)+H(F))]",
            "Hossny, Nahavandi & Creighton, Electronics Letters 44(18), 2008 (SSL-WAEIE)",
            _per_triple(_i._nmi),
            ("Q_MI",),
            None,
        ),
        "QY": (
            "structural",
            "higher",
            "sources",
            "Yang's SSIM-based fusion metric",
            "Yang et al., Information Fusion 9(2), 2008; Z. Liu's metricYang.m (SSL-WAEIE)",
            _per_triple(_t._qy),
            ("Q_Y",),
            None,
        ),
        "IFC": (
            "visual",
            "higher",
            "sources",
            "information fidelity criterion IFC(VI,F)+IFC(IR,F)",
            "Sheikh, Bovik & de Veciana, IEEE TIP 14(12), 2005; ifcvec.m with a "
            "frequency-domain steerable pyramid, per pixel (SSL-WAEIE)",
            _per_triple(_v._ifc),
            (),
            None,
        ),
        "GLD": (
            "statistics",
            "higher",
            "none",
            "gray level difference (forward differences)",
            "IFESNet eq. 18 (after Zhao, Lu & Wang, IEEE TMM 2017)",
            _per_fused(_s._gld),
            (),
            None,
        ),
        "AG_FWD": (
            "statistics",
            "higher",
            "none",
            "average gradient with forward differences",
            "IFESNet eq. 14",
            _per_fused(_s._ag, scheme="forward"),
            ("AGF",),
            None,
        ),
        "CC": (
            "statistics",
            "higher",
            "sources",
            "correlation coefficient (r(F,VI)+r(F,IR))/2",
            "Pearson correlation, design/metrics.md section 7 (JCAE, DeFusion)",
            _per_triple(_s._cc),
            (),
            None,
        ),
        "SCD": (
            "statistics",
            "higher",
            "sources",
            "sum of the correlations of differences",
            "Aslantas & Bendes, AEU 69(12), 2015 (JCAE)",
            _per_triple(_s._scd),
            (),
            None,
        ),
        "VIFP": (
            "visual",
            "higher",
            "sources",
            "pixel-domain VIF, VIFp(VI,F)+VIFp(IR,F)",
            "Sheikh & Bovik, IEEE TIP 15(2), 2006, vifp_mscale.m, sigma_n^2 = 2 (CDDFuse's 'VIF')",
            _per_triple(_v._vif, sigma_nsq=2.0),
            ("VIF_SB",),
            None,
        ),
        "VIFF": (
            "visual",
            "higher",
            "sources",
            "visual information fidelity for fusion",
            "Han, Cai, Cao & Xu, Information Fusion 14(2), 2013, VIFF_Public.m (IFESNet)",
            _per_triple(_v._viff),
            (),
            None,
        ),
        "MEF-SSIM": (
            "structural",
            "higher",
            "sources",
            "multi-exposure fusion SSIM (3 scales, gray)",
            "Ma, Zeng & Wang, IEEE TIP 24(11), 2015, mef_ms_ssim.m as MEFB calls it (DeFusion)",
            _first_triple(_t._mef_ssim),
            ("MEFSSIM", "Q_MEF"),
            "gray",
        ),
        "PSNR_REF": (
            "reference",
            "higher",
            "reference",
            "standard PSNR of F against a ground truth (dB)",
            "10 log10(255^2 / MSE), peak 255 (multi-focus sets with a ground truth)",
            _with_reference(_r._psnr_ref),
            (),
            None,
        ),
        "SSIM_REF": (
            "reference",
            "higher",
            "reference",
            "SSIM of F against a ground truth (Wang's ssim.m, with downsampling)",
            "Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 13(4), 2004, ssim.m",
            _with_reference(_r._ssim_ref),
            (),
            None,
        ),
    }


_MEFB_SRC = "MEFB MATLAB code (X. Zhang, Information Fusion 74, 2021)"


def _mefb_defs() -> dict[str, _Def]:
    """MEFB's 20 metrics in the order MEFB stores them (util/configMetrics.m)."""
    v = {**_vifb_defs(), **_extra_defs()}

    def same(key: str, mefb_name: str, *aliases: str) -> _Def:
        fam, direction, needs, meaning, _, fn, al, col = v[key]
        meaning = meaning.replace("VI,F", "A,F").replace("IR,F", "B,F")
        source = f"{_MEFB_SRC}: metrics{mefb_name}.m"
        names = tuple(n for n in dict.fromkeys((mefb_name, *al, *aliases)) if n != key)
        return (fam, direction, needs, meaning, source, fn, names, col)

    src = _MEFB_SRC
    return {
        "CE": same("CE", "Cross_entropy"),
        "EN": same("EN", "Entropy"),
        "FMI": (
            "information",
            "higher",
            "sources",
            "feature mutual information of edge maps (3 x 3 windows)",
            f"{src}: metricsFMI.m (Haghighat et al. 2011, fast FMI 2014)",
            _per_triple(_f._fmi),
            ("Q_FMI",),
            None,
        ),
        "NMI": (
            "information",
            "higher",
            "sources",
            "normalised MI 2[MI(A,F)/(H(A)+H(F)) + MI(B,F)/(H(B)+H(F))]",
            f"{src}: metricsNMI.m (Hossny et al. 2008; normalize1 images)",
            _per_triple(_i._nmi, stretch=True),
            ("Q_MI",),
            None,
        ),
        "PSNR": same("PSNR", "Psnr"),
        "QNCIE": (
            "information",
            "higher",
            "sources",
            "nonlinear correlation information entropy",
            f"{src}: metricsQncie.m (Wang, Shen & Zhang 2005; Z. Liu's metricWang.m)",
            _per_triple(_i._qncie),
            ("Qncie", "NCIE"),
            None,
        ),
        "TE": (
            "information",
            "higher",
            "sources",
            "Tsallis entropy I_q(A,F)+I_q(B,F), q = 1.85",
            f"{src}: metricsTE.m (Cvejic et al. 2006; Z. Liu's metricMI.m)",
            _per_triple(_i._te, q=1.85),
            ("Tsallis",),
            None,
        ),
        "AG": same("AG", "Avg_gradient"),
        "EI": same("EI", "Edge_intensity"),
        "QABF": same("QABF", "Qabf"),
        "QP": (
            "structural",
            "higher",
            "sources",
            "phase congruency based feature preservation",
            f"{src}: metricsQp.m (Zhao, Laganiere & Liu 2007; Z. Liu's metricZhao.m, myphasecong3.m)",
            _per_triple(_p._qp),
            ("Qp", "Q_P"),
            None,
        ),
        "SD": same("SD", "SD", "Variance"),
        "SF": (
            "statistics",
            "higher",
            "none",
            "spatial frequency, per RGB channel",
            f"{src}: metricsSpatial_frequency.m (normaliser M N, mean over channels)",
            _per_fused(_s._sf_plane),
            ("Spatial_frequency",),
            None,
        ),
        "QC": (
            "structural",
            "higher",
            "sources",
            "Cvejic's covariance-weighted SSIM",
            f"{src}: metricsQc.m (Cvejic et al. 2005; Z. Liu's metricCvejic.m)",
            _per_triple(_t._qc),
            ("Qc", "Q_C"),
            None,
        ),
        "QW": (
            "structural",
            "higher",
            "sources",
            "Piella's edge-dependent weighted fusion quality index",
            f"{src}: metricsQw.m (Piella & Heijmans 2003; Z. Liu's metricPeilla.m)",
            _per_triple(_t._qw),
            ("Qw", "Q_W"),
            None,
        ),
        "QY": same("QY", "Qy"),
        "MEF-SSIM": same("MEF-SSIM", "MEF_SSIM"),
        "QCB": same("QCB", "Qcb"),
        "QCV": same("QCV", "Qcv"),
        "VIF": (
            "visual",
            "higher",
            "sources",
            "VIFF of Han et al. 2013 (per RGB channel; ties: B)",
            f"{src}: metricsVIF.m (Han, Cai, Cao & Xu, Information Fusion 14(2), 2013)",
            _per_triple(_v._viff),
            ("VIFF",),
            None,
        ),
        # not one of MEFB's metrics (so not in the default set): DeFusion's Table 1 reports an
        # SSIM on MEFB whose values (0.5-0.6) fit the mean over the two sources
        "SSIM": (
            "structural",
            "higher",
            "sources",
            "(SSIM(A,F) + SSIM(B,F)) / 2 (not a MEFB metric; DeFusion's Table 1)",
            "VIFB's metricsSsim SSIM (Wang et al. 2004, 11x11 Gaussian, no downsampling), averaged",
            _per_triple(_t._ssim, combine="mean"),
            ("Ssim",),
            None,
        ),
    }


#: MEFB's 20 metrics (util/configMetrics.m order): the mefb profile's default set
MEFB_METRICS = (
    "CE", "EN", "FMI", "NMI", "PSNR", "QNCIE", "TE", "AG", "EI", "QABF",
    "QP", "SD", "SF", "QC", "QW", "QY", "MEF-SSIM", "QCB", "QCV", "VIF",
)  # fmt: skip


def _ma2019_overrides() -> dict[str, _Def]:
    src = "Ma et al. 2019 evaluation code as reproduced on DIDFuse's table, design/metrics.md s. 6"
    return {
        "MI": (
            "information",
            "higher",
            "sources",
            "mutual information MI(VI,F)+MI(IR,F) (bits)",
            f"{src}: 256x256 joint histogram, log2, sum",
            _per_triple(_i._mi, base=2.0, combine="sum", stretch=False),
            (),
            None,
        ),
        "SD": (
            "statistics",
            "higher",
            "none",
            "standard deviation with column means (reproduces the DIDFuse table)",
            f"{src}: sqrt(sum (F_ij - mean_j)^2 / (M N)) - a slip of that code",
            _per_fused(_s._sd, mean="column"),
            ("STD",),
            None,
        ),
        "VIF": (
            "visual",
            "higher",
            "sources",
            "VIFF of Han et al. 2013",
            f"{src}: Han, Cai, Cao & Xu, Information Fusion 14(2), 2013",
            _per_triple(_v._viff),
            (),
            None,
        ),
        "SF": (
            "statistics",
            "higher",
            "none",
            "spatial frequency (standard, normaliser M N)",
            "Eskicioglu & Fisher 1995 / VIFB; the DIDFuse table's SF is not reproducible by "
            "any standard definition",
            _sf,
            (),
            None,
        ),
    }


#: rough relative run time per channel (the rest: 1), so that long parts start first when
#: :func:`ivfuse.metrics.evaluate` runs them on several threads
_COST = {
    "QCB": 12.0,
    "QCV": 6.0,
    "SSIM": 6.0,
    "QABF": 4.0,
    "QY": 6.0,
    "VIFF": 10.0,
    "VIFP": 10.0,
    "VIF": 10.0,
    "IFC": 30.0,
    "MEF-SSIM": 12.0,
    "SSIM_REF": 3.0,
    "QP": 40.0,
    "FMI": 4.0,
    "QC": 5.0,
    "QW": 8.0,
}


def _build(
    name: str, color: str, description: str, defs: dict[str, _Def], default: tuple[str, ...], **kw: object
):
    metrics = {}
    for key, (fam, direction, needs, meaning, source, fn, aliases, col) in defs.items():
        metrics[key] = MetricInfo(
            key, name, fam, direction, needs, meaning, source, fn, aliases, col, _COST.get(key, 1.0)
        )
    return Profile(name, color, description, default, metrics, **kw)  # type: ignore[arg-type]


def _profiles() -> dict[str, Profile]:
    vifb = {**_vifb_defs(), **_extra_defs()}
    ma = {**_vifb_defs(), **_extra_defs(), **_ma2019_overrides()}
    return {
        "vifb": _build(
            "vifb",
            "vifb",
            "VIFB benchmark conventions (mean over RGB channels, VI = img1, IR = img2)",
            vifb,
            ("EN", "CE", "MI", "PSNR", "RMSE", "AG", "EI", "SF", "SD", "SSIM", "QABF", "QCB", "QCV"),
        ),
        "ma2019": _build(
            "ma2019",
            "gray",
            "Ma et al. 2019 / DIDFuse table conventions (gray images, MI in bits, VIF = VIFF)",
            ma,
            ("EN", "MI", "SD", "SF", "VIF", "AG"),
        ),
        "mefb": _build(
            "mefb",
            "mefb",
            "MEFB benchmark conventions (mean over RGB channels, A = under-exposed = first source)",
            _mefb_defs(),
            MEFB_METRICS,
            first_is_img1=True,
            sources=("under-exposed (A)", "over-exposed (B)"),
        ),
    }


PROFILES: dict[str, Profile] = _profiles()
DEFAULT_PROFILE = "vifb"


def _norm(name: str) -> str:
    return name.strip().upper().replace("-", "").replace("_", "").replace("/", "")


def get_profile(name: str) -> Profile:
    """The profile called ``name``; :class:`InputError` listing the choices otherwise."""
    try:
        return PROFILES[name.strip().lower()]
    except KeyError:
        raise InputError(f"unknown metric profile {name!r}; choose one of: {', '.join(PROFILES)}") from None


def lookup(profile: Profile, name: str) -> MetricInfo:
    """The metric ``name`` (case, '-' and '_' ignored; aliases accepted) of ``profile``."""
    key = _norm(name)
    for info in profile.metrics.values():
        if key == _norm(info.name) or key in {_norm(a) for a in info.aliases}:
            return info
    hint = ""
    if key == "VIF":
        hint = " (in this profile use VIFP for Sheikh & Bovik's pixel VIF or VIFF for Han et al.'s)"
    raise InputError(
        f"unknown metric {name!r} in profile {profile.name!r}{hint}; available: {', '.join(profile.metrics)}"
    )


def list_metrics(profile: str | None = None) -> list[MetricInfo]:
    """Every registered metric (of one profile, or of all of them)."""
    profs = [get_profile(profile)] if profile else list(PROFILES.values())
    return [m for p in profs for m in p.metrics.values()]
