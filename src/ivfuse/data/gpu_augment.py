"""DeFusion's CUD pretext augmentation in batched torch ops that run on any device.

The loader path (:class:`ivfuse.methods.defusion.CUDPretext`) decodes every image on demand and
augments it on the CPU, one sample at a time; on a GPU that loader, not the network, bounds
training (35-45 samples/s with 8 workers on an H200 node). Here the images are decoded once into a
cache of uint8 tensors (:class:`ImageCache`, moved to the training device: BSDS500's 400 training
images are 186 MB as uint8) and :func:`cud_batch` draws a whole batch on that device:

* colour jitter (brightness, contrast, saturation factors in ``[jitter_min, 1]``, a random order
  per sample, hue 0), as :func:`ivfuse.data.natural.color_jitter`;
* a random-resized crop box per sample (:func:`ivfuse.data.natural.random_resized_crop_box`,
  scalar draws on the CPU generator) resized to ``crop`` x ``crop``, bilinear and antialiased;
* the two grid masks of :func:`ivfuse.methods.defusion.cud_masks`, for the whole batch at once
  (:func:`cud_masks_batch`): keep probability ``p = keep_min + u / keep_div`` per sample, each
  mask a coarse (13 x 13) times a fine (g x g, g in ``fine_grids``) Bernoulli(p) grid, pixels
  hidden in both masks revealed in one by a filler grid (coarse, fine or g3 with probabilities
  0.33 / 0.33 / 0.34), the two masks swapped with probability 1/2;
* the views of Eq. (1) with ``n = clamp(|N(0, 1)|, 0, 1)`` noise (:func:`cud_views`).

The distribution is the loader path's; the random streams are not (batched draws come in another
order), so a run with device augmentation is reproducible for its seed but not bit-identical to
a loader run. Tests check the mask properties on both paths (``M1 + M2 >= 1``, 0/1 values, the
keep probability's range and the expected coverage ``p^2 + (1 - p^2)^2 / 2``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["ImageCache", "cud_batch", "cud_masks_batch", "expected_coverage", "jitter_batch"]

_GRAY = (0.2989, 0.587, 0.114)


class ImageCache:
    """Images decoded once as (3, H, W) uint8 tensors, kept on ``device`` (moved on first use)."""

    def __init__(self, files: Sequence[str | Path]):
        from .natural import load_rgb_uint8

        self.files = [Path(f) for f in files]
        self.images: list[torch.Tensor] = [load_rgb_uint8(f) for f in self.files]
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: str | torch.device) -> ImageCache:
        device = torch.device(device)
        if device != self.device:
            self.images = [im.to(device) for im in self.images]
            self.device = device
        return self

    @property
    def nbytes(self) -> int:
        return sum(im.numel() for im in self.images)


def _gray(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(-3)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(-3)


def jitter_batch(x: torch.Tensor, factors: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """Colour jitter of (N, 3, H, W) images in [0, 1]: ``factors`` (N, 3) = brightness, contrast,
    saturation; ``orders`` (N, 4) a permutation of 0..3 per sample (3 = hue: skipped). Each op
    blends with its reference and clamps to [0, 1], in the sample's order (as
    :func:`ivfuse.data.natural.color_jitter`)."""
    n = x.shape[0]
    fb, fc, fs = (factors[:, k].view(n, 1, 1, 1).to(x.dtype) for k in range(3))
    for pos in range(orders.shape[1]):
        op = orders[:, pos].view(n, 1, 1, 1)
        bright = (x * fb).clamp(0, 1)
        mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
        contrast = (fc * x + (1 - fc) * mean).clamp(0, 1)
        sat = (fs * x + (1 - fs) * _gray(x)).clamp(0, 1)
        x = torch.where(op == 0, bright, torch.where(op == 1, contrast, torch.where(op == 2, sat, x)))
    return x


def _grids(cells: torch.Tensor, choices: Sequence[int], size: int, p: torch.Tensor, device) -> torch.Tensor:
    """(N, 1, size, size) Bernoulli(p_n) grids of ``cells[n]`` x ``cells[n]`` cells (one of
    ``choices``), nearest-upsampled."""
    n = p.shape[0]
    out = torch.zeros(n, 1, size, size, device=device)
    for c in dict.fromkeys(int(v) for v in choices):
        g = (torch.rand(n, 1, c, c, device=device) < p.view(n, 1, 1, 1)).to(torch.float32)
        up = F.interpolate(g, size=(size, size), mode="nearest")
        out = torch.where((cells == c).view(n, 1, 1, 1), up, out)
    return out


def cud_masks_batch(
    n: int, size: int, cfg: Any = None, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(M1, M2, p)`` for ``n`` samples: (N, 1, size, size) float 0/1 masks and the (N,) keep
    probabilities, drawn on ``device`` (the rules of :func:`ivfuse.methods.defusion.cud_masks`)."""
    if cfg is None:
        from ..methods.defusion import Config

        cfg = Config()
    device = torch.device(device)
    fine = tuple(int(g) for g in cfg.fine_grids)
    p = cfg.keep_min + torch.rand(n, device=device) / cfg.keep_div
    pick = torch.tensor(fine, device=device)
    g = pick[torch.randint(len(fine), (n,), device=device)]
    g3 = pick[torch.randint(len(fine), (n,), device=device)]
    coarse = torch.full((n,), int(cfg.coarse_grid), device=device)
    every = (int(cfg.coarse_grid), *fine)
    a = _grids(coarse, every, size, p, device) * _grids(g, every, size, p, device)
    b = _grids(coarse, every, size, p, device) * _grids(g, every, size, p, device)
    u = torch.rand(n, device=device)  # the official code's thresholds 0.33 / 0.66
    cells = torch.where(u < 0.33, coarse, torch.where(u < 0.66, g, g3))
    filler = _grids(cells, every, size, p, device)
    hidden = (a == 0) & (b == 0)
    a = torch.where(hidden & (filler == 1), torch.ones_like(a), a)
    b = torch.where(hidden & (filler == 0), torch.ones_like(b), b)
    swap = (torch.rand(n, device=device) < 0.5).view(n, 1, 1, 1)
    a, b = torch.where(swap, b, a), torch.where(swap, a, b)
    return a, b, p


