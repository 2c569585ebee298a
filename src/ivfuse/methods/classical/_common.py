"""Helpers shared by the classical fusers: output finishing, parameter checks, box and guided filters.

The inputs are checked once for every method by :func:`ivfuse.methods.base.check_pair`.

Everything here is pure NumPy/SciPy, vectorised, and works on any 2-D size including odd and
tiny ones.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ...errors import MethodError


def finish(fused: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and return float32, the fuser output contract."""
    return np.clip(fused, 0.0, 1.0).astype(np.float32)


def positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1, else :class:`MethodError` naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise MethodError(f"parameter {name} must be an integer >= 1, got {value!r}")
    return int(value)


def nonnegative(name: str, value: object, *, strict: bool = False) -> float:
    """``value`` as a float >= 0 (> 0 when ``strict``), else :class:`MethodError`."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MethodError(f"parameter {name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (strict and v == 0):
        bound = "> 0" if strict else ">= 0"
        raise MethodError(f"parameter {name} must be a finite number {bound}, got {value!r}")
    return v


def pyramid_depth(shape: tuple[int, ...], requested: int, coarsest: int) -> int:
    """How many dyadic levels fit: at most ``requested``, and the coarsest level keeps at
    least ``coarsest`` pixels along the shorter side (``ceil(n / 2**k) >= coarsest``)."""
    n = min(shape)
    depth = 0
    while depth < requested and math.ceil(n / 2 ** (depth + 1)) >= coarsest:
        depth += 1
    return depth


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)x(2r+1) window centred on each pixel of the last two axes.

    Windows are clipped at the borders and normalised by the number of pixels they hold, as in
    He et al.'s reference guided filter. Running sums (``scipy.ndimage.uniform_filter1d`` with
    zero padding, rescaled by the clipped window size): cost O(N), independent of ``r``.
    Leading axes are a batch.
    """
    size = 2 * r + 1
    out = np.asarray(x, dtype=np.float64)
    for axis in (out.ndim - 2, out.ndim - 1):
        n = out.shape[axis]
        i = np.arange(n)
        count = np.minimum(i + r, n - 1) - np.maximum(i - r, 0) + 1
        scale = (size / count).reshape((n,) + (1,) * (out.ndim - 1 - axis))
        out = ndimage.uniform_filter1d(out, size, axis=axis, mode="constant") * scale
    return out


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Gray-scale guided filter (He, Sun & Tang, "Guided image filtering", ECCV 2010 / TPAMI 2013).

    Per window w_k of radius ``r``: ``a_k = cov_k(I, p) / (var_k(I) + eps)``,
    ``b_k = mean_k(p) - a_k mean_k(I)``; output ``q_i = mean_{k: i in w_k}(a_k) I_i +
    mean_{k: i in w_k}(b_k)``. Box means by cumulative sums: O(N) whatever
    ``r``. ``guide`` and ``src`` have equal shapes; leading axes are a batch.
    """
    stack = np.stack([guide, src, guide * src, guide * guide])
    m_i, m_p, m_ip, m_ii = box_mean(stack, r)
    a = (m_ip - m_i * m_p) / (m_ii - m_i * m_i + eps)
    b = m_p - a * m_i
    m_a, m_b = box_mean(np.stack([a, b]), r)
    return m_a * guide + m_b
