"""Phase congruency (Kovesi's ``phasecong3`` as revised in Z. Liu's ``myphasecong3.m``) and the
phase-congruency fusion metric Q_P of Zhao, Laganiere & Liu (2007), as MEFB's ``metricsQp.m``.

Phase congruency is computed in the frequency domain with log-Gabor filters of 4 scales
(minimum wavelength 3, scale factor 2.1, sigma_on_f 0.55) and 6 orientations (angular sigma
pi / 6 / 1.2), multiplied by Kovesi's low-pass filter (cutoff 0.45, order 15), noise threshold
k = 2 from the median energy of the smallest scale, frequency-spread weighting (cutoff 0.5,
g = 10). The filter bank, its noise-energy constants and the frequency grids depend only on the
image size: they are built once per size and shared by every image, channel and call (the
grids replicate MATLAB's: normalised ranges with ``(n-1)`` for odd ``n``, the radius fudge at
``floor(n/2)``, ``ifftshift`` for the log-Gabor grid, ``fftshift`` for the low-pass one). The
FFTs are scipy's (pocketfft), MATLAB's are FFTW. The maps of the last images (up to 96 MiB;
:func:`ivfuse.metrics.clear_buffers` frees them) are kept, keyed by a hash of their pixels, so
evaluating several fused images against the same sources computes the sources' maps once.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from scipy import fft as sfft

from ..errors import InputError
from .buffers import BLOCK_PIXELS
from .definition import MEFB_SRC, Metric, per_triple
from .filters import fspecial_gaussian_1d, sep_filter
from .planes import Plane, Triple, channel_mean, prepare
from .threads import fft_workers

__all__ = ["clear_recent_maps", "phase_congruency", "qp"]

_PC = {
    "nscale": 4,
    "norient": 6,
    "min_wavelength": 3.0,
    "mult": 2.1,
    "sigma_onf": 0.55,
    "dtheta_on_sigma": 1.2,
    "k": 2.0,
    "cutoff": 0.5,
    "g": 10.0,
}
_EPSILON = 1e-4

_BANK_LOCK = threading.Lock()


def _axis_range(n: int) -> np.ndarray:
    if n % 2:
        return np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) / (n - 1)
    return np.arange(-n / 2, n / 2) / n


@functools.lru_cache(maxsize=2)
def _bank(shape: tuple[int, int]) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """Filters (norient, nscale, rows, cols) and per orientation (EM_n, sum of squared spatial
    filters, sum of their cross products) for one image size."""
    rows, cols = shape
    x, y = np.meshgrid(_axis_range(cols), _axis_range(rows))
    radius = np.sqrt(x * x + y * y)
    radius[rows // 2, cols // 2] = 1.0  # no log(0) (Z. Liu's floor)
    theta = np.arctan2(-y, x)
    radius = np.fft.ifftshift(radius)
    theta = np.fft.ifftshift(theta)
    sin_t, cos_t = np.sin(theta), np.cos(theta)
    # Kovesi's lowpassfilter([rows, cols], 0.45, 15)
    lx = (np.arange(1, cols + 1)[None, :] - (cols // 2 + 1)) / cols
    ly = (np.arange(1, rows + 1)[:, None] - (rows // 2 + 1)) / rows
    lr = np.sqrt(lx * lx + ly * ly)
    lp = np.fft.fftshift(1.0 / (1.0 + (lr / 0.45) ** (2 * 15)))
    nscale, norient = _PC["nscale"], _PC["norient"]
    log_gabor = []
    for s in range(nscale):
        fo = 1.0 / (_PC["min_wavelength"] * _PC["mult"] ** s)
        lg = np.exp(-(np.log(radius / fo) ** 2) / (2 * math.log(_PC["sigma_onf"]) ** 2)) * lp
        lg[0, 0] = 0.0
        log_gabor.append(lg)
    theta_sigma = math.pi / norient / _PC["dtheta_on_sigma"]
    filters = np.empty((norient, nscale, rows, cols))
    consts = []
    root = math.sqrt(rows * cols)
    for o in range(norient):
        angl = o * math.pi / norient
        ds = sin_t * math.cos(angl) - cos_t * math.sin(angl)
        dc = cos_t * math.cos(angl) + sin_t * math.sin(angl)
        dtheta = np.abs(np.arctan2(ds, dc))
        spread = np.exp(-(dtheta**2) / (2 * theta_sigma**2))
        for s in range(nscale):
            np.multiply(log_gabor[s], spread, out=filters[o, s])
        spatial = sfft.ifft2(filters[o], axes=(-2, -1), workers=fft_workers()).real * root
        em_n = float((filters[o, 0] ** 2).sum())
        sum_an2 = float((spatial**2).sum())
        sum_aiaj = 0.0
        for si in range(nscale - 1):
            for sj in range(si + 1, nscale):
                sum_aiaj += float((spatial[si] * spatial[sj]).sum())
        consts.append((em_n, sum_an2, sum_aiaj))
    filters32 = filters.astype(np.float32)
    filters32.setflags(write=False)
    return filters32, consts


def _median_of_squares(z: np.ndarray) -> float:
    """median(|z|^2) over all elements (MATLAB's median: the mean of the two middle values for
    an even count)."""
    a = np.multiply(z.real, z.real)
    a += z.imag * z.imag
    a = a.ravel()
    n = a.size
    ranks = (n // 2,) if n % 2 else (n // 2 - 1, n // 2)
    v = [np.float64(x) for x in _order_statistics(a, ranks)]
    return float(v[0]) if len(v) == 1 else float((v[0] + v[1]) / 2)


def _order_statistics(a: np.ndarray, ranks: tuple[int, ...]) -> np.ndarray:
    """The values of rank ``ranks`` (0-based, ascending) of the 1-D array ``a`` (overwritten),
    exactly: the ranks are located in a band around them estimated from a sample, and only the
    values inside the band are partitioned (the whole array when the band misses them)."""
    n = a.size
    if n >= 1 << 15:
        sample = np.sort(a[:: max(1, n >> 12)])
        m = sample.size
        spread = 4 * int(math.sqrt(m)) + 8  # ~8 standard deviations of the sample quantile
        lo = sample[max(0, ranks[0] * m // n - spread)]
        hi = sample[min(m - 1, ranks[-1] * m // n + spread)]
        below = int(np.count_nonzero(a < lo))
        band = a[(a >= lo) & (a <= hi)]
        idx = [r - below for r in ranks]
        if all(0 <= i < band.size for i in idx):
            band.partition(idx)
            return band[idx]
    a.partition(ranks)
    return a[list(ranks)]


def _phasecong(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(phase congruency, maximum moment M, minimum moment m) of a float64 image.

    The 24 filter responses are single-precision FFTs (complex64) and their per-pixel
    combination runs in float32 over blocks of rows (the four scales' responses of a block stay
    in the CPU caches); the sums over orientations, the noise constants and the moments are
    float64. Against float64 throughout this moves Q_P by ~1e-8 (relative), far below the 5
    digits MEFB stores, and halves the time; the operations are those of ``myphasecong3.m``
    (``sum_s E_s MeanE + O_s MeanO`` as ``MeanE sum_E + MeanO sum_O``, equal up to round-off).
    """
    rows, cols = x.shape
    with _BANK_LOCK:
        filters, consts = _bank((rows, cols))
    nscale, norient = _PC["nscale"], _PC["norient"]
    workers = fft_workers()
    spec = sfft.fft2(x, workers=workers).astype(np.complex64)
    total_energy = np.zeros((rows, cols))
    total_an = np.zeros((rows, cols))
    covx2 = np.zeros((rows, cols))
    covy2 = np.zeros((rows, cols))
    covxy = np.zeros((rows, cols))
    eo = np.empty((nscale, rows, cols), np.complex64)
    f32 = np.float32
    eps32 = f32(_EPSILON)
    step = max(1, BLOCK_PIXELS // nscale // cols)  # the four scales of a block: 64k values each
    blocks = [slice(r, min(r + step, rows)) for r in range(0, rows, step)]
    cutoff, g = _PC["cutoff"], _PC["g"]
    for o in range(norient):
        angl = o * math.pi / norient
        ca, sa = math.cos(angl), math.sin(angl)
        np.multiply(spec, filters[o], out=eo)
        eo = sfft.ifft2(eo, axes=(-2, -1), workers=workers, overwrite_x=True)
        # noise: median energy^2 of the smallest scale -> Rayleigh parameter -> threshold T
        em_n, sum_an2, sum_aiaj = consts[o]
        noise_power = (-_median_of_squares(eo[0]) / math.log(0.5)) / em_n
        est_e2 = 2 * noise_power * sum_an2 + 4 * noise_power * sum_aiaj
        tau = math.sqrt(est_e2 / 2)
        t = f32((tau * math.sqrt(math.pi / 2) + _PC["k"] * math.sqrt((2 - math.pi / 2) * tau**2)) / 1.7)
        for sl in blocks:
            z = eo[:, sl]
            e_all = np.ascontiguousarray(z.real)  # even (real) and odd (imaginary) responses
            o_all = np.ascontiguousarray(z.imag)
            an = np.multiply(e_all, e_all)
            an += o_all * o_all
            np.sqrt(an, out=an)  # amplitudes
            sum_an = an.sum(axis=0)
            max_an = an.max(axis=0)
            sum_e = e_all.sum(axis=0)
            sum_o = o_all.sum(axis=0)
            xenergy = np.sqrt(sum_e * sum_e + sum_o * sum_o)
            xenergy += eps32
            mean_e = sum_e / xenergy
            mean_o = sum_o / xenergy
            # sum_s (E_s MeanE + O_s MeanO - |E_s MeanO - O_s MeanE|); the first two terms summed
            # over the scales are MeanE sum_E + MeanO sum_O (equal up to round-off)
            dev = np.multiply(e_all, mean_o)
            dev -= o_all * mean_e
            np.abs(dev, out=dev)
            energy = mean_e * sum_e
            energy += mean_o * sum_o
            energy -= dev.sum(axis=0)
            energy -= t
            np.maximum(energy, f32(0.0), out=energy)
            width = sum_an / (max_an + eps32)
            width /= f32(nscale)
            # weight = 1 / (1 + exp((cutOff - width) g))
            np.subtract(f32(cutoff), width, out=width)
            width *= f32(g)
            np.exp(width, out=width)
            width += f32(1)
            weighted = np.divide(energy, width, out=energy)
            total_an[sl] += sum_an
            total_energy[sl] += weighted
            with np.errstate(divide="ignore", invalid="ignore"):
                pc_o = np.divide(weighted, sum_an, out=sum_an)
            cx = pc_o * f32(ca)
            cy = pc_o * f32(sa)
            covx2[sl] += cx * cx
            covy2[sl] += cy * cy
            cx *= cy
            covxy[sl] += cx
    pc = total_energy / (total_an + _EPSILON)
    covx2 /= norient / 2
    covy2 /= norient / 2
    covxy /= norient
    denom = np.sqrt(covxy * covxy + (covx2 - covy2) ** 2) + _EPSILON
    big = (covy2 + covx2 + denom) / 2
    small = (covy2 + covx2 - denom) / 2
    return pc, big, small


class _RecentMaps:
    """Phase congruency maps of the last few images, keyed by their content: a benchmark
    evaluates many fused images against the same sources, whose maps are then computed once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # bytes
        self.items: OrderedDict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self.lock = threading.Lock()

    def nbytes(self) -> int:
        return sum(a.nbytes for maps in self.items.values() for a in maps)

    def clear(self) -> None:
        with self.lock:
            self.items.clear()

    def get(self, p: Plane) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = p.data
        key = (d.shape, d.dtype.str, hashlib.blake2b(np.ascontiguousarray(d).data, digest_size=16).digest())
        with self.lock:
            hit = self.items.get(key)
            if hit is not None:
                self.items.move_to_end(key)
                return hit
        maps = _phasecong(p.x)
        for a in maps:
            a.setflags(write=False)
        with self.lock:
            self.items[key] = maps
            while len(self.items) > 1 and self.nbytes() > self.limit:
                self.items.popitem(last=False)
        return maps


#: 96 MiB: the nine planes of a 640x480 colour triple (7.4 MB each), so that the next fused image
#: of the same pair finds the six source planes
_RECENT = _RecentMaps(96 << 20)


def clear_recent_maps() -> None:
    """Forget the phase congruency maps kept of recent images (at most 96 MiB)."""
    _RECENT.clear()


def _pc_maps(p: Plane) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, n = p.shape
    if min(m, n) < 11:
        raise InputError(f"QP needs images of at least 11 pixels a side, got {n}x{m}")
    return p.cached("phasecong", lambda: _RECENT.get(p))


_QP_C = 1e-4
_QP_THRESHOLD = 0.1


def _gauss_same(x: np.ndarray) -> np.ndarray:
    """filter2(fspecial('gaussian', 11, 1.5), x, 'same') (zero padding)."""
    k = fspecial_gaussian_1d(11, 1.5)
    return sep_filter(x, k, k, "zero")


def _feature_corr(x1, x2, xmax, xf, m1, m2, m3) -> float:
    """Zhao's correlation of one feature map (masked sources, their max, F) as in metricsQp.m."""
    x1, x2, xmax = x1 * m1, x2 * m2, xmax * m3
    muf = _gauss_same(xf)
    vf = _gauss_same(xf * xf) - muf * muf
    result = np.zeros(xf.shape)
    for x, mask in ((x1, m1), (x2, m2), (xmax, m3)):
        mu = _gauss_same(x)
        v = _gauss_same(x * x) - mu * mu
        cov = _gauss_same(x * xf) - mu * muf
        r = np.zeros(xf.shape)
        r[mask] = (cov[mask] + _QP_C) / (np.sqrt(np.abs(v[mask] * vf[mask])) + _QP_C)
        result = np.fmax(result, r)  # MATLAB max ignores NaN
    count = float(m3.sum())
    total = float(result.sum())
    if count == 0:  # MATLAB: 0 / 0 = NaN (the sum is 0 too: every map is 0 off its mask)
        return math.nan if total == 0 else math.copysign(math.inf, total)
    return total / count


def _qp(t: Triple) -> float:
    a, b = t.sources("QP")
    pa, big_a, small_a = _pc_maps(a)
    pb, big_b, small_b = _pc_maps(b)
    pf, big_f, small_f = _pc_maps(t.fused)
    take_a = pa > pb
    pmax = np.where(take_a, pa, pb)
    big_max = np.where(take_a, big_a, big_b)
    small_max = np.where(take_a, small_a, small_b)
    m1, m2, m3 = pa > _QP_THRESHOLD, pb > _QP_THRESHOLD, pmax > _QP_THRESHOLD
    with np.errstate(divide="ignore", invalid="ignore"):
        r_pc = _feature_corr(pa, pb, pmax, pf, m1, m2, m3)
        r_big = _feature_corr(big_a, big_b, big_max, big_f, m1, m2, m3)
        r_small = _feature_corr(small_a, small_b, small_max, small_f, m1, m2, m3)
    return r_pc * r_big * r_small


def phase_congruency(image: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase congruency of a gray image (Kovesi, Videre 1(3), 1999 and DICTA 2003; Z. Liu's
    ``myphasecong3.m``): ``(PC, M, m)``, the phase congruency in [0, 1] and the maximum and
    minimum moments of its covariance (edge and corner strength). Values on the 0..255 scale."""
    prep = prepare(image, metric="phase congruency")
    if len(prep.fused_channels) != 1:
        raise InputError("phase_congruency takes a gray image")
    return _pc_maps(prep.fused_channels[0])


def qp(fused: Any, a: Any, b: Any) -> float:
    """Phase-congruency fusion metric Q_P (Zhao, Laganiere & Liu, Int. J. Innovative Computing,
    Information and Control 3(6A), 2007), as MEFB's ``metricsQp.m`` (Z. Liu's ``metricZhao.m``).

    For each feature map — phase congruency PC, maximum moment M and minimum moment m
    (:func:`phase_congruency`) — of A, B, F and of the source with the larger PC at each pixel
    (ties: B): local correlations with F (11 x 11 Gaussian window, sigma 1.5, filter2 'same',
    C = 1e-4), each computed where its source's PC exceeds 0.1; the pixel value is the largest of
    the three; the feature's score is their sum over the count of pixels where max PC > 0.1.
    ``Q_P = P_PC * P_M * P_m``. Colour: mean over RGB channels. Range about [0, 1];
    **higher is better**; just below 1 when both sources equal F (the source maps are masked,
    F's is not); NaN (0 / 0) when no pixel has PC > 0.1, e.g. for a constant image.
    """
    prep = prepare(fused, b, a, color="mefb", need_sources=True, metric="QP")
    return channel_mean([_qp(t) for t in prep.triples])


# ---------------------------------------------------------------------------- registry entries

METRICS = (
    Metric(
        name="QP",
        fn=per_triple(_qp),
        family="structural",
        higher_is_better=True,
        range=(-1.0, 1.0),  # a product of three correlations; about [0, 1] in practice
        needs="sources",
        meaning="phase congruency based feature preservation",
        source=f"{MEFB_SRC}: metricsQp.m (Zhao, Laganiere & Liu 2007; Z. Liu's metricZhao.m, myphasecong3.m)",
        profiles=("mefb",),
        aliases=("Qp", "Q_P"),
        cost=40.0,
    ),
)
