"""Input checks and conversions of the metrics: the value scale, colour to gray, grey levels.

Value scale
    Every metric works on intensities on the **8-bit scale 0..255**, exactly as VIFB's MATLAB
    code does after ``double(imread(...))``: there is no rescaling to [0, 1].

    * ``uint8`` arrays are used as they are (and kept as ``uint8``: histograms, gradients and
      filters read the 8-bit values directly, with exact integer arithmetic where it applies);
    * ``uint16`` arrays are mapped with ``v / 257`` (65535 -> 255);
    * float arrays are taken to be on the 0..255 scale already (a network output in [0, 1] must
      be multiplied by 255 first);
    * histogram-based metrics quantise to the 256 integer levels (round half away from zero,
      clip to 0..255), which leaves 8-bit data unchanged.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "RGB2GRAY",
    "check_image",
    "check_same_size",
    "levels",
    "rgb2gray",
    "round_half_away",
    "to_scale255",
]

#: MATLAB ``rgb2gray`` weights (the exact ones it uses: the inverse of the NTSC YIQ matrix row).
RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def check_image(x: Any, role: str) -> np.ndarray:
    """Validate one input array; return it as a C-contiguous array (dtype preserved).

    Accepts (H, W), (H, W, 1) and (H, W, 3) arrays of an integer, bool-free numeric or float
    dtype with finite values. Raises :class:`InputError` otherwise.
    """
    if x is None:
        raise InputError(f"{role} image is missing")
    arr = np.asarray(x)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InputError(f"{role} image has unsupported dtype {arr.dtype} (use uint8, uint16 or float)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise InputError(f"{role} image must be (H, W) gray or (H, W, 3) RGB, got shape {tuple(np.shape(x))}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InputError(f"{role} image is too small ({arr.shape[1]}x{arr.shape[0]} pixels)")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(f"{role} image contains NaN or infinite values")
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise InputError(f"{role} image has negative values")
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype not in (np.uint8, np.uint16) and arr.max() > 255:
        raise InputError(
            f"{role} image of dtype {arr.dtype} has values above 255; give uint8, or uint16 for "
            "16-bit data (mapped with / 257)"
        )
    if np.issubdtype(arr.dtype, np.floating) and arr.size and 0 < float(arr.max()) <= 1.0:
        warnings.warn(
            f"{role} image is float with values in [0, 1]; metrics use the 0..255 scale "
            "(multiply by 255 first)",
            UserWarning,
            stacklevel=3,
        )
    return np.ascontiguousarray(arr)


def check_same_size(fused: np.ndarray, other: np.ndarray, role: str) -> None:
    """Raise :class:`InputError` unless ``other`` has the height and width of ``fused``."""
    if fused.shape[:2] != other.shape[:2]:
        raise InputError(
            f"{role} image is {other.shape[1]}x{other.shape[0]} but the fused image is "
            f"{fused.shape[1]}x{fused.shape[0]}; metrics need images of equal size"
        )


def to_scale255(arr: np.ndarray) -> np.ndarray:
    """float64 copy of ``arr`` on the 0..255 scale (see the module docstring)."""
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 257.0
    return arr.astype(np.float64)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round``: halves go away from zero (numpy's ``round`` goes to even)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def rgb2gray(arr: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray``: weighted sum of R, G, B; integer inputs are rounded back to integers.

    Gray (2-D) input is returned unchanged. The result keeps the input's dtype for uint8/uint16.
    """
    if arr.ndim == 2:
        return arr
    w = np.asarray(RGB2GRAY)
    gray = arr.astype(np.float64) @ w
    if np.issubdtype(arr.dtype, np.integer):
        return round_half_away(gray).astype(arr.dtype)
    return gray


def levels(x: np.ndarray) -> np.ndarray:
    """Integer grey levels 0..255 (as ``uint8``) of a 0..255-scale image (round half away, clip)."""
    q = np.floor(x + 0.5)
    np.clip(q, 0, 255, out=q)
    return q.astype(np.uint8)