def expected_coverage(p: torch.Tensor | float) -> torch.Tensor | float:
    """Expected fraction of visible pixels of one mask for keep probability ``p``: ``p^2`` from the
    two grids, plus half the doubly hidden pixels ``(1 - p^2)^2`` from the filler (the swap makes
    the two masks alike)."""
    return p * p + (1 - p * p) ** 2 / 2


def cud_views(x: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (1) on a batch: ``x_k = M_k x + (1 - M_k) n_k``, ``n_k = clamp(|N(0, 1)|, 0, 1)``."""
    n1 = torch.randn_like(x).abs().clamp(0, 1)
    n2 = torch.randn_like(x).abs().clamp(0, 1)
    return x * m1 + n1 * (1 - m1), x * m2 + n2 * (1 - m2)


def crops_batch(cache: ImageCache, index: Sequence[int], size: int, cfg: Any) -> torch.Tensor:
    """Jittered random-resized crops of the cached images ``index`` as (N, 3, size, size) in [0, 1]
    on the cache's device: each whole image jittered (the contrast mean is the whole image's, as in
    the loader path), then cropped and resized."""
    from .natural import random_resized_crop_box

    device = cache.device
    n = len(index)
    lo = float(cfg.jitter_min)
    factors = torch.empty(n, 3).uniform_(lo, 1.0)
    orders = torch.stack([torch.randperm(4) for _ in range(n)])
    out = []
    for k, i in enumerate(index):
        img = cache.images[int(i)].to(torch.float32).div_(255.0)[None]
        img = jitter_batch(img, factors[k : k + 1].to(device), orders[k : k + 1].to(device))
        top, left, h, w = random_resized_crop_box(img.shape[-2], img.shape[-1])
        crop = img[:, :, top : top + h, left : left + w]
        out.append(
            F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        )
    return torch.cat(out).clamp(0, 1)


def cud_batch(
    cache: ImageCache, index: Sequence[int] | torch.Tensor, cfg: Any = None
) -> dict[str, torch.Tensor]:
    """One CUD training batch on the cache's device: ``{"x", "x1", "x2"}`` (N, 3, c, c) and
    ``{"m1", "m2"}`` (N, 1, c, c), as :class:`ivfuse.methods.defusion.CUDPretext` items stacked.

    Colour jitter on each whole cached image, then the crop (the loader path's order)."""
    if cfg is None:
        from ..methods.defusion import Config

        cfg = Config()
    if isinstance(index, torch.Tensor):
        index = [int(i) for i in index.reshape(-1).tolist()]
    size = int(cfg.crop)
    x = crops_batch(cache, index, size, cfg)
    m1, m2, _ = cud_masks_batch(len(index), size, cfg, cache.device)
    x1, x2 = cud_views(x, m1, m2)
    return {"x": x, "x1": x1, "x2": x2, "m1": m1, "m2": m2}
