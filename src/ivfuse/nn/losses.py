"""Shared training losses: SSIM / DSSIM and Sobel gradient losses.

All functions take batched tensors shaped ``(N, C, H, W)`` with values in ``[0, max_val]`` and
return a scalar tensor (mean over every element) unless stated otherwise.

The SSIM here is the one of kornia 0.2-0.4's ``SSIM`` loss class, which several IVIF papers
(DIDFuse among them) trained with: an ``11 x 11`` Gaussian window (sigma 1.5, normalised to sum
1), border padding of half the window by *reflection* (kornia 0.1.x padded with zeros; pass
``padding="zeros"`` for that), local statistics per channel, ``C1 = (0.01 max_val)^2``,
``C2 = (0.03 max_val)^2`` [Wang et al., IEEE TIP 2004, Eq. (13)], and the loss map
``clamp(1 - SSIM, 0, 1) / 2``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_window",
    "ssim_map",
    "dssim",
    "sobel_gradient",
    "gradient_l1",
    "float32_outside_autocast",
]

_PAD_MODES = {"reflect": "reflect", "zeros": "constant", "replicate": "replicate"}


def float32_outside_autocast(fn: Callable[..., torch.Tensor | dict[str, torch.Tensor]]) -> Callable:
    """Run ``fn(*tensors, **options)`` in at least float32 with autocast off, and cast its result (a
    tensor or a dict of tensors) back to the tensors' promoted dtype. For statistics that bfloat16
    cancels, such as local variances ``E[x^2] - E[x]^2``."""

    @functools.wraps(fn)
    def wrapper(*tensors: torch.Tensor, **options):
        out_dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
        work = torch.promote_types(out_dtype, torch.float32)
        with torch.autocast(device_type=tensors[0].device.type, enabled=False):
            out = fn(*(t.to(work) for t in tensors), **options)
        if isinstance(out, dict):
            return {k: v.to(out_dtype) for k, v in out.items()}
        return out.to(out_dtype)

    return wrapper


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 4 or y.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) tensors, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """2-D Gaussian window ``(size, size)``, outer product of two 1-D windows each summing to 1."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    if size % 2 == 0:
        x = x + 0.5
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).to(dtype=dtype, device=device)


def _filter(x: torch.Tensor, window: torch.Tensor, padding: str) -> torch.Tensor:
    """Depth-wise correlation of every channel with ``window``, output the size of ``x``."""
    c = x.shape[1]
    kh, kw = window.shape
    ph, pw = kh // 2, kw // 2
    x = F.pad(x, (pw, pw, ph, ph), mode=_PAD_MODES[padding])
    w = window.expand(c, 1, kh, kw)
    return F.conv2d(x, w, groups=c)


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    max_val: float = 1.0,
    padding: str = "reflect",
) -> torch.Tensor:
    """Per-pixel SSIM index map ``(N, C, H, W)`` of ``x`` and ``y`` (see module docstring).

    Computed in at least float32, outside autocast, whatever the inputs' precision: the variances
    are differences of local means (``E[x^2] - E[x]^2``), which bfloat16 cancels to zero or below,
    so a flat patch gave ``var_x + var_y + c2 <= 0`` and an infinite loss (JCAE at 360 x 280
    under ``--precision bf16``, first step). The map comes back in the inputs' promoted dtype."""
    _check_pair(x, y)
    if padding not in _PAD_MODES:
        raise ValueError(f"padding must be one of {sorted(_PAD_MODES)}, got {padding!r}")
    return _ssim_map(x, y, window_size=window_size, sigma=sigma, max_val=max_val, padding=padding)


@float32_outside_autocast
def _ssim_map(
    x: torch.Tensor, y: torch.Tensor, *, window_size: int, sigma: float, max_val: float, padding: str
) -> torch.Tensor:
    w = gaussian_window(window_size, sigma, dtype=x.dtype, device=x.device)
    c1 = (0.01 * max_val) ** 2
    c2 = (0.03 * max_val) ** 2
    mu_x = _filter(x, w, padding)
    mu_y = _filter(y, w, padding)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = _filter(x * x, w, padding) - mu_xx
    var_y = _filter(y * y, w, padding) - mu_yy
    cov = _filter(x * y, w, padding) - mu_xy
    num = (2.0 * mu_xy + c1) * (2.0 * cov + c2)
    den = (mu_xx + mu_yy + c1) * (var_x + var_y + c2)
    return num / den


def dssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    max_val: float = 1.0,
    padding: str = "reflect",
) -> torch.Tensor:
    """Structural dissimilarity ``mean(clamp(1 - SSIM, 0, 1) / 2)`` (kornia <= 0.4 ``SSIM`` loss)."""
    s = ssim_map(x, y, window_size=window_size, sigma=sigma, max_val=max_val, padding=padding)
    return torch.clamp(1.0 - s, 0.0, 1.0).div(2.0).mean()


def sobel_gradient(x: torch.Tensor, *, normalized: bool = True) -> torch.Tensor:
    """Sobel responses ``(N, C, 2, H, W)`` (x then y) with replicate padding of 1 px.

    The x kernel is ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]``, y is its transpose; with
    ``normalized`` both are divided by 8, the sum of their absolute values (kornia's
    ``spatial_gradient(mode="sobel", normalized=True)``).
    """
    if x.ndim != 4:
        raise ValueError(f"expected an (N, C, H, W) tensor, got {tuple(x.shape)}")
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype)
    if normalized:
        kx = kx / kx.abs().sum()
    k = torch.stack([kx, kx.t()]).unsqueeze(1).to(x.device)  # (2, 1, 3, 3)
    n, c, h, w = x.shape
    xp = F.pad(x.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, k).reshape(n, c, 2, h, w)


def gradient_l1(x: torch.Tensor, y: torch.Tensor, *, normalized: bool = True) -> torch.Tensor:
    """Mean absolute difference of the Sobel responses of ``x`` and ``y`` (both components)."""
    _check_pair(x, y)
    return (sobel_gradient(x, normalized=normalized) - sobel_gradient(y, normalized=normalized)).abs().mean()
