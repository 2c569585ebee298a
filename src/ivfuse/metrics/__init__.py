"""Fusion quality metrics, exact to their reference implementations, with named profiles.

>>> from ivfuse.metrics import evaluate
>>> evaluate("fused.png", "ir.png", "vi.png")                        # doctest: +SKIP
{'EN': 7.65, 'CE': 1.57, 'MI': 3.16, ...}
>>> evaluate(fused, ir, vi, metrics=["EN", "MI", "VIF"], profile="ma2019")  # doctest: +SKIP

Every metric is also a pure function (``entropy``, ``mutual_information``, ``qabf``, ...) whose
docstring cites its paper and states its range and direction. Inputs are numpy arrays (uint8,
uint16 or float on the 0..255 scale; gray or RGB) of equal size, or, for :func:`evaluate`,
image file paths. ``list_metrics()`` gives the registry (name, family, direction, profile and
definition source of every metric); ``ivfuse eval --list`` prints it.

Layout: the family modules (:mod:`.information`, :mod:`.statistics`, :mod:`.structural`,
:mod:`.visual`, :mod:`.feature`, :mod:`.phase`, :mod:`.reference`) hold the metric functions and
declare each metric once (:class:`~ivfuse.metrics.definition.Metric`); :mod:`.registry` collects
the declarations into profiles; :mod:`.planes` (cached channels), :mod:`.filters`,
:mod:`.validation`, :mod:`.buffers`, :mod:`.arctan`, :mod:`.threads` and :mod:`.scheduler` are the
shared machinery. :mod:`.temporal` holds the temporal-consistency measures of a fused *video*
(:func:`flicker`, :func:`flicker_mc`, :func:`temporal_consistency`): functions over frame sequences,
not per-image metrics, so not in the profiles. Settings: :func:`set_threads` (threads per
:func:`evaluate` call) and
:func:`set_filter_impl` (``"opencv"``, the default, or ``"scipy"`` filters, a cross-check; not to
be confused with :mod:`ivfuse.backends`, the inference engines of the networks).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import InputError
from .buffers import POOL
from .feature import fmi
from .filters import filter_impl, get_filter_impl, set_filter_impl
from .information import cross_entropy, entropy, mutual_information, nmi, qncie, tsallis_entropy
from .phase import clear_recent_maps, phase_congruency, qp
from .planes import Prepared, prepare
from .reference import psnr, ssim_ref
from .registry import (
    DEFAULT_PROFILE,
    PROFILES,
    MetricInfo,
    Profile,
    get_profile,
    list_metrics,
    lookup,
)
from .scheduler import run_jobs
from .statistics import (
    average_gradient,
    correlation_coefficient,
    edge_intensity,
    gray_level_difference,
    psnr_vifb,
    rmse_vifb,
    scd,
    spatial_frequency,
    standard_deviation,
)
from .structural import mef_ssim, qabf, qc, qcb, qcv, qw, qy, ssim, ssim_fusion
from .temporal import TemporalConsistency, flicker, flicker_mc, temporal_consistency
from .threads import get_threads, set_threads
from .validation import rgb2gray
from .visual import ifc, vif, viff

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "MetricInfo",
    "Profile",
    "TemporalConsistency",
    "average_gradient",
    "correlation_coefficient",
    "clear_buffers",
    "cross_entropy",
    "edge_intensity",
    "entropy",
    "evaluate",
    "filter_impl",
    "flicker",
    "flicker_mc",
    "fmi",
    "get_filter_impl",
    "get_profile",
    "get_threads",
    "gray_level_difference",
    "ifc",
    "list_metrics",
    "load_image",
    "mef_ssim",
    "mutual_information",
    "nmi",
    "phase_congruency",
    "psnr",
    "psnr_vifb",
    "qabf",
    "qc",
    "qcb",
    "qcv",
    "qncie",
    "qp",
    "qw",
    "qy",
    "resolve_metrics",
    "rgb2gray",
    "rmse_vifb",
    "scd",
    "set_filter_impl",
    "set_threads",
    "spatial_frequency",
    "ssim",
    "ssim_fusion",
    "ssim_ref",
    "standard_deviation",
    "temporal_consistency",
    "tsallis_entropy",
    "vif",
    "viff",
]

ImageLike = Any  # numpy array, or a path to an image file


def clear_buffers() -> None:
    """Free the image-sized buffers that :func:`evaluate` keeps between calls for reuse (at most
    128 MiB; reusing them spares the page faults of fresh memory) and the phase congruency maps
    of recent images (QP, at most 96 MiB)."""
    POOL.clear()
    clear_recent_maps()


def load_image(x: ImageLike, role: str = "image") -> np.ndarray:
    """An array as given, or the stored values of an image file (uint8/uint16, never rescaled)."""
    if isinstance(x, (str, os.PathLike)):
        from ..io import read_image

        return read_image(x)
    if x is None:
        raise InputError(f"{role} image is missing")
    return np.asarray(x)


def _available(info: MetricInfo, has_sources: bool, has_ref: bool) -> bool:
    return (
        info.needs == "none"
        or (info.needs == "sources" and has_sources)
        or (info.needs == "reference" and has_ref)
    )


def resolve_metrics(
    metrics: str | Iterable[str] | None,
    profile: Profile,
    *,
    has_sources: bool = True,
    has_reference: bool = False,
) -> list[MetricInfo]:
    """Metric names (list, or a comma-separated string; ``None`` = the profile's default set;
    ``"all"`` = every metric of the profile the given inputs allow) -> registry entries.

    For ``None`` and ``"all"`` metrics whose inputs are missing are left out; a metric named
    explicitly whose inputs are missing raises :class:`InputError`.
    """
    if isinstance(metrics, str):
        names = [m for m in (s.strip() for s in metrics.split(",")) if m]
    elif metrics is None:
        names = None
    else:
        names = [str(m).strip() for m in metrics]
    if names is not None and not names:
        raise InputError("no metric names given")
    if names is None or [n.lower() for n in names] == ["all"]:
        pool = (
            [profile.metrics[n] for n in profile.default] if names is None else list(profile.metrics.values())
        )
        out = [m for m in pool if _available(m, has_sources, has_reference)]
        if not out:
            raise InputError(
                "none of the selected metrics can be computed from the fused image alone; "
                "give the infrared and visible images too"
            )
        return out
    out = []
    for n in names:
        info = lookup(profile, n)
        if not _available(info, has_sources, has_reference):
            what = "the infrared and visible images" if info.needs == "sources" else "a reference image"
            raise InputError(f"metric {info.name} needs {what}")
        if all(info is not o for o in out):
            out.append(info)
    return out


def evaluate(
    fused: ImageLike,
    ir: ImageLike | None = None,
    vi: ImageLike | None = None,
    metrics: str | Iterable[str] | None = None,
    profile: str = DEFAULT_PROFILE,
    *,
    reference: ImageLike | None = None,
) -> dict[str, float]:
    """Quality metrics of one fused image, as ``{metric name: value}`` in request order.

    ``fused``, ``ir``, ``vi`` (and ``reference``, a ground truth for PSNR_REF / SSIM_REF) are
    arrays or image file paths. With ``profile="mefb"`` the two sources are the under-exposed
    (A) and the over-exposed (B) image, in that order: ``evaluate(fused, a, b, profile="mefb")``.
    They are used on the 0..255 scale, never rescaled to [0, 1].
    ``metrics``: names of the profile (see :func:`list_metrics`), a comma-separated string,
    ``"all"``, or ``None`` for the profile's default set (``vifb``: its 13 metrics;
    ``ma2019``: EN, MI, SD, SF, VIF, AG; ``mefb``: its 20 metrics). Metrics that need no sources
    (EN, SD, SF, AG, EI, GLD, AG_FWD) work with ``ir`` and ``vi`` left out. Intermediate results
    shared by several metrics (histograms, Gaussian moments, gradients, FFTs) are computed once;
    the work runs on
    :func:`get_threads` threads (values do not depend on it), and image-sized buffers are kept
    for the next call (:func:`clear_buffers` frees them).
    Raises :class:`ivfuse.errors.InputError` for unusable inputs or unknown names.
    """
    prof = get_profile(profile)
    if (ir is None) != (vi is None):
        raise InputError(f"give both the {prof.sources[0]} and the {prof.sources[1]} image, or neither")
    if prof.first_is_img1:  # e.g. mefb: evaluate(fused, a, b); the metric code's img1 is A
        ir, vi = vi, ir
    infos = resolve_metrics(metrics, prof, has_sources=ir is not None, has_reference=reference is not None)
    f = load_image(fused, "fused")
    s_ir = load_image(ir, "infrared") if ir is not None else None
    s_vi = load_image(vi, "visible") if vi is not None else None
    ref = load_image(reference, "reference") if reference is not None else None
    prepared: dict[str, Prepared] = {}

    def prep_for(color: str) -> Prepared:
        if color not in prepared:
            prepared[color] = prepare(f, s_ir, s_vi, color=color, reference=ref)
        return prepared[color]

    prep_for(prof.color)  # validates the inputs once, before any metric runs
    values = run_jobs(
        [(info.compute, prep_for(info.color or prof.color)) for info in infos], [info.cost for info in infos]
    )
    return {info.name: float(v) for info, v in zip(infos, values, strict=True)}
