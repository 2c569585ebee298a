"""Synthetic source pairs made from natural images, for methods whose papers train on pairs we lack.

* :func:`focus_pair` - a multi-focus pair from one sharp image: a smooth random region mask M, a
  Gaussian blur B; ``A = M I + (1 - M) B(I)``, ``B = (1 - M) I + M B(I)``, target ``I``. IFCNN
  (Zhang et al., Information Fusion 2020, Sec. 3.3) blurs NYU-D2 images by their depth maps; here
  the depth is replaced by a random region mask (no depth at hand).
* :func:`exposure_pair` - an under-/over-exposed pair from one image: a gain below 1 and one above
  1 on linearised intensities (gamma 2.2), clipped to [0, 1] (the saturation of a real bracket).
  DeepFuse (Prabhakar et al., ICCV 2017) trains on real exposure stacks; the bracket is simulated.
* :class:`NaturalPairs` - natural images (random crops, flips) turned into either kind of pair.

Every random draw comes from torch's global generator, which the trainer seeds and stores in its
checkpoints, so a resumed run draws the same pairs as an unbroken one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["gaussian_blur", "random_mask", "focus_pair", "exposure_pair", "NaturalPairs"]


def _uniform(lo: float, hi: float) -> float:
    return float(torch.empty(1).uniform_(lo, hi))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(C, H, W) image blurred by a Gaussian of ``sigma`` (replicate border, radius 3 sigma)."""
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[0]
    y = F.pad(x[None], (r, r, r, r), mode="replicate")
    y = F.conv2d(y, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def random_mask(h: int, w: int, cells: int = 4, edge: float = 0.05) -> torch.Tensor:
    """(1, H, W) mask in [0, 1]: bicubic-upsampled ``cells x cells`` noise, thresholded at its median
    with a soft edge of width ``edge`` (irregular in-focus regions, about half of the image)."""
    noise = torch.rand(1, 1, cells, cells)
    field = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False)[0]
    thr = field.median()
    return torch.clamp((field - thr) / edge + 0.5, 0.0, 1.0)


def focus_pair(
    img: torch.Tensor, sigma: tuple[float, float] = (1.0, 3.0)
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) multi-focus pair of a (C, H, W) image in [0, 1]: complementary blurred regions."""
    m = random_mask(img.shape[-2], img.shape[-1])
    blurred = gaussian_blur(img, _uniform(*sigma))
    return m * img + (1 - m) * blurred, (1 - m) * img + m * blurred


def exposure_pair(
    img: torch.Tensor, under: tuple[float, float] = (0.15, 0.5), over: tuple[float, float] = (2.0, 6.0)
) -> tuple[torch.Tensor, torch.Tensor]:
    """(under, over) exposures of a (C, H, W) image in [0, 1]: gains on gamma-2.2 linear values."""
    lin = img.clamp(0, 1) ** 2.2
    u = (lin * _uniform(*under)).clamp(0, 1) ** (1 / 2.2)
    o = (lin * _uniform(*over)).clamp(0, 1) ** (1 / 2.2)
    return u, o


class NaturalPairs(Dataset):
    """Natural images as synthetic pairs ``{"a", "b", "x"}`` ((C, c, c) tensors in [0, 1]; ``x`` the
    sharp / well-exposed image). ``kind``: ``"focus"`` or ``"exposure"``; ``gray``: one luma
    channel (PIL 'L') instead of RGB. Images are decoded once (8-bit); each item is a random
    ``crop`` window (horizontal flip with probability 1/2) turned into a pair."""

    def __init__(
        self,
        root: str | Path,
        kind: str,
        crop: int = 128,
        gray: bool = True,
        splits: tuple[str, ...] | None = ("train", "test"),
    ):
        from PIL import Image

        from ..data.natural import natural_images

        if kind not in ("focus", "exposure"):
            raise ValueError(f"kind must be 'focus' or 'exposure', got {kind!r}")
        self.kind, self.crop, self.gray = kind, int(crop), bool(gray)
        self.files = natural_images(root, splits)
        self.images = []
        for p in self.files:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)
            arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
            self.images.append(torch.from_numpy(np.array(arr, copy=True, order="C")))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        img = self.images[i]
        h, w = img.shape[-2:]
        c = min(self.crop, h, w)
        top = int(torch.randint(0, h - c + 1, (1,)))
        left = int(torch.randint(0, w - c + 1, (1,)))
        x = img[:, top : top + c, left : left + c].to(torch.float32).div(255.0)
        if bool(torch.randint(0, 2, (1,))):
            x = x.flip(-1)
        a, b = focus_pair(x) if self.kind == "focus" else exposure_pair(x)
        return {"a": a.contiguous(), "b": b.contiguous(), "x": x.contiguous()}
