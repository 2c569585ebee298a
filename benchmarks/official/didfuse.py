"""DIDFuse's official test forward (Zhao et al., IJCAI 2020; see docs/methods/didfuse.md): eval-mode
network with BatchNorm, ``torch.no_grad``, the encoder run once per source, the fusion rule on the
four feature maps, the decoder."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ivfuse.methods.didfuse import DIDFuseNet
from ivfuse.nn.fusion import RULES


def sequential(net: DIDFuseNet, rule: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(1, 1, H, W) tensors -> fused (1, 1, H, W), as the official script computes it."""
    fuse = RULES[rule]

    def run(ir, vi):
        fi, fv = net.encoder(ir), net.encoder(vi)
        return net.decoder(*(fuse(a, b) for a, b in zip(fi, fv, strict=True)))

    return run


def fuse(fuser) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The official forward on ``fuser``'s trained network and rule, on float32 planes."""
    run = sequential(fuser.net, fuser.rule)

    def call(ir, vi):
        with torch.no_grad():
            out = run(torch.from_numpy(ir)[None, None], torch.from_numpy(vi)[None, None])
        return np.clip(out[0, 0].numpy(), 0, 1)

    return call
