"""DIDFuse: our training step against an independent re-statement of the official one.

    python scripts/didfuse_recipe_check.py step  [--data DIR]           # one batch, step by step
    python scripts/didfuse_recipe_check.py bn    [--data DIR] [--out D]  # BN statistics per order
    python scripts/didfuse_recipe_check.py eval  W.safetensors ... [--tno DIR] [--limit N] [--device D]

``step`` builds the official first batch, computes every loss term with ivfuse's
:func:`ivfuse.methods.didfuse.didfuse_loss` and with a separate re-statement of the official
training script (torchvision-style loading: RGB -> centre crop with ``round`` -> 'L' -> /255;
kornia <= 0.4 ``SSIM(11)`` loss with reflect-padded Gaussian filtering; kornia
``SpatialGradient`` with its L1-normalised Sobel kernel and replicate padding; ``nn.MSELoss`` /
``nn.L1Loss`` means; one Adam per sub-network), takes one optimiser step with each and prints
the largest differences: data, loss terms, parameters and BatchNorm running statistics.

``bn`` re-estimates the BatchNorm running statistics of trained weights (default: the shipped
ones) with the official protocol - three epochs of the 8 unshuffled batches, each iteration
encoder(visible), encoder(infrared), decoder(visible), decoder(infrared) in train mode, momentum
0.1, weights frozen - once in ivfuse's former stem order and once in the official ImageFolder
order, and writes one safetensors file per order (the EMA forgets its start: 0.9^48 < 1 %).

``eval`` fuses the 40 TNO pairs of the paper's Table 4 with each weights file (sum rule, output
rounded to 8 bits as the official script's image writer does) and prints the ``ma2019`` EN, MI,
SD, VIF, AG and their difference to the paper's values (which the official outputs reproduce).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from ivfuse.data.training import CenterCropPairs
from ivfuse.methods.didfuse import (
    Config,
    DIDFuse,
    DIDFuseNet,
    load_weights,
    order_pairs,
    training_spec,
)
from ivfuse.methods.registry import weights_path

PAPER_TNO = {"EN": 7.006, "MI": 2.347, "SD": 42.657, "VIF": 0.623, "AG": 4.294}  # Table 4


# ---------------------------------------------------------------------------------------------
# the official step, re-stated independently of ivfuse's loss and data code
# ---------------------------------------------------------------------------------------------


def official_load(path: Path, crop: int = 128) -> torch.Tensor:
    """ImageFolder's loader (RGB) -> CenterCrop (torchvision rounding) -> Grayscale -> ToTensor."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    w, h = im.size
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    im = im.crop((left, top, left + crop, top + crop)).convert("L")
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)[None]


def _gauss_filter(x: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    t = torch.arange(size, dtype=x.dtype) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :])[None, None]
    p = size // 2
    return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), k)


def official_ssim_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """kornia <= 0.4 ``SSIM(11, reduction='mean')``: mean(clamp(1 - SSIM map, 0, 1) / 2)."""
    c1, c2 = 0.01**2, 0.03**2
    mu1, mu2 = _gauss_filter(a), _gauss_filter(b)
    s1 = _gauss_filter(a * a) - mu1**2
    s2 = _gauss_filter(b * b) - mu2**2
    s12 = _gauss_filter(a * b) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return torch.clamp(1.0 - m, 0, 1).div(2).mean()


def official_spatial_gradient(x: torch.Tensor) -> torch.Tensor:
    """kornia ``SpatialGradient()`` (sobel, order 1, normalized): (B, C, 2, H, W)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    k = torch.stack([kx, kx.t()])
    k = k / k.abs().sum(dim=(-1, -2), keepdim=True)
    b, c, h, w = x.shape
    xp = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, k[:, None]).reshape(b, c, 2, h, w)


def official_loss(net: DIDFuseNet, vis: torch.Tensor, ir: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official iteration's forward and loss (train mode), as its script writes it."""
    v1, v2, vb, vd = net.encoder(vis)
    i1, i2, ib, idd = net.encoder(ir)
    rv = net.decoder(v1, v2, vb, vd)
    ri = net.decoder(i1, i2, ib, idd)
    mse, l1 = nn.MSELoss(), nn.L1Loss()
    t = {
        "pixel_vi": mse(vis, rv),
        "dssim_vi": official_ssim_loss(vis, rv),
        "pixel_ir": mse(ir, ri),
        "dssim_ir": official_ssim_loss(ir, ri),
        "gap_background": torch.tanh(l1(ib, vb)),
        "gap_detail": torch.tanh(l1(idd, vd)),
        "gradient": l1(official_spatial_gradient(vis), official_spatial_gradient(rv)),
    }
    t["total"] = (
        2 * (5 * t["dssim_vi"] + t["pixel_vi"])
        + 2 * (5 * t["dssim_ir"] + t["pixel_ir"])
        + t["gap_background"]
        - 0.5 * t["gap_detail"]
        + 10 * t["gradient"]
    )
    return t


