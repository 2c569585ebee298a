"""A 2-D dual-tree complex wavelet transform (DT-CWT), written for fusion.

Construction (N. Kingsbury, "Complex wavelets for shift invariant analysis and filtering of
signals", Appl. Comput. Harmon. Anal. 10(3), 2001; I. Selesnick, R. Baraniuk, N. Kingsbury,
"The dual-tree complex wavelet transform", IEEE Signal Processing Magazine 22(6), 2005):

* two real 1-D wavelet trees ``a`` and ``b``. Level 1 uses Kingsbury's near-symmetric 13/19-tap
  biorthogonal filters (``near_sym_b``) in both trees, tree ``b`` sampling one input sample
  later than tree ``a``; levels >= 2 use the 14-tap Q-shift filters (``qshift_b``), tree ``b``
  using the time-reversed filters of tree ``a``. The trees' wavelets then form approximate
  Hilbert pairs (``tests/test_classical.py`` checks that every complex sub-band of levels
  >= 2 keeps more than 99 % of its energy in one half of the frequency plane);
* the 2-D transform runs the four separable real DWTs (tree of the columns x tree of the rows:
  aa, ab, ba, bb) and combines, per detail type (high-pass along axis 0, axis 1 or both), the
  four real coefficients into two complex ones, ``z+ = (aa - bb) + i(ab + ba)`` and
  ``z- = (aa + bb) + i(ba - ab)`` (scaled by 1/sqrt 2): six oriented complex sub-bands per level.

The filter coefficients are Kingsbury's published ``near_sym_b`` and ``qshift_b`` filters
(the values the ``dtcwt`` package and the MATLAB DT-CWT toolbox ship); the taps that follow from
the others by time reversal and sign alternation are derived, not listed. The ``dtcwt``
package itself is not used: it pins NumPy < 2 and calls ``numpy.asfarray``, which NumPy 2 removed.

Boundaries: every level filters circularly (``mode="wrap"``), which gives perfect
reconstruction for any even size; the image is first extended by whole-sample symmetric
padding (at least ``2**(levels+1)`` pixels per side, rounded up so that both sides are
multiples of ``2**levels``) so that the wrap-around happens inside the padding, and the
result is cropped back.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

TREES = (0, 1)  # tree a, tree b
# Sampling offsets of level 1 (undecimated filtering, then every second sample starting here):
# tree a keeps the low-pass at even and the high-pass at odd positions, tree b one sample later.
_L1_LO_OFFSET = (0, 1)
_L1_HI_OFFSET = (1, 2)


@dataclass(frozen=True)
class _Bank:
    lo: np.ndarray  # analysis low-pass, as a correlation kernel of odd length
    hi: np.ndarray  # analysis high-pass
    glo: np.ndarray  # synthesis (dual) low-pass, applied as the adjoint of a correlation
    ghi: np.ndarray


def _odd(w: np.ndarray) -> np.ndarray:
    """Make a kernel odd-length by appending a zero, so that its centre is unambiguous."""
    w = np.asarray(w, dtype=np.float64).ravel()
    return w if w.size % 2 else np.concatenate([w, [0.0]])


# Kingsbury's near-symmetric 13/19-tap biorthogonal filters (near_sym_b): analysis low-pass h0o
# and synthesis low-pass g0o; the high-passes follow by sign alternation.
_NEAR_SYM_B_H0 = np.array([-0.0017578125, 0.0, 0.022265625, -0.046875, -0.0482421875, 0.296875, 0.55546875])
_NEAR_SYM_B_G0 = np.array(
    [7.062639508928571e-05, 0.0, -0.0013419015066964285, -0.0018833705357142855, 0.007156808035714285,
     0.023856026785714284, -0.05564313616071428, -0.05168805803571428, 0.29975760323660716,
     0.5594308035714286]
)  # fmt: skip
# Kingsbury's 14-tap Q-shift filter (qshift_b), tree a analysis low-pass h0a.
_QSHIFT_B_H0A = np.array(
    [0.003253142763653182, -0.00388321199915849, 0.03466034684485349, -0.03887280126882779,
     -0.11720388769911527, 0.27529538466888204, 0.7561456438925225, 0.5688104207121227,
     0.011866092033797, -0.1067118046866654, 0.023825384794920298, 0.01702522388155399,
     -0.005439475937274115, -0.004556895628475491]
)  # fmt: skip


def _symmetric(half: np.ndarray) -> np.ndarray:
    """Odd-length symmetric filter from its first half including the centre tap."""
    return np.concatenate([half, half[-2::-1]])


def _alternate(w: np.ndarray, first: int) -> np.ndarray:
    """Multiply tap n by ``first * (-1)**n``."""
    return w * (first * (-1.0) ** np.arange(w.size))


@lru_cache(maxsize=1)
def _banks() -> tuple[_Bank, tuple[_Bank, _Bank]]:
    """Level-1 bank (both trees) and the Q-shift banks of trees a and b."""
    h0o = _symmetric(_NEAR_SYM_B_H0)
    g0o = _symmetric(_NEAR_SYM_B_G0)
    h1o, g1o = _alternate(g0o, -1), _alternate(h0o, 1)
    level1 = _Bank(*(np.sqrt(2.0) * _odd(v) for v in (h0o, h1o, g0o, g1o)))
    h0a = _QSHIFT_B_H0A
    h0b = h0a[::-1]
    h1a, h1b = _alternate(h0b, 1), _alternate(h0a, -1)
    h0a, h0b, h1a, h1b = (_odd(v) for v in (h0a, h0b, h1a, h1b))
    # Q-shift filters are orthonormal: synthesis is the adjoint of analysis with the same taps.
    return level1, (_Bank(h0a, h1a, h0a, h1a), _Bank(h0b, h1b, h0b, h1b))


def _positions(n: int, offset: int) -> np.ndarray:
    return (offset + 2 * np.arange(n // 2)) % n


def _down(filtered: np.ndarray, offset: int, axis: int) -> np.ndarray:
    return np.take(filtered, _positions(filtered.shape[axis], offset), axis=axis)


def _corr(x: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    return ndimage.correlate1d(x, w, axis=axis, mode="wrap")


def _up_add(u: np.ndarray, y: np.ndarray, offset: int, axis: int) -> None:
    """``u += U_offset(y)``: place ``y`` at every second position of ``u`` along ``axis``."""
    idx = [slice(None)] * u.ndim
    idx[axis] = _positions(u.shape[axis], offset)
    u[tuple(idx)] += y


def _adjoint(u: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """Adjoint of :func:`_corr` for an odd-length kernel: correlation with the reversed kernel."""
    return ndimage.correlate1d(u, w[::-1], axis=axis, mode="wrap")


def _doubled(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    s = list(shape)
    s[axis] *= 2
    return tuple(s)


@dataclass
class Pyramid:
    """DT-CWT coefficients of one (padded) image.

    Attributes:
        lowpass: (2, 2, h, w) real, the coarsest low-pass of each tree pair (column tree, row tree).
        highpasses: one complex (6, h_j, w_j) array per level, finest first. Sub-band order:
            (z+, z-) of the detail with high-pass along axis 1, along axis 0, along both.
        shape: the padded image shape.
    """

    lowpass: np.ndarray
    highpasses: list[np.ndarray]
    shape: tuple[int, int]


_S = 1.0 / np.sqrt(2.0)


def _to_complex(d: np.ndarray) -> np.ndarray:
    """(3, 2, 2, h, w) real tree coefficients -> (6, h, w) complex."""
    aa, ab, ba, bb = d[:, 0, 0], d[:, 0, 1], d[:, 1, 0], d[:, 1, 1]
    zp = _S * ((aa - bb) + 1j * (ab + ba))
    zm = _S * ((aa + bb) + 1j * (ba - ab))
    return np.stack([zp, zm], axis=1).reshape((6, *aa.shape[1:]))


def _from_complex(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_to_complex`."""
    z = z.reshape((3, 2, *z.shape[1:]))
    zp, zm = z[:, 0], z[:, 1]
    aa = _S * (zp.real + zm.real)
    bb = _S * (zm.real - zp.real)
    ab = _S * (zp.imag - zm.imag)
    ba = _S * (zp.imag + zm.imag)
    return np.stack([np.stack([aa, ab], 1), np.stack([ba, bb], 1)], 1)


