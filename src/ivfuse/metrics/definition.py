"""What a metric is to the registry: one :class:`Metric` declaration, and how it is computed.

Each family module (:mod:`.information`, :mod:`.statistics`, :mod:`.structural`,
:mod:`.visual`, :mod:`.feature`, :mod:`.phase`, :mod:`.reference`) declares its metrics next to
their functions, in a module-level tuple ``METRICS``; :mod:`.registry` collects them into the
profiles. Adding a metric is one declaration::

    METRICS = (
        Metric(
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
        ),
    )

The same name may mean different formulas in different profiles (MI, SD, VIF, ...): each formula
is its own declaration, with the profiles it belongs to (:meth:`Metric.variant` copies one with
changes, :func:`mefb_variant` gives the MEFB form of a VIFB metric).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import InputError
from .planes import Prepared, channel_mean

__all__ = [
    "FAMILIES",
    "MA2019_SRC",
    "MEFB_SRC",
    "NEEDS",
    "VIFB_SRC",
    "Compute",
    "Metric",
    "PerChannel",
    "first_triple",
    "mefb_variant",
    "per_fused",
    "per_triple",
    "with_reference",
]

Compute = Callable[[Prepared], float]

FAMILIES = ("information", "statistics", "structural", "visual", "reference")
NEEDS = ("none", "sources", "reference")

#: the reference implementations most metrics follow
VIFB_SRC = "VIFB MATLAB code (Zhang, Ye & Xiao, CVPRW 2020)"
MEFB_SRC = "MEFB MATLAB code (X. Zhang, Information Fusion 74, 2021)"
MA2019_SRC = "Ma et al. 2019 evaluation code as reproduced on DIDFuse's table (docs/metrics.md)"


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One metric formula: its computation, its meaning, its definition source and the profiles
    that use it under ``name``."""

    name: str
    fn: Compute = field(repr=False, compare=False)  # Prepared -> value (see the builders below)
    family: str  # one of FAMILIES
    higher_is_better: bool
    range: tuple[float, float]  # the values it can take (math.inf where unbounded)
    needs: str  # "none" (fused only), "sources" (both sources) or "reference" (ground truth)
    meaning: str
    source: str  # the paper / reference implementation that defines it exactly
    profiles: tuple[str, ...]  # the profiles in which ``name`` means this formula
    aliases: tuple[str, ...] = ()
    color: str | None = None  # overrides the profile's colour rule ("gray" for MEF-SSIM)
    cost: float = field(default=1.0, compare=False)  # relative time per channel, for scheduling

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"metric {self.name}: unknown family {self.family!r}")
        if self.needs not in NEEDS:
            raise ValueError(f"metric {self.name}: unknown needs {self.needs!r}")
        lo, hi = self.range
        if not lo < hi:
            raise ValueError(f"metric {self.name}: empty range {self.range}")

    @property
    def direction(self) -> str:
        """``'higher'`` or ``'lower'`` (is better)."""
        return "higher" if self.higher_is_better else "lower"

    def variant(self, **changes: object) -> Metric:
        """A copy with some fields changed (e.g. the same formula in another profile)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def mefb_variant(m: Metric, mefb_name: str, *aliases: str) -> Metric:
    """The VIFB metric ``m`` as MEFB's ``metrics<mefb_name>.m`` (the same formula): profile
    ``mefb``, sources A and B, MEFB's file as the source, MEFB's name as an alias."""
    return m.variant(
        profiles=("mefb",),
        meaning=m.meaning.replace("VI,F", "A,F").replace("IR,F", "B,F"),
        source=f"{MEFB_SRC}: metrics{mefb_name}.m",
        aliases=tuple(n for n in dict.fromkeys((mefb_name, *m.aliases, *aliases)) if n != m.name),
    )


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


def per_triple(fn: Callable[..., float], **kw: object) -> Compute:
    """``fn(triple, **kw)`` per colour channel, averaged."""
    return PerChannel(fn, kw, on_fused=False)


def per_fused(fn: Callable[..., float], **kw: object) -> Compute:
    """``fn(fused_plane, **kw)`` per colour channel, averaged."""
    return PerChannel(fn, kw, on_fused=True)


def first_triple(fn: Callable[..., float]) -> Compute:
    """``fn`` of the first (or only) triple: metrics that use a colour rule of their own."""
    return lambda prep: fn(prep.triples[0])


def with_reference(fn: Callable[..., float]) -> Compute:
    """``fn(fused_plane, reference_plane)`` per colour channel, averaged."""

    def compute(prep: Prepared) -> float:
        if prep.reference is None:
            raise InputError("this metric needs a ground-truth (reference) image")
        vals = [fn(f, r) for f, r in zip(prep.fused_channels, prep.reference, strict=True)]
        return channel_mean(vals)

    return compute
