"""Laplacian-pyramid fusion.

Pyramid: P. J. Burt, E. H. Adelson, "The Laplacian pyramid as a compact image code", IEEE
Transactions on Communications 31(4), 1983. Fusion rule as in the multi-scale-transform
baselines of the IVIF literature (e.g. Y. Liu, S. Liu, Z. Wang, "A general framework for image
fusion based on multi-scale transform and sparse representation", Information Fusion 24,
2015): the coarsest Gaussian level is averaged, every Laplacian (detail) level keeps the
coefficient of larger absolute value.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..base import Fuser
from ..registry import register
from ._common import finish, positive_int, pyramid_depth

#: Burt & Adelson's 5-tap generating kernel with a = 0.375 (binomial 1-4-6-4-1 / 16).
KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
#: The coarsest level keeps at least this many pixels along the shorter side.
COARSEST = 3


def _blur(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    x = ndimage.correlate1d(x, k, axis=0, mode="mirror")
    return ndimage.correlate1d(x, k, axis=1, mode="mirror")


def reduce(g: np.ndarray) -> np.ndarray:
    """REDUCE: blur with the generating kernel, keep every second row and column."""
    return _blur(g, KERNEL)[::2, ::2]


def expand(g: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """EXPAND to ``shape``: zero insertion, then interpolation with twice the kernel per axis."""
    u = np.zeros(shape, dtype=g.dtype)
    u[::2, ::2] = g
    return _blur(u, 2.0 * KERNEL)


def laplacian_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` detail images (finest first) followed by the coarsest Gaussian level.

    ``sum`` of the expanded levels gives ``x`` back exactly (see :func:`reconstruct`), for any
    size: each detail level is defined as ``G_k - EXPAND(G_{k+1})``.
    """
    out = []
    g = x
    for _ in range(levels):
        g_next = reduce(g)
        out.append(g - expand(g_next, g.shape))
        g = g_next
    out.append(g)
    return out


def reconstruct(pyr: list[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`laplacian_pyramid`."""
    g = pyr[-1]
    for detail in reversed(pyr[:-1]):
        g = detail + expand(g, detail.shape)
    return g


@register(
    "lp",
    family="classical",
    tasks=("ivif", "mef", "mff"),
    paper="P. J. Burt, E. H. Adelson, The Laplacian pyramid as a compact image code, "
    "IEEE Trans. Commun. 1983",
)
class LaplacianPyramid(Fuser):
    """Laplacian-pyramid fusion: averaged base, max-abs details.

    Args:
        levels: number of detail levels (default 4, the depth of the MST baselines in Liu et al.
            2015 and in the GTF paper's comparison code). Fewer are used when the image is too
            small: the coarsest level keeps at least 3 pixels along its shorter side; images
            under 5 pixels on a side have no detail level and reduce to the average.
    """

    def __init__(self, levels: int = 4) -> None:
        self.levels = positive_int("levels", levels)

    dtype = np.float64

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        depth = pyramid_depth(ir.shape, self.levels, COARSEST)
        pa, pb = laplacian_pyramid(ir, depth), laplacian_pyramid(vi, depth)
        fused = [np.where(np.abs(a) >= np.abs(b), a, b) for a, b in zip(pa[:-1], pb[:-1], strict=True)]
        fused.append(0.5 * (pa[-1] + pb[-1]))
        return finish(reconstruct(fused))

    def __repr__(self) -> str:
        return f"LaplacianPyramid(levels={self.levels})"