def forward(x: np.ndarray, levels: int) -> Pyramid:
    """DT-CWT of a 2-D float array whose sides are multiples of ``2**levels`` (``levels >= 1``)."""
    h, w = x.shape
    if levels < 1 or h % 2**levels or w % 2**levels:
        raise ValueError(f"sides {h}x{w} must be multiples of 2**{levels}")
    l1, q = _banks()
    highpasses = []
    # Level 1: filter once at full rate, then each tree keeps its own samples.
    lo0, hi0 = _corr(x, l1.lo, 0), _corr(x, l1.hi, 0)
    low = np.empty((2, 2, h // 2, w // 2))
    det = np.empty((3, 2, 2, h // 2, w // 2))
    for r in TREES:
        cols_lo = _down(lo0, _L1_LO_OFFSET[r], 0)
        cols_hi = _down(hi0, _L1_HI_OFFSET[r], 0)
        ll, lh = _corr(cols_lo, l1.lo, 1), _corr(cols_lo, l1.hi, 1)
        hl, hh = _corr(cols_hi, l1.lo, 1), _corr(cols_hi, l1.hi, 1)
        for c in TREES:
            low[r, c] = _down(ll, _L1_LO_OFFSET[c], 1)
            det[0, r, c] = _down(lh, _L1_HI_OFFSET[c], 1)
            det[1, r, c] = _down(hl, _L1_LO_OFFSET[c], 1)
            det[2, r, c] = _down(hh, _L1_HI_OFFSET[c], 1)
    highpasses.append(_to_complex(det))
    for _ in range(1, levels):
        hj, wj = low.shape[2] // 2, low.shape[3] // 2
        new_low = np.empty((2, 2, hj, wj))
        det = np.empty((3, 2, 2, hj, wj))
        for r in TREES:
            for c in TREES:
                x_rc = low[r, c]
                cols_lo = _down(_corr(x_rc, q[r].lo, 0), 0, 0)
                cols_hi = _down(_corr(x_rc, q[r].hi, 0), 0, 0)
                new_low[r, c] = _down(_corr(cols_lo, q[c].lo, 1), 0, 1)
                det[0, r, c] = _down(_corr(cols_lo, q[c].hi, 1), 0, 1)
                det[1, r, c] = _down(_corr(cols_hi, q[c].lo, 1), 0, 1)
                det[2, r, c] = _down(_corr(cols_hi, q[c].hi, 1), 0, 1)
        low = new_low
        highpasses.append(_to_complex(det))
    return Pyramid(low, highpasses, (h, w))


def inverse(p: Pyramid) -> np.ndarray:
    """Inverse of :func:`forward`: the mean of the four trees' reconstructions."""
    l1, q = _banks()
    low = p.lowpass
    for z in reversed(p.highpasses[1:]):
        det = _from_complex(z)
        hj, wj = low.shape[2] * 2, low.shape[3] * 2
        new_low = np.empty((2, 2, hj, wj))
        for r in TREES:
            for c in TREES:
                shape1 = _doubled(low[r, c].shape, 1)
                u_lo, u_hi = np.zeros(shape1), np.zeros(shape1)
                _up_add(u_lo, low[r, c], 0, 1)
                _up_add(u_hi, det[0, r, c], 0, 1)
                cols_lo = _adjoint(u_lo, q[c].glo, 1) + _adjoint(u_hi, q[c].ghi, 1)
                u_lo, u_hi = np.zeros(shape1), np.zeros(shape1)
                _up_add(u_lo, det[1, r, c], 0, 1)
                _up_add(u_hi, det[2, r, c], 0, 1)
                cols_hi = _adjoint(u_lo, q[c].glo, 1) + _adjoint(u_hi, q[c].ghi, 1)
                shape0 = _doubled(cols_lo.shape, 0)
                u_lo, u_hi = np.zeros(shape0), np.zeros(shape0)
                _up_add(u_lo, cols_lo, 0, 0)
                _up_add(u_hi, cols_hi, 0, 0)
                new_low[r, c] = _adjoint(u_lo, q[r].glo, 0) + _adjoint(u_hi, q[r].ghi, 0)
        low = new_low
    # Level 1: by linearity the four trees share each full-rate synthesis filtering.
    det = _from_complex(p.highpasses[0])
    h, w = p.shape
    u0_lo, u0_hi = np.zeros((h, w)), np.zeros((h, w))
    for r in TREES:
        parts = []
        for band_lo, band_hi in ((low[r], det[0, r]), (det[1, r], det[2, r])):
            u_lo, u_hi = np.zeros((h // 2, w)), np.zeros((h // 2, w))
            for c in TREES:
                _up_add(u_lo, band_lo[c], _L1_LO_OFFSET[c], 1)
                _up_add(u_hi, band_hi[c], _L1_HI_OFFSET[c], 1)
            parts.append(_adjoint(u_lo, l1.glo, 1) + _adjoint(u_hi, l1.ghi, 1))
        _up_add(u0_lo, parts[0], _L1_LO_OFFSET[r], 0)
        _up_add(u0_hi, parts[1], _L1_HI_OFFSET[r], 0)
    return 0.25 * (_adjoint(u0_lo, l1.glo, 0) + _adjoint(u0_hi, l1.ghi, 0))


def pad_for(shape: tuple[int, int], levels: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Symmetric padding (before, after) per axis used by the fuser (see module docstring)."""
    step = 2**levels
    margin = 2 ** (levels + 1)
    pads = []
    for n in shape:
        total = -(-(n + 2 * margin) // step) * step
        pads.append((margin, total - n - margin))
    return pads[0], pads[1]
