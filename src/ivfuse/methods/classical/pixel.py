"""Pixel-wise baselines: the average and the choose-max rule.

These are the simplest fusion rules that every IVIF survey lists as reference points (e.g.
J. Ma, Y. Ma, C. Li, "Infrared and visible image fusion methods and applications: A survey",
Information Fusion 45, 2019). They have no parameters.
"""

from __future__ import annotations

import numpy as np

from ..base import Fuser
from ..registry import register
from ._common import finish


@register(
    "average",
    family="classical",
    tasks=("ivif", "mef", "mff"),
    paper="Pixel-wise mean of the sources (baseline; see J. Ma et al., Information Fusion 2019 survey)",
)
class Average(Fuser):
    """Pixel-wise mean ``F = (IR + VI) / 2``."""

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        return finish(0.5 * (ir + vi))

    def __repr__(self) -> str:
        return "Average()"


@register(
    "max",
    family="classical",
    tasks=("ivif", "mef", "mff"),
    paper="Pixel-wise choose-max of the sources (baseline; see J. Ma et al., Information Fusion 2019 survey)",
)
class ChooseMax(Fuser):
    """Pixel-wise choose-max ``F = max(IR, VI)``: keeps the brighter source at each pixel."""

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        return finish(np.maximum(ir, vi))

    def __repr__(self) -> str:
        return "ChooseMax()"
