"""DeFusion's official test forward (Liang et al., ECCV 2022; see docs/methods/defusion.md): NCHW,
``torch.no_grad``, each source through the encoder and the unique decoder alone, the decoders in the
official order (concatenate, then convolve), inputs reflect-padded by 16 px."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ivfuse.methods.defusion import DeNet

PAD = 16


def official(net: DeNet) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The official test forward: each source through the encoder and the unique decoder alone,
    and the decoders in the official order (concatenate, then convolve: ``distribute`` off), on a
    copy of ``net``."""
    net = copy.deepcopy(net)
    net.distribute = False

    def run(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        size = x1.shape[-2:]
        s1, s2 = net.encoder(x1), net.encoder(x2)
        c = net.ensembler(torch.cat([s1[2], s2[2]], dim=1))
        f_c = net.common_decoder(c, s1, s2, size)
        f_u1 = net.unique_decoder(c, s1, size)
        f_u2 = net.unique_decoder(c, s2, size)
        net.head_unique(f_u1), net.head_unique(f_u2), net.head_unique(f_c)  # the script renders them too
        return net.head_fused(f_u1 + f_u2 + f_c)

    return run


def fuse(fuser) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The official forward on ``fuser``'s network for two planes (replicated to RGB, as the official
    infrared-visible test does), the luma of the result."""
    # the fuser converts its network to channels-last in place; the official code runs NCHW
    run = official(copy.deepcopy(fuser.net).to(memory_format=torch.contiguous_format))
    luma = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)

    def call(ir, vi):
        h, w = ir.shape
        with torch.no_grad():
            t = torch.from_numpy(np.stack([ir, vi]))[:, None].expand(-1, 3, -1, -1)
            t = F.pad(t, (PAD, PAD, PAD, PAD), mode="reflect")
            out = run(t[:1], t[1:])[..., PAD : PAD + h, PAD : PAD + w].clamp(0, 1)
        return np.clip((out * luma).sum(1)[0].numpy(), 0, 1)

    return call
