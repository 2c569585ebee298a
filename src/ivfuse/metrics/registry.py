"""The metric registry: every metric of every profile with its family, direction and definition.

A *profile* is a set of conventions: a colour rule and, for names that papers use for different
formulas (MI, SD, VIF, ...), which formula the name means. Profiles are built from the same
parameterised functions, never from copies:

``vifb`` (default)
    The 13 metrics of the VIFB benchmark (Zhang, Ye & Xiao, CVPRW 2020) exactly as its MATLAB
    code computes them, with its colour rule (mean over RGB channels, img1 = visible,
    img2 = infrared, uint8 values not rescaled), plus the other metrics fusion papers report
    (NMI, QY, IFC, GLD, CC, SCD, VIFP, VIFF, MEF-SSIM, ...) and two reference-based ones.
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

Each metric formula is one :class:`~ivfuse.metrics.definition.Metric` declared next to its
function in a family module (``METRICS`` of :mod:`.information`, :mod:`.statistics`,
:mod:`.structural`, :mod:`.visual`, :mod:`.feature`, :mod:`.phase`, :mod:`.reference`), naming the
profiles it belongs to; this module collects them. A profile fixes only its default set and the
order its metrics are listed in (metrics it does not order are listed last).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError
from . import feature, information, phase, reference, statistics, structural, visual
from .definition import FAMILIES, Compute, Metric

__all__ = [
    "DEFAULT_PROFILE",
    "FAMILIES",
    "MEFB_METRICS",
    "PROFILES",
    "MetricInfo",
    "Profile",
    "get_profile",
    "list_metrics",
    "lookup",
]

#: every declared metric formula, in the order of the family modules
DECLARED: tuple[Metric, ...] = tuple(
    m for mod in (information, statistics, structural, visual, feature, phase, reference) for m in mod.METRICS
)


@dataclass(frozen=True)
class MetricInfo:
    """One metric of one profile: a :class:`~ivfuse.metrics.definition.Metric` under the
    profile's name for it."""

    metric: Metric = field(repr=False)
    profile: str

    name = property(lambda self: self.metric.name)
    family = property(lambda self: self.metric.family)
    direction = property(lambda self: self.metric.direction)  # "higher" or "lower" is better
    higher_is_better = property(lambda self: self.metric.higher_is_better)
    range = property(lambda self: self.metric.range)
    needs = property(lambda self: self.metric.needs)  # "none", "sources" or "reference"
    meaning = property(lambda self: self.metric.meaning)
    source = property(lambda self: self.metric.source)  # where the exact definition comes from
    aliases = property(lambda self: self.metric.aliases)
    color = property(lambda self: self.metric.color)  # overrides the profile's colour rule
    cost = property(lambda self: self.metric.cost)  # relative time, for scheduling

    @property
    def compute(self) -> Compute:
        return self.metric.fn

    def __repr__(self) -> str:
        return f"MetricInfo(name={self.name!r}, profile={self.profile!r}, family={self.family!r})"

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


_VIFB_DEFAULT = ("EN", "CE", "MI", "PSNR", "RMSE", "AG", "EI", "SF", "SD", "SSIM", "QABF", "QCB", "QCV")
_EXTRAS = (
    "NMI", "QY", "IFC", "GLD", "AG_FWD", "CC", "SCD", "VIFP", "VIFF", "MEF-SSIM", "PSNR_REF", "SSIM_REF",
)  # fmt: skip

#: MEFB's 20 metrics (util/configMetrics.m order): the mefb profile's default set
MEFB_METRICS = (
    "CE", "EN", "FMI", "NMI", "PSNR", "QNCIE", "TE", "AG", "EI", "QABF",
    "QP", "SD", "SF", "QC", "QW", "QY", "MEF-SSIM", "QCB", "QCV", "VIF",
)  # fmt: skip


def _build(
    name: str, color: str, description: str, default: tuple[str, ...], order: tuple[str, ...], **kw: object
) -> Profile:
    """The profile ``name``: the declared metrics that list it, in listing ``order`` (metrics
    the order does not name follow, in declaration order)."""
    mine: dict[str, Metric] = {}
    for m in DECLARED:
        if name in m.profiles:
            if m.name in mine:
                raise ValueError(f"metric {m.name} is declared twice for profile {name}")
            mine[m.name] = m
    missing = [n for n in (*order, *default) if n not in mine]
    if missing:
        raise ValueError(f"profile {name}: no declaration of {', '.join(missing)}")
    names = [*order, *(n for n in mine if n not in order)]
    metrics = {n: MetricInfo(mine[n], name) for n in names}
    return Profile(name, color, description, default, metrics, **kw)  # type: ignore[arg-type]


def _profiles() -> dict[str, Profile]:
    return {
        "vifb": _build(
            "vifb",
            "vifb",
            "VIFB benchmark conventions (mean over RGB channels, VI = img1, IR = img2)",
            _VIFB_DEFAULT,
            (*_VIFB_DEFAULT, *_EXTRAS),
        ),
        "ma2019": _build(
            "ma2019",
            "gray",
            "Ma et al. 2019 / DIDFuse table conventions (gray images, MI in bits, VIF = VIFF)",
            ("EN", "MI", "SD", "SF", "VIF", "AG"),
            (*_VIFB_DEFAULT, *_EXTRAS, "VIF"),
        ),
        "mefb": _build(
            "mefb",
            "mefb",
            "MEFB benchmark conventions (mean over RGB channels, A = under-exposed = first source)",
            MEFB_METRICS,
            (*MEFB_METRICS, "SSIM"),
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