def cmd_step(args: argparse.Namespace) -> None:
    data = Path(args.data)
    torch.manual_seed(0)
    ds = order_pairs(CenterCropPairs(data, crop=128), "imagefolder")
    stems = [p.stem for p in ds.pairs]
    first = stems[:24]
    print("official first batch:", " ".join(first))
    print("official last batch: ", " ".join(stems[168:]))
    # data: ImageFolder loading of the same files vs ivfuse's CenterCropPairs
    vis = torch.stack([official_load(data / "vi" / f"{s}.jpg") for s in first])
    ir = torch.stack([official_load(data / "ir" / f"{s}.jpg") for s in first])
    print(f"data: max |official - ivfuse| visible {float((vis - ds.vi[:24]).abs().max()):.2e}, "
          f"infrared {float((ir - ds.ir[:24]).abs().max()):.2e}")  # fmt: skip
    # loss terms on one freshly initialised network (identical copies)
    spec = training_spec(Config())
    torch.manual_seed(0)
    ours = DIDFuseNet().train()
    theirs = copy.deepcopy(ours)
    t_ours = spec.stages[0].loss(ours, {"vi": ds.vi[:24], "ir": ds.ir[:24]})
    t_off = official_loss(theirs, vis, ir)
    for k in t_off:
        a, b = float(t_ours[k].detach()), float(t_off[k].detach())
        print(f"loss {k:15s} ivfuse {a:.7f} official {b:.7f} rel.diff {abs(a - b) / max(abs(b), 1e-12):.1e}")
    with torch.no_grad():  # float32 rounding of the SSIM (E[x^2] - mu^2): float64 as the referee
        probe = copy.deepcopy(theirs)  # same output (train mode: batch statistics), own BN buffers
        ref = float(official_ssim_loss(vis.double(), probe.decoder(*probe.encoder(vis)).double()))
    d_ours, d_off = (abs(float(t["dssim_vi"].detach()) - ref) for t in (t_ours, t_off))
    print(f"dssim_vi in float64 {ref:.7f}: |ivfuse - f64| {d_ours:.1e}, |official - f64| {d_off:.1e}")
    # one optimiser step each: ivfuse's stage optimiser vs one Adam per sub-network
    opt = spec.stages[0].optimizer(ours.parameters())
    opt.zero_grad()
    t_ours["total"].backward()
    opt.step()
    o1 = torch.optim.Adam(theirs.encoder.parameters(), lr=1e-3)
    o2 = torch.optim.Adam(theirs.decoder.parameters(), lr=1e-3)
    o1.zero_grad()
    o2.zero_grad()
    t_off["total"].backward()
    o1.step()
    o2.step()
    sa, sb = ours.state_dict(), theirs.state_dict()
    # conv biases feed a BatchNorm, which removes them: their gradient is rounding noise, and Adam's
    # first step moves every parameter by about lr * sign(gradient), so they are reported apart
    names = [k for k, _ in ours.named_parameters()]
    dw = max(float((sa[k] - sb[k]).abs().max()) for k in names if not k.endswith("conv.bias"))
    dcb = max(float((sa[k] - sb[k]).abs().max()) for k in names if k.endswith("conv.bias"))
    db = max(float((sa[k] - sb[k]).abs().max()) for k in sa if "running" in k)
    print(f"after one step: max |diff| conv weights, BN affine, PReLU {dw:.2e}; conv biases (noise "
          f"before BN, lr = 1e-3) {dcb:.2e}; BN running stats {db:.2e}, "
          f"BN updates {int(sa['encoder.conv1.bn.num_batches_tracked'])} (official: 2 per step)")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# BatchNorm statistics by batch order
# ---------------------------------------------------------------------------------------------


