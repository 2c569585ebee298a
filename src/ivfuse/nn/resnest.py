"""ResNeSt split-attention bottleneck blocks without normalisation (as DeFusion builds them).

H. Zhang et al., "ResNeSt: Split-Attention Networks", arXiv:2004.08955, 2020 (Sec. 3, Fig. 2),
in the configuration of DeFusion's official code (P. Liang et al., ECCV 2022; docs/methods/defusion.md):
radix 2, cardinality 1, bottleneck width ``p`` (output ``4p``), normalisation switched off, ReLU
activations, softmax over the radix axis.

:func:`stage` builds one stage ``RS(p, n, s)``: ``n`` bottleneck blocks of which only the first may
change the channel count or the resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SplitAttention", "Bottleneck", "stage", "stage_on_concat", "init_conv_weights"]


class SplitAttention(nn.Module):
    """Split-attention convolution, radix 2 (ResNeSt Sec. 3.1-3.2).

    A grouped 3x3 convolution ``p -> 2p`` (groups = radix, each path sees half of the input
    channels, no bias) and ReLU give two ``p``-channel splits ``S0``, ``S1``. Their sum is pooled
    globally, passed through ``1x1 p -> r`` (bias) + ReLU + ``1x1 r -> 2p`` (bias), and a softmax
    over the radix axis per channel (logits ``j`` and ``p + j``) gives the weights ``a0``, ``a1``;
    the output is ``a0 S0 + a1 S1``. ``r = max(p * radix / 4, 32)``.
    """

    radix = 2

    def __init__(self, channels: int):
        super().__init__()
        p = channels
        inter = max(p * self.radix // 4, 32)
        self.conv = nn.Conv2d(p, p * self.radix, 3, padding=1, groups=self.radix, bias=False)
        self.fc1 = nn.Conv2d(p, inter, 1)
        self.fc2 = nn.Conv2d(inter, p * self.radix, 1)
        self.channels = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.channels
        s = F.relu(self.conv(x), inplace=True)  # in place: no new full-size buffer
        # slices, not split(): exported to ONNX a Split copies both halves (OpenVINO's reference
        # kernel, ~9 % of DeFusion's time), Slice ops are fused into the element-wise kernel below
        s0, s1 = s[:, :p], s[:, p:]
        # GAP(S0 + S1) = GAP(S0) + GAP(S1): pool first, add the two (N, p, 1, 1) halves after
        pooled = s.mean(dim=(2, 3), keepdim=True)
        gap = pooled[:, :p] + pooled[:, p:]
        logits = self.fc2(F.relu(self.fc1(gap)))  # (N, 2p, 1, 1): radix-major
        n = logits.shape[0]
        attn = logits.reshape(n, self.radix, p, 1, 1).softmax(dim=1)
        return torch.addcmul(attn[:, 0] * s0, attn[:, 1], s1)


class Bottleneck(nn.Module):
    """ResNeSt bottleneck without normalisation: ``ReLU(branch(x) + shortcut(x))``.

    branch: 1x1 conv ``cin -> p`` + ReLU, split attention (``p -> p``), the optional "avd" 3x3
    average pool (stride ``stride``, padding 1, zeros counted) after it, 1x1 conv ``p -> 4p``.
    shortcut (only when ``stride != 1`` or ``cin != 4p``): the "avg-down" form ``AvgPool(stride,
    ceil mode, padding not counted) -> 1x1 conv`` when ``avg_down``, else a strided 1x1 conv;
    identity otherwise. No convolution here has a bias except the attention's two 1x1 layers.
    """

    def __init__(self, cin: int, p: int, stride: int = 1, avd: bool = False, avg_down: bool = True):
        super().__init__()
        cout = 4 * p
        if stride != 1 and not avd:
            raise ValueError("a strided bottleneck needs avd here (DeFusion never strides the 3x3 conv)")
        self.conv1 = nn.Conv2d(cin, p, 1, bias=False)
        self.splat = SplitAttention(p)
        self.avd = nn.AvgPool2d(3, stride, padding=1) if avd else None
        self.conv3 = nn.Conv2d(p, cout, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            if avg_down:
                pool = (
                    nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
                    if stride != 1
                    else nn.Identity()
                )
                self.shortcut = nn.Sequential(pool, nn.Conv2d(cin, cout, 1, bias=False))
            else:
                self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.conv1(x), x if self.shortcut is None else self.shortcut(x))

    def tail(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """The block after its input layers: ``h = conv1(x)`` (before its ReLU) and ``residual =
        shortcut(x)`` given, e.g. computed in a cheaper but equal way by the caller."""
        y = self.splat(F.relu(h, inplace=True))
        if self.avd is not None:
            y = self.avd(y)
        y = self.conv3(y)
        # in place on the fresh conv output (autograd allows it: conv's backward does not read it)
        y += residual
        return F.relu(y, inplace=True)


def stage(
    cin: int, p: int, blocks: int, stride: int = 1, *, avd: bool = False, avg_down: bool = True
) -> nn.Sequential:
    """``RS(p, blocks, stride)``: ``cin -> 4p`` channels; only the first block strides, has the avd
    pool (when ``avd``) and a projection shortcut."""
    layers = [Bottleneck(cin, p, stride, avd=avd, avg_down=avg_down)]
    layers += [Bottleneck(4 * p, p) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def stage_on_concat(stage_: nn.Sequential, parts, distribute: bool = True) -> torch.Tensor:
    """``stage_(cat([f(x) for x, f in parts], dim=1))``: a stage on concatenated inputs.

    Each ``f`` is None or a map that acts on every channel alike and linearly (an upsampling, a
    repetition over the batch), so it commutes with a 1x1 convolution:
    ``W cat_i f_i(x_i) = sum_i f_i(W_i x_i)``, ``W_i`` the slice of ``W``'s input channels that
    part ``i`` occupies. With ``distribute`` the first block's two 1x1 convolutions (``conv1`` and
    the projection shortcut, which must be a stride-1 1x1 convolution) are evaluated that way: on a
    low-resolution input before its upsampling, so the upsampling moves their p + 4p output channels
    instead of the input's (DeFusion's D_u4: 20 instead of 64 channels at full size) and the
    convolution runs on a quarter of the pixels; an input repeated over the batch is convolved
    once. The parameters are the same and the result equals the written order (concatenate, then
    convolve: ``distribute=False``) up to float rounding: an evaluation order, not a new network.
    """
    if not distribute:
        return stage_(torch.cat([x if f is None else f(x) for x, f in parts], dim=1))
    block = stage_[0]
    if not isinstance(block.shortcut, nn.Conv2d) or block.shortcut.stride != (1, 1):
        raise ValueError("distributing needs a stride-1 1x1 projection shortcut")
    h = r = None
    start = 0
    for x, f in parts:
        c = x.shape[1]
        hi = F.conv2d(x, block.conv1.weight[:, start : start + c])
        ri = F.conv2d(x, block.shortcut.weight[:, start : start + c])
        if f is not None:
            hi, ri = f(hi), f(ri)
        h = hi if h is None else h + hi
        r = ri if r is None else r + ri
        start += c
    return stage_[1:](block.tail(h, r))


def init_conv_weights(module: nn.Module) -> None:
    """ResNeSt's initialisation: every conv weight ~ N(0, sqrt(2 / (k * k * C_out))); biases keep
    PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / k))
