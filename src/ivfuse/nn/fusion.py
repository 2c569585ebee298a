"""Feature-map fusion rules shared by the auto-encoder methods.

Each rule takes two feature tensors ``(N, C, H, W)`` of equal shape and returns their fusion.
All rules are symmetric in their two arguments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["RULES", "fuse_sum", "fuse_average", "fuse_l1", "l1_activity"]


def fuse_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise addition ``a + b``."""
    return a + b


def fuse_average(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Weighted average with equal weights ``0.5 a + 0.5 b``."""
    return (a + b) / 2


def l1_activity(x: torch.Tensor, box: int = 3) -> torch.Tensor:
    """Activity map ``(N, 1, H, W)``: ``box x box`` mean (zero padding) of ``sum_c |x_c|``."""
    a = x.abs().sum(dim=1, keepdim=True)
    return F.avg_pool2d(a, box, stride=1, padding=box // 2, count_include_pad=True)


def fuse_l1(a: torch.Tensor, b: torch.Tensor, box: int = 3) -> torch.Tensor:
    """L1-norm rule [Li & Wu, DenseFuse, TIP 2019]: weights ``A_k / (A_1 + A_2)`` per pixel.

    ``A_k`` is :func:`l1_activity`; the same weight map multiplies every channel. Where both
    activities are exactly 0 (the ratio is undefined) the two inputs get equal weights.
    """
    aa, ab = l1_activity(a, box), l1_activity(b, box)
    den = aa + ab
    zero = den == 0
    safe = torch.where(zero, torch.ones_like(den), den)
    half = torch.full_like(den, 0.5)
    wa = torch.where(zero, half, aa / safe)
    wb = torch.where(zero, half, ab / safe)
    return wa * a + wb * b


RULES = {"sum": fuse_sum, "average": fuse_average, "l1": fuse_l1}
