"""Wavelet-domain fusion: the discrete wavelet transform (DWT) and the dual-tree complex
wavelet transform (DT-CWT), both with the classic rule "average the approximation, keep the
detail coefficient of larger magnitude".

* DWT: H. Li, B. S. Manjunath, S. K. Mitra, "Multisensor image fusion using the wavelet
  transform", Graphical Models and Image Processing 57(3), 1995 (here with the pixel-wise
  max-abs rule, no area-based activity or consistency check). Transform: PyWavelets.
* DT-CWT: J. J. Lewis, R. J. O'Callaghan, S. G. Nikolov, D. R. Bull, N. Canagarajah,
  "Pixel- and region-based image fusion with complex wavelets", Information Fusion 8(2), 2007
  (the pixel-based variant). Transform: :mod:`._dualtree` (Kingsbury's filters).
"""

from __future__ import annotations

import numpy as np
import pywt

from ...errors import MethodError
from ..base import Fuser
from ..registry import register
from . import _dualtree
from ._common import finish, positive_int, pyramid_depth


def _max_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(np.abs(a) >= np.abs(b), a, b)


@register(
    "dwt",
    family="classical",
    tasks=("ivif", "mef", "mff"),
    paper="H. Li, B. S. Manjunath, S. K. Mitra, Multisensor image fusion using the wavelet transform, "
    "Graphical Models and Image Processing 1995",
)
class WaveletFusion(Fuser):
    """DWT fusion (PyWavelets): averaged approximation, max-abs details.

    Args:
        wavelet: any discrete PyWavelets name (default ``"db2"``, the wavelet of the DWT
            baseline in the GTF paper's comparison code).
        levels: decomposition levels (default 4). Capped by ``pywt.dwt_max_level`` for the
            image's shorter side, so that no level is all boundary; an image smaller than the
            filter has no detail level and the rule reduces to the average.
        mode: signal extension (default ``"symmetric"``); reconstruction is exact in every mode.
    """

    def __init__(self, wavelet: str = "db2", levels: int = 4, mode: str = "symmetric") -> None:
        try:
            self.wavelet = pywt.Wavelet(wavelet)
        except (ValueError, TypeError) as e:
            raise MethodError(f"unknown wavelet {wavelet!r} (pywt.wavelist(kind='discrete'))") from e
        if mode not in pywt.Modes.modes:
            raise MethodError(f"unknown extension mode {mode!r}; choose from {pywt.Modes.modes}")
        self.levels = positive_int("levels", levels)
        self.mode = mode

    dtype = np.float64

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        depth = min(self.levels, pywt.dwt_max_level(min(ir.shape), self.wavelet.dec_len))
        if depth == 0:
            return finish(0.5 * (ir + vi))
        ca = pywt.wavedec2(ir, self.wavelet, mode=self.mode, level=depth)
        cb = pywt.wavedec2(vi, self.wavelet, mode=self.mode, level=depth)
        fused: list = [0.5 * (ca[0] + cb[0])]
        for da, db in zip(ca[1:], cb[1:], strict=True):
            fused.append(tuple(_max_abs(a, b) for a, b in zip(da, db, strict=True)))
        out = pywt.waverec2(fused, self.wavelet, mode=self.mode)
        return finish(out[: ir.shape[0], : ir.shape[1]])

    def __repr__(self) -> str:
        return f"WaveletFusion(wavelet={self.wavelet.name!r}, levels={self.levels}, mode={self.mode!r})"


@register(
    "dtcwt",
    family="classical",
    tasks=("ivif", "mef", "mff"),
    paper="J. J. Lewis, R. J. O'Callaghan, S. G. Nikolov, D. R. Bull, N. Canagarajah, Pixel- and "
    "region-based image fusion with complex wavelets, Information Fusion 2007",
)
class DualTreeFusion(Fuser):
    """DT-CWT fusion: averaged low-pass, max-magnitude complex high-pass coefficients.

    Each of the six oriented complex sub-bands of every level keeps, per coefficient, the
    source with the larger magnitude ``|z|`` (Lewis et al. 2007, pixel-based rule); the four
    tree low-passes are averaged.

    Args:
        levels: decomposition levels (default 4, as in Lewis et al. and the MST baselines of
            Liu et al. 2015). Capped so that the coarsest level keeps at least 2 pixels of the
            image's shorter side; a 1-pixel-wide image reduces to the average.

    Filters: Kingsbury's near-symmetric 13/19-tap biorthogonal pair (``near_sym_b``) at level 1
    and the 14-tap Q-shift filters (``qshift_b``) at the other levels.
    """

    def __init__(self, levels: int = 4) -> None:
        self.levels = positive_int("levels", levels)

    dtype = np.float64

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        depth = pyramid_depth(ir.shape, self.levels, 2)
        if depth == 0:
            return finish(0.5 * (ir + vi))
        pads = _dualtree.pad_for(ir.shape, depth)
        pa = _dualtree.forward(np.pad(ir, pads, mode="symmetric"), depth)
        pb = _dualtree.forward(np.pad(vi, pads, mode="symmetric"), depth)
        pa.lowpass = 0.5 * (pa.lowpass + pb.lowpass)
        pa.highpasses = [
            np.where(np.abs(za) >= np.abs(zb), za, zb)
            for za, zb in zip(pa.highpasses, pb.highpasses, strict=True)
        ]
        out = _dualtree.inverse(pa)
        (t, _), (left, _) = pads
        return finish(out[t : t + ir.shape[0], left : left + ir.shape[1]])

    def __repr__(self) -> str:
        return f"DualTreeFusion(levels={self.levels}, biort={self.biort!r}, qshift={self.qshift!r})"
