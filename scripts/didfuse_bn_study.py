"""How much do DIDFuse's BatchNorm running statistics move its TNO metrics?

    python scripts/didfuse_bn_study.py [--weights W.safetensors] [--data DIR] [--out DIR]

At test time DIDFuse's BatchNorm layers use running statistics, an exponential average
(momentum 0.1) over the *last few* training batches of both modalities - in the official
recipe the last update comes from the final infrared batch of 12 images. This script replaces
them with population statistics of the whole training set and writes one weights file per
variant, so ``ivfuse bench`` can score each
(``--methods didfuse@weights=OUT/didfuse_pop-both.safetensors,...``):

  pop-both   mean/variance over all 180 crops of both modalities (what the EMA approximates)
  pop-vi     the visible crops only
  pop-ir     the infrared crops only

Statistics are recomputed by forward passes in train mode with ``momentum=None`` (a cumulative
average over the batches, as "precise BN" and ``torch.optim.swa_utils.update_bn`` do), over the
batches of the recipe (24 crops, not shuffled), each modality through the encoder on its own as
in training; the decoder sees each modality's own reconstruction pass.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from safetensors.torch import save_file

from ivfuse.data.training import CenterCropPairs
from ivfuse.methods.didfuse import load_weights
from ivfuse.methods.registry import weights_path


def recalibrate(net: torch.nn.Module, batches: list[torch.Tensor]) -> torch.nn.Module:
    """Copy of ``net`` whose BN running statistics are the cumulative average over ``batches``."""
    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average = population statistics
    net.train()
    with torch.no_grad():
        for x in batches:
            f1, f2, b, d = net.encoder(x)
            net.decoder(f1, f2, b, d)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(weights_path("didfuse.safetensors")))
    ap.add_argument("--data", default="/work/shared/data/flir_train")
    ap.add_argument("--out", default="runs/bn_study")
    ap.add_argument("--batch-size", type=int, default=24)
    args = ap.parse_args()
    net, meta = load_weights(args.weights)
    ds = CenterCropPairs(args.data, crop=128)
    bs = args.batch_size
    split = {k: [t[i : i + bs] for i in range(0, len(t), bs)] for k, t in (("vi", ds.vi), ("ir", ds.ir))}
    variants = {
        "pop-both": [b for pair in zip(split["vi"], split["ir"], strict=True) for b in pair],
        "pop-vi": split["vi"],
        "pop-ir": split["ir"],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bn0 = net.encoder.conv2.bn
    print(f"shipped: conv2 BN mean |running_mean| {bn0.running_mean.abs().mean():.4f}, "
          f"mean running_var {bn0.running_var.mean():.4f}")  # fmt: skip
    for name, batches in variants.items():
        r = recalibrate(net, batches)
        bn = r.encoder.conv2.bn
        path = out / f"didfuse_{name}.safetensors"
        state = {k: v.contiguous() for k, v in r.state_dict().items()}
        save_file(state, str(path), metadata=meta)
        print(f"{name}: conv2 BN mean |running_mean| {bn.running_mean.abs().mean():.4f}, "
              f"mean running_var {bn.running_var.mean():.4f} -> {path}")  # fmt: skip


if __name__ == "__main__":
    main()
