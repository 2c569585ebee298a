"""Guided filtering fusion (GFF).

S. Li, X. Kang, J. Hu, "Image fusion with guided filtering", IEEE Transactions on Image
Processing 22(7), 2864-2875, 2013. The paper's steps:

1. two-scale decomposition: base ``B_n = I_n * Z`` with ``Z`` the 31x31 average
   filter, detail ``D_n = I_n - B_n``;
2. saliency: ``S_n = |I_n * L| * g``, ``L`` the 3x3 Laplacian, ``g`` a Gaussian
   low-pass of size (2 r_g + 1)^2 = 11x11 and sigma_g = 5;
3. weight maps: ``P_n = 1`` where ``S_n`` is the largest saliency, else 0;
4. weight refinement with the guided filter: ``W_n^B = G_{r1,eps1}(P_n, I_n)``,
   ``W_n^D = G_{r2,eps2}(P_n, I_n)``, normalised to sum to one at every pixel; paper
   parameters r1 = 45, eps1 = 0.3, r2 = 7, eps2 = 1e-6 (intensities in [0, 1]);
5. fusion: ``F = sum_n W_n^B B_n + sum_n W_n^D D_n``.

Choices where the paper is silent: borders are symmetric (``reflect``) for the average,
Laplacian and Gaussian filters, and clipped windows normalised by their pixel count for the
guided filter (as He et al.'s reference code). A pixel where both saliencies are equal gets
``P = 1`` in both maps. As a numerical guard the refined weights are clipped at 0 before
normalisation (the guided filter can overshoot slightly below 0 next to strong edges), and a
pixel whose weights both vanish gets equal weights.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..base import Fuser
from ..registry import register
from ._common import finish, guided_filter, nonnegative, positive_int


def _normalised(w: np.ndarray) -> np.ndarray:
    w = np.maximum(w, 0.0)
    total = w.sum(axis=0)
    ok = total > 1e-12
    return np.where(ok, w / np.where(ok, total, 1.0), 1.0 / w.shape[0])


@register(
    "gff",
    family="classical",
    tasks=("ivif", "mef", "mff"),
    paper="S. Li, X. Kang, J. Hu, Image fusion with guided filtering, IEEE TIP 2013",
)
class GuidedFilterFusion(Fuser):
    """Guided filtering fusion (GFF): two-scale decomposition with guided-filter weight maps.

    Args:
        r1, eps1: guided filter of the base-layer weights (paper: 45, 0.3).
        r2, eps2: guided filter of the detail-layer weights (paper: 7, 1e-6).
        base_radius: radius of the average filter of the two-scale decomposition (paper: 31x31,
            radius 15).
        saliency_radius, saliency_sigma: Gaussian of the saliency measure (paper: r_g = 5,
            sigma_g = 5).
    """

    def __init__(
        self,
        r1: int = 45,
        eps1: float = 0.3,
        r2: int = 7,
        eps2: float = 1e-6,
        base_radius: int = 15,
        saliency_radius: int = 5,
        saliency_sigma: float = 5.0,
    ) -> None:
        self.r1 = positive_int("r1", r1)
        self.eps1 = nonnegative("eps1", eps1, strict=True)
        self.r2 = positive_int("r2", r2)
        self.eps2 = nonnegative("eps2", eps2, strict=True)
        self.base_radius = positive_int("base_radius", base_radius)
        self.saliency_radius = positive_int("saliency_radius", saliency_radius)
        self.saliency_sigma = nonnegative("saliency_sigma", saliency_sigma, strict=True)

    def weights(self, ir: np.ndarray, vi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The normalised base and detail weight maps, each (2, H, W) for (ir, vi)."""
        src = np.stack([ir, vi])
        lap = np.stack([ndimage.laplace(s, mode="reflect") for s in src])
        sal = np.stack(
            [
                ndimage.gaussian_filter(
                    np.abs(h),
                    self.saliency_sigma,
                    mode="reflect",
                    truncate=self.saliency_radius / self.saliency_sigma,
                )
                for h in lap
            ]
        )
        p = (sal == sal.max(axis=0)).astype(np.float64)
        wb = _normalised(guided_filter(src, p, self.r1, self.eps1))
        wd = _normalised(guided_filter(src, p, self.r2, self.eps2))
        return wb, wd

    dtype = np.float64

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        src = np.stack([ir, vi])
        size = 2 * self.base_radius + 1
        base = ndimage.uniform_filter(src, size=(1, size, size), mode="reflect")
        detail = src - base
        wb, wd = self.weights(ir, vi)
        return finish((wb * base).sum(axis=0) + (wd * detail).sum(axis=0))

    def __repr__(self) -> str:
        return f"GuidedFilterFusion(r1={self.r1}, eps1={self.eps1}, r2={self.r2}, eps2={self.eps2})"