def reestimate_bn(
    net: DIDFuseNet, vi: torch.Tensor, ir: torch.Tensor, epochs: int = 3, bs: int = 24
) -> DIDFuseNet:
    """Copy of ``net`` whose BN running statistics come from ``epochs`` passes of the official
    protocol over the batches of ``vi``/``ir`` in their order (weights unchanged)."""
    n = copy.deepcopy(net).train()
    with torch.no_grad():
        for _ in range(epochs):
            for s in range(0, len(vi), bs):
                fv = n.encoder(vi[s : s + bs])
                fi = n.encoder(ir[s : s + bs])
                n.decoder(*fv)
                n.decoder(*fi)
    return n.eval()


def cmd_bn(args: argparse.Namespace) -> None:
    net, meta = load_weights(args.weights)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = net.state_dict()
    for order in ("stem", "imagefolder"):
        ds = order_pairs(CenterCropPairs(args.data, crop=128), order)
        r = reestimate_bn(net, ds.vi, ds.ir)
        st = r.state_dict()
        diffs = {
            k: float((st[k] - base[k]).abs().mean() / base[k].abs().mean()) for k in base if "running" in k
        }
        worst = max(diffs, key=diffs.get)
        c7 = "decoder.conv7.bn.running_"
        print(f"{order}: last batch {' '.join(p.stem for p in ds.pairs[168:])}; mean rel. change of the "
              f"running stats vs the weights' own: max {diffs[worst]:.4f} ({worst}); conv7 BN mean/var "
              f"{float(st[c7 + 'mean']):.4f}/{float(st[c7 + 'var']):.4f} "
              f"(weights: {float(base[c7 + 'mean']):.4f}/{float(base[c7 + 'var']):.4f})")  # fmt: skip
        path = out / f"didfuse_bn_{order}.safetensors"
        save_file({k: v.contiguous() for k, v in st.items()}, str(path), metadata=meta)
        print(f"  -> {path}")


# ---------------------------------------------------------------------------------------------
# TNO-40 against the paper's Table 4
# ---------------------------------------------------------------------------------------------


def tno_metrics(weights: str, tno: Path, limit: int | None = None, device: str = "cpu") -> dict[str, float]:
    from ivfuse.metrics import evaluate

    net, _ = load_weights(weights, device=device)
    fuser = DIDFuse(net, rule="sum", device=device)
    stems = sorted(p.stem for p in (tno / "ir").glob("*.png"))[:limit]
    vals = []
    for s in stems:
        ir8 = np.asarray(Image.open(tno / "ir" / f"{s}.png").convert("L"))
        vi8 = np.asarray(Image.open(tno / "vi" / f"{s}.png").convert("L"))
        fused = fuser.fuse(ir8.astype(np.float32) / 255, vi8.astype(np.float32) / 255)
        f8 = np.round(np.clip(fused, 0, 1) * 255).astype(np.uint8)
        vals.append(evaluate(f8, ir8, vi8, metrics=list(PAPER_TNO), profile="ma2019"))
    return {k: float(np.mean([v[k] for v in vals])) for k in PAPER_TNO}


def cmd_eval(args: argparse.Namespace) -> None:
    for w in args.weights:
        t = time.perf_counter()
        m = tno_metrics(w, Path(args.tno), args.limit, args.device)
        cells = " ".join(f"{k} {m[k]:.4g} ({100 * (m[k] / PAPER_TNO[k] - 1):+.1f} %)" for k in PAPER_TNO)
        print(f"{w}: {cells}  [{time.perf_counter() - t:.0f} s]", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("step")
    a.add_argument("--data", default="../shared/data/flir_train")
    a = sub.add_parser("bn")
    a.add_argument("--data", default="../shared/data/flir_train")
    a.add_argument("--weights", default=str(weights_path("didfuse.safetensors")))
    a.add_argument("--out", default="runs/didfuse_recipe_check")
    a = sub.add_parser("eval")
    a.add_argument("weights", nargs="+")
    a.add_argument("--tno", default="../shared/data/tno")
    a.add_argument("--limit", type=int, default=None, help="first N pairs only (default: all 40)")
    a.add_argument("--device", default="cpu", help="cpu or cuda[:N] for the fusion (metrics on the CPU)")
    args = ap.parse_args()
    {"step": cmd_step, "bn": cmd_bn, "eval": cmd_eval}[args.cmd](args)


if __name__ == "__main__":
    main()
