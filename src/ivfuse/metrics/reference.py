"""Reference-based metrics: PSNR and SSIM of a fused image against a ground truth.

For fusion sets that come with an all-in-focus or well-exposed reference (e.g. Real-MFF, used by
DeFusion's multi-focus table). Values are on the 8-bit scale (peak 255).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .definition import Metric, with_reference
from .filters import box_downsample
from .planes import Plane, channel_mean, make_plane, prepare
from .structural import ssim_map

__all__ = ["psnr", "ssim_ref"]


def _psnr_ref(f: Plane, r: Plane, peak: float = 255.0) -> float:
    d = f.x - r.x
    mse = float(np.einsum("ij,ij->", d, d)) / d.size
    return 10.0 * math.log10(peak * peak / mse) if mse > 0 else math.inf


def _ssim_ref(f: Plane, r: Plane, downsample: bool = True) -> float:
    m, n = f.shape
    k = max(1, round(min(m, n) / 256)) if downsample else 1
    if k > 1:
        f = make_plane(box_downsample(f.x, k))
        r = make_plane(box_downsample(r.x, k))
    return float(ssim_map(r, f)[0].mean())


def psnr(fused: Any, reference: Any, *, peak: float = 255.0) -> float:
    """Standard PSNR ``10 log10(peak^2 / MSE)`` of F against a ground truth, in dB.

    Colour: mean over RGB channels of the per-channel PSNR. Range [0, inf) (inf for identical
    images); **higher is better**.
    """
    prep = prepare(fused, reference=reference, metric="PSNR_REF")
    assert prep.reference is not None
    return channel_mean(
        [_psnr_ref(f, r, peak) for f, r in zip(prep.fused_channels, prep.reference, strict=True)]
    )


def ssim_ref(fused: Any, reference: Any, *, downsample: bool = True) -> float:
    """SSIM of F against a ground truth (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 13(4), 2004),
    as Wang's reference ``ssim.m``: 11 x 11 Gaussian window (sigma 1.5), K = (0.01, 0.03),
    L = 255, 'valid' statistics, and the automatic downsampling by ``round(min(M, N) / 256)``
    (``downsample=False`` switches it off). Colour: mean over RGB channels.
    Range [-1, 1]; **higher is better**; 1 for identical images.
    """
    prep = prepare(fused, reference=reference, metric="SSIM_REF")
    assert prep.reference is not None
    return channel_mean(
        [_ssim_ref(f, r, downsample) for f, r in zip(prep.fused_channels, prep.reference, strict=True)]
    )


# ---------------------------------------------------------------------------- registry entries

METRICS = (
    Metric(
        name="PSNR_REF",
        fn=with_reference(_psnr_ref),
        family="reference",
        higher_is_better=True,
        range=(0.0, math.inf),
        needs="reference",
        meaning="standard PSNR of F against a ground truth (dB)",
        source="10 log10(255^2 / MSE), peak 255 (multi-focus sets with a ground truth)",
        profiles=("vifb", "ma2019"),
    ),
    Metric(
        name="SSIM_REF",
        fn=with_reference(_ssim_ref),
        family="reference",
        higher_is_better=True,
        range=(-1.0, 1.0),
        needs="reference",
        meaning="SSIM of F against a ground truth (Wang's ssim.m, with downsampling)",
        source="Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 13(4), 2004, ssim.m",
        profiles=("vifb", "ma2019"),
        cost=3.0,
    ),
)
