"""SSL-WAEIE: self-supervised IVIF with a weighted auto-encoder and convolutional information exchange.

The source is a letter to the editor (title, authors and venue not given; see
docs/methods/sslwaeie.md). Its Fig. 1 is not in the text, so the widths below are ours (see :class:`Config`).

The idea: the fused image is a per-pixel weighted sum of the sources (Eq. 1),
``F = tau_i * I_i + tau_v * I_v``. The weights come from *information exchange*: a source that
receives more information from the other one contributes less (the inverse proportional rule,
Eq. 7-8). Two networks, trained in two stages:

1. **WAE** (weighted auto-encoder, Eq. 2-3): a Siamese encoder of three full-resolution
   convolution blocks gives multi-level features ``F^(1..3)`` of each source; a decoder of the
   same shape reconstructs the image. Stage 1 trains it on the weighted reconstruction loss
   (Eq. 9-11).
2. **CIEN** (Eq. 4-8): the information exchange encoder (IEE, one IEM-CNN per level) turns each
   pair of features into a pair of exchanged informations ``dE_i^(l), dE_v^(l)``; the
   contribution estimation decoder (CED, Siamese) reduces the concatenated levels to single-
   channel ``dE_i, dE_v``; ``tau_i = dE_v / (dE_i + dE_v)``. Stage 2 trains CIEN on the loss of
   Eq. (12)-(14) while the WAE is fine-tuned at a tenth of the learning rate.

At test time only the encoder and CIEN run; the decoder serves the auxiliary task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..nn import parameter_count  # noqa: F401  (ivfuse.methods.sslwaeie.parameter_count)
from ..nn.losses import ssim_map
from ._config import Ablation, MethodConfig
from ._torch import (
    GraphSpec,
    StepModule,
    TorchFuser,
    config_of,
    load_state,
    planes,
    read_weights,
    run_batch,
    run_planes,
    shipped,
    tiled,
)
from .registry import register

PAPER = (
    "SSL-WAEIE: self-supervised infrared-visible fusion with a weighted auto-encoder and a "
    "convolutional information exchange network (letter; authors and venue not stated)"
)
WEIGHTS_FILE = "sslwaeie.safetensors"
LABEL = "SSL-WAEIE"

NETWORKS = ("iee", "no_iee", "sl_iee")
LOSSES = ("cien", "wf", "f")
IE_FORMS = ("normalized", "paper", "tanh")


# --------------------------------------------------------------------------------------------
# Hyper-parameters
# --------------------------------------------------------------------------------------------


@dataclass
class Config(MethodConfig):
    """SSL-WAEIE hyper-parameters. Defaults: the letter where it speaks, our choices elsewhere.

    From the letter: Adam with beta1 0.5, beta2 0.999, eps 1e-8, learning rate 2e-5, the WAE at a
    tenth of it while fine-tuning (stage 2); ``lam`` = 5 (Eq. 9); ``mu`` = 10 (Eq. 12, Table 3);
    16 TNO training pairs; three CB-I blocks per WAE branch, three IEM-CNNs, three CB-III blocks
    in the CED; 3x3 kernels.

    Our choices (the letter's Fig. 1 is missing from the text):

    * Widths ``channels`` = C_1..C_3 of the WAE encoder levels = (16, 32, 32); the decoder
      mirrors them (C_3 -> C_2 -> C_1 -> 1). CED widths ``ced_channels`` = (32, 16, 8): block k
      maps its input to ``ced_channels[k]`` channels, the last block's second convolution to 1.
      Small, because everything runs at full resolution and the recipe must train on a 2-core
      CPU; the fused image is a weighted sum of the sources, so capacity only shapes tau.
    * A CB-I block is conv3x3 -> conv3x3 -> ReLU (the letter: "two 2D convolutions and a ReLU");
      a CB-III block is conv3x3 -> conv3x3 -> BatchNorm -> ReLU; an IEM-CNN (CB-II) is one
      conv3x3 (2 C_l -> 2 C_l) + ReLU (Eq. 4). Reflection padding of 1 px in every convolution
      (no border seams in tau), biases on, PyTorch's default initialisation.
    * The decoder reconstructs from ``F^(3)`` alone (the letter: "channel reduction of inputs").
    * The Siamese CED runs both branches as one batch, so its BatchNorm normalises dE_i and dE_v
      with the same statistics; separate statistics would erase their relative scale, which is
      all tau depends on.
    * Norms: the letter's ``||.||_2^2`` in Eq. (10) and (13) is a plain sum while Eq. (14)
      divides by MN. Summed, L_wf would outweigh mu L_IE by a factor MN (16,384 for a 128 x 128
      crop) and mu = 10 would mean nothing, so every term is a per-pixel mean: L_w-WAE and L_wf
      average the squared weighted errors over pixels, L_IE is ``(1/MN) sum_l sum_c``
      (channels summed, pixels averaged) exactly as Eq. (14); all averaged over the batch.
    * Guards: ``W_i = I_i / (I_i + I_v)`` is set to 1/2 where both sources are black (0/0: no
      evidence for either). ``tau_i = (dE_v + eps) / (dE_i + dE_v + 2 eps)`` with ``eps`` =
      1e-6, so tau_i = 1/2 where both exchanged informations vanish, and ``tau_v = 1 - tau_i``
      (they sum to one exactly; both lie in [0, 1] because dE >= 0 after the ReLU).
    * Where both energies are *tiny* the ratio of Eq. (7) is decided by rounding noise (it flipped
      between 0 and 1, 102 gray levels on the fused image, between a CPU and a GPU). So
      (:func:`stable_tau`): with ``S = dE_i + dE_v`` and ``T = tiny * mean(S)`` (the mean over
      the image, per sample: its energy scale; ``tiny`` = 1e-2), tau_i is Eq. (7) as above where
      ``S >= 2 T``, 1/2 where ``S <= T``, and blended between them by a smoothstep of ``S / T - 1``
      in between: symmetric (swapping the sources gives 1 - tau_i), continuous, and a perturbation
      of the input moves tau_i by at most about ``|dS| / T``. The mean is over the whole image
      (tiles cover energies only), so CPU, GPU, tiles and every backend compute the same tau_i.
      Measured with the shipped weights (CPU, fp32): on TNO 001 and 020, 39 % and 36 % of the
      pixels have ``S < 2 T`` (033: 0.1 %; the share hardly changes between ``tiny`` 1e-3 and
      1e-2: these energies are near zero, not small); there the old map differed from the new by
      up to 64 gray levels on the fused image and a +-1e-6 perturbation of the infrared input moved
      the old result by up to 6.0 gray levels; it moves the new one by at most 0.063 (0.32 with
      ``tiny`` = 1e-3, hence 1e-2). Where ``S >= 2 T`` the result is the old one exactly.
    * Stage 2 trains CIEN on L_CIEN and fine-tunes the WAE *encoder* through it at
      ``finetune_factor`` x lr; the decoder gets no gradient from L_CIEN (the letter gives no
      reconstruction term for stage 2) and keeps its stage-1 weights.
    * ``ie_form`` (L_IE, see :func:`information_exchange`): ``"paper"`` is Eq. (14) as printed.
      It ran away in our first run (same stage 1): its epoch mean went -122, -265, -547, -1057
      in the first four epochs of stage 2, doubling every epoch (growing IEM and encoder weights,
      not a better exchange), while L_wf went 0.0131 -> 0.0083. ``"tanh"`` bounds it, but the
      per-level terms of the pre-trained features start at 0.7, 6.7 and 92, so tanh is saturated
      at two of the three levels from the first step. The default ``"normalized"`` divides each
      level's ``||dE_i - dE_v||^2`` by ``||dE_i||^2 + ||dE_v||^2``: bounded in [-3, 0] and
      scale-free, so only a real difference of the exchanged informations lowers it.

    Training schedule (the letter gives no epochs): ``wae_epochs`` and ``cien_epochs`` epochs of
    ``crops_per_pair`` random ``crop`` x ``crop`` crops (random horizontal flips) of each
    training pair, batch ``batch_size``; chosen so both losses converge within about two hours
    on one CPU thread (numbers and curves in the weights card).

    Ablations of Table 4: ``network`` = ``"iee"`` (ours), ``"no_iee"`` (the WAE features go
    straight into the CED: dE^(l) := F^(l)), ``"sl_iee"`` (one IEM-CNN on the last level only,
    the CED sees level 3 only); ``pretrain=False`` is No-WAE (no stage 1; the encoder trains
    from scratch at the full learning rate in stage 2); ``loss`` = ``"cien"`` (L_wf + mu L_IE),
    ``"wf"`` (L2 = L_wf, no L_IE), ``"f"`` (L1 = L_f, unweighted fidelity, no L_IE).
    """

    channels: tuple[int, ...] = (16, 32, 32)
    ced_channels: tuple[int, ...] = (32, 16, 8)
    lam: float = 5.0  # SSIM weight, Eq. (9)
    mu: float = 10.0  # information exchange weight, Eq. (12), Table 3
    ssim_window: int = 11
    eps: float = 1e-6  # guard of tau, Eq. (7)-(8)
    tiny: float = 1e-2  # energies below tiny x the image's mean energy: tau_i -> 1/2 (stable_tau)
    ie_form: str = "normalized"  # "normalized" (bounded, scale-free) | "paper" (Eq. 14) | "tanh"
    network: str = "iee"  # "iee" | "no_iee" | "sl_iee" (Table 4)
    loss: str = "cien"  # "cien" | "wf" (L2) | "f" (L1) (Table 4)
    pretrain: bool = True  # False: the No-WAE ablation
    # optimisation
    lr: float = 2e-5
    betas: tuple[float, float] = (0.5, 0.999)
    adam_eps: float = 1e-8
    finetune_factor: float = 0.1  # WAE learning rate in stage 2, relative to lr
    wae_epochs: int = 40
    cien_epochs: int = 60
    #: CLI ``--epochs N``: total over both stages; stage 1 keeps ``wae_epochs`` when N exceeds it
    #: (so a resumed run can lengthen or shorten stage 2), else both shrink in proportion
    epochs: int | None = None
    batch_size: int = 8
    crop: int = 64
    crops_per_pair: int = 16
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.ced_channels = tuple(int(c) for c in self.ced_channels)
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if len(self.channels) != 3 or len(self.ced_channels) != 3:
            raise ValueError("channels and ced_channels need three widths (three blocks each)")
        for name, value, allowed in (
            ("network", self.network, NETWORKS),
            ("loss", self.loss, LOSSES),
            ("ie_form", self.ie_form, IE_FORMS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.epochs is not None:
            n = int(self.epochs)
            if n < 1:
                raise ValueError(f"epochs must be positive, got {n}")
            if n <= self.stage1_epochs:  # a short run: both stages shrink in proportion
                self.wae_epochs = max(1, round(n * self.wae_epochs / (self.wae_epochs + self.cien_epochs)))
            self.cien_epochs = n - self.stage1_epochs
            self.epochs = None

    @property
    def stage1_epochs(self) -> int:
        return self.wae_epochs if self.pretrain else 0


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")


class CB1(nn.Module):
    """CB-I of the WAE: conv3x3 -> conv3x3 -> ReLU (``out="sigmoid"``: the image output)."""

    def __init__(self, cin: int, cmid: int, cout: int, out: str = "relu"):
        super().__init__()
        self.conv1 = conv3x3(cin, cmid)
        self.conv2 = conv3x3(cmid, cout)
        self.act = torch.sigmoid if out == "sigmoid" else torch.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)))


class CB3(nn.Module):
    """CB-III of the CED: conv3x3 -> conv3x3 -> BatchNorm -> ReLU."""

    def __init__(self, cin: int, cmid: int, cout: int):
        super().__init__()
        self.conv1 = conv3x3(cin, cmid)
        self.conv2 = conv3x3(cmid, cout)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv2(self.conv1(x))))


class WAE(nn.Module):
    """Weighted auto-encoder: encoder of three CB-I (Eq. 2-3), mirrored decoder."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 32)):
        super().__init__()
        c1, c2, c3 = channels
        self.encoder = nn.ModuleList([CB1(1, c1, c1), CB1(c1, c2, c2), CB1(c2, c3, c3)])
        self.decoder = nn.ModuleList([CB1(c3, c2, c2), CB1(c2, c1, c1), CB1(c1, c1, 1, out="sigmoid")])

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[F^(1), F^(2), F^(3)]`` with ``F^(0) = x`` (Eq. 2-3), all at full resolution."""
        feats = []
        for block in self.encoder:
            x = block(x)
            feats.append(x)
        return feats

    def decode(self, f3: torch.Tensor) -> torch.Tensor:
        for block in self.decoder:
            f3 = block(f3)
        return f3


class IEM(nn.Module):
    """IEM-CNN (CB-II), Eq. (4): ``dE_i, dE_v = split(ReLU(conv3x3(F_i o F_v)))``."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = conv3x3(2 * c, 2 * c)

    def forward(self, fi: torch.Tensor, fv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = torch.relu(self.conv(torch.cat([fi, fv], dim=1)))
        de_i, de_v = torch.chunk(e, 2, dim=1)
        return de_i, de_v


class CIEN(nn.Module):
    """Information exchange encoder (IEE) + contribution estimation decoder (CED), Eq. (4)-(8)."""

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 32),
        ced_channels: tuple[int, ...] = (32, 16, 8),
        network: str = "iee",
        eps: float = 1e-6,
        tiny: float = 1e-2,
    ):
        super().__init__()
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
        self.network = network
        self.eps = eps
        self.tiny = tiny
        #: encoder levels whose (exchanged) information the CED sees
        self.levels = [2] if network == "sl_iee" else [0, 1, 2]
        if network == "no_iee":
            self.iee = nn.ModuleList()
        else:
            self.iee = nn.ModuleList([IEM(channels[lv]) for lv in self.levels])
        k1, k2, k3 = ced_channels
        cin = sum(channels[lv] for lv in self.levels)
        self.ced = nn.ModuleList([CB3(cin, k1, k1), CB3(k1, k2, k2), CB3(k2, k3, 1)])

    def exchange(self, fi: list[torch.Tensor], fv: list[torch.Tensor]):
        """Per-level pairs ``(dE_i^(l), dE_v^(l))`` (Eq. 4); No-IEE passes the features through."""
        if self.network == "no_iee":
            return [(fi[lv], fv[lv]) for lv in self.levels]
        return [iem(fi[lv], fv[lv]) for iem, lv in zip(self.iee, self.levels, strict=True)]

    def decode(self, pairs) -> tuple[torch.Tensor, torch.Tensor]:
        """Siamese CED (Eq. 5-6) on both branches at once (one batch, shared BN statistics)."""
        n = pairs[0][0].shape[0]
        x = torch.cat(
            [torch.cat([p[0] for p in pairs], dim=1), torch.cat([p[1] for p in pairs], dim=1)], dim=0
        )
        for block in self.ced:
            x = block(x)
        return x[:n], x[n:]

    def contributions(self, de_i: torch.Tensor, de_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (7)-(8), guarded and stable (:func:`stable_tau`); ``tau_v = 1 - tau_i``."""
        tau_i = stable_tau(de_i, de_v, self.eps, self.tiny)
        return tau_i, 1.0 - tau_i

    def forward(self, fi: list[torch.Tensor], fv: list[torch.Tensor]) -> dict[str, Any]:
        pairs = self.exchange(fi, fv)
        de_i, de_v = self.decode(pairs)
        tau_i, tau_v = self.contributions(de_i, de_v)
        return {"exchanged": pairs, "dE_i": de_i, "dE_v": de_v, "tau_i": tau_i, "tau_v": tau_v}


def guarded_tau(de_i: torch.Tensor, de_v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. (7) with the ``eps`` guard alone: ``(dE_v + eps) / (dE_i + dE_v + 2 eps)`` (the formula
    before :func:`stable_tau`; unstable where both energies are tiny but not zero)."""
    return (de_v + eps) / (de_i + de_v + 2 * eps)


def stable_tau(de_i: torch.Tensor, de_v: torch.Tensor, eps: float = 1e-6, tiny: float = 1e-2) -> torch.Tensor:
    """tau_i of Eq. (7), numerically stable (see :class:`Config`, "Guards").

    ``S = dE_i + dE_v``, ``T = tiny * mean(S)`` per sample (over channels and pixels, computed in
    float64 so every device sums alike; ``T`` >= 1e-30). :func:`guarded_tau` where ``S >= 2 T``,
    1/2 where ``S <= T``, ``1/2 + w (guarded_tau - 1/2)`` with ``w = smoothstep(S / T - 1)`` in
    between. Symmetric: swapping dE_i and dE_v gives ``1 - tau_i``."""
    s = de_i + de_v
    dims = tuple(range(1, s.dim()))
    scale = s.detach().double().mean(dim=dims, keepdim=True) if dims else s.detach().double()
    thr = (scale * tiny).clamp_min(1e-30).to(s.dtype)
    x = (s / thr - 1.0).clamp(0.0, 1.0)
    w = x * x * (3.0 - 2.0 * x)  # smoothstep: 0 for S <= T, 1 for S >= 2 T
    g = guarded_tau(de_i, de_v, eps)
    return torch.where(w >= 1.0, g, 0.5 + w * (g - 0.5))  # exactly Eq. (7) where S >= 2 T


class SSLWAEIENet(nn.Module):
    """WAE + CIEN. ``forward(ir, vi, phase)``: ``"wae"`` (stage 1) or ``"cien"`` (stage 2)."""

    def __init__(self, cfg: Config | None = None):
        super().__init__()
        cfg = cfg or Config()
        self.wae = WAE(cfg.channels)
        self.cien = CIEN(cfg.channels, cfg.ced_channels, cfg.network, cfg.eps, cfg.tiny)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor, phase: str = "cien") -> dict[str, Any]:
        if phase == "wae":
            # Siamese: one encoder pass over both sources stacked along the batch
            n = ir.shape[0]
            f3 = self.wae.encode(torch.cat([ir, vi], dim=0))[-1]
            rec = self.wae.decode(f3)
            return {"ir_hat": rec[:n], "vi_hat": rec[n:]}
        if phase != "cien":
            raise ValueError(f"phase must be 'wae' or 'cien', got {phase!r}")
        out = self.cien(self.wae.encode(ir), self.wae.encode(vi))
        out["fused"] = out["tau_i"] * ir + out["tau_v"] * vi  # Eq. (1)
        return out

    def tau(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """Contribution map ``tau_i`` of the infrared image (inference)."""
        return self.cien(self.wae.encode(ir), self.wae.encode(vi))["tau_i"]

    def energies(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """``(dE_i, dE_v)`` as one (N, 2, H, W) tensor (inference: the tiled, exported step; tau_i
        comes from them over the whole image, :func:`stable_tau`)."""
        cien = self.cien
        de_i, de_v = cien.decode(cien.exchange(self.wae.encode(ir), self.wae.encode(vi)))
        return torch.cat([de_i, de_v], dim=1)


# --------------------------------------------------------------------------------------------
# Losses (Eq. 9-14)
# --------------------------------------------------------------------------------------------


def source_weights(ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``W_i = I_i / (I_i + I_v)`` (1/2 where both are 0), ``W_v = 1 - W_i`` (after Eq. 10)."""
    s = ir + vi
    w_i = torch.where(s > 0, ir / torch.where(s > 0, s, torch.ones_like(s)), torch.full_like(s, 0.5))
    return w_i, 1.0 - w_i


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Mean SSIM [20] (Gaussian window, sigma 1.5, reflect border) of batches in [0, 1]."""
    return ssim_map(x, y, window_size=window).mean()


def wae_loss(cfg: Config, ir: torch.Tensor, vi: torch.Tensor, out: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Eq. (9)-(11): ``L_WAE = L_w-WAE + lam L_ssim`` (per-pixel means, see :class:`Config`)."""
    w_i, w_v = source_weights(ir, vi)
    t = {
        "w_rec": ((w_i * (out["ir_hat"] - ir)) ** 2).mean() + ((w_v * (out["vi_hat"] - vi)) ** 2).mean(),
        "ssim_loss": 2.0
        - ssim(out["ir_hat"], ir, cfg.ssim_window)
        - ssim(out["vi_hat"], vi, cfg.ssim_window),
    }
    t["total"] = t["w_rec"] + cfg.lam * t["ssim_loss"]
    return t


def information_exchange(pairs, form: str = "paper") -> torch.Tensor:
    """L_IE over the levels' pairs ``(dE_i^(l), dE_v^(l))``, averaged over the batch.

    * ``"paper"``: Eq. (14), ``-(1/MN) sum_l ||dE_i^(l) - dE_v^(l)||^2`` (channels summed,
      pixels averaged). Unbounded below: growing the IEM weights grows it without limit.
    * ``"tanh"``: ``-sum_l tanh((1/MN) ||dE_i^(l) - dE_v^(l)||^2)``, in [-L, 0].
    * ``"normalized"``: ``-sum_l ||dE_i^(l) - dE_v^(l)||^2 / (||dE_i^(l)||^2 + ||dE_v^(l)||^2)``
      per sample, in [-L, 0] (dE >= 0 after the ReLU, so ``(a - b)^2 <= a^2 + b^2``); invariant
      to the scale of dE, so it rewards different exchanged informations, not larger ones.
    """
    total = 0.0
    for de_i, de_v in pairs:
        sq = (de_i - de_v) ** 2
        if form == "normalized":
            num = sq.flatten(1).sum(1)
            den = (de_i**2 + de_v**2).flatten(1).sum(1)
            total = total + (num / (den + 1e-12)).mean()
            continue
        per_pixel = sq.sum(dim=1).mean()  # sum over channels, mean over batch and pixels
        total = total + (torch.tanh(per_pixel) if form == "tanh" else per_pixel)
    return -total


def cien_loss(
    cfg: Config, ir: torch.Tensor, vi: torch.Tensor, out: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Eq. (12)-(14): ``L_CIEN = L_wf + mu L_IE``; ablations L1 = L_f and L2 = L_wf (Table 4)."""
    f = out["fused"]
    if cfg.loss == "f":
        w_i = w_v = torch.ones_like(ir)
    else:
        w_i, w_v = source_weights(ir, vi)
    fid = ((w_i * (f - ir)) ** 2).mean() + ((w_v * (f - vi)) ** 2).mean()
    ie = information_exchange(out["exchanged"], cfg.ie_form)
    t = {"fidelity": fid, "info_exchange": ie, "tau_i_mean": out["tau_i"].mean().detach()}
    t["total"] = fid + cfg.mu * ie if cfg.loss == "cien" else fid + 0.0 * ie
    return t


# --------------------------------------------------------------------------------------------
# Training spec for ivfuse.train
# --------------------------------------------------------------------------------------------


def training_spec(config: Config | None = None):
    """Both stages as a :class:`ivfuse.train.spec.TrainSpec` (stage 1 skipped for No-WAE)."""
    from torch.utils.data import ConcatDataset

    from ..data.training import RandomCropPairs
    from ..train.spec import Stage, TrainSpec

    cfg = config or Config()

    def adam(groups):
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps)

    def loss_wae(model, batch):
        return wae_loss(cfg, batch["ir"], batch["vi"], model(batch["ir"], batch["vi"], "wae"))

    def loss_cien(model, batch):
        return cien_loss(cfg, batch["ir"], batch["vi"], model(batch["ir"], batch["vi"], "cien"))

    def wae_params(model):
        return [{"name": "wae", "params": list(model.wae.parameters())}]

    def cien_params(model):
        wae_lr = cfg.lr * (cfg.finetune_factor if cfg.pretrain else 1.0)
        return [
            {"name": "cien", "params": list(model.cien.parameters())},
            {"name": "wae", "params": list(model.wae.encoder.parameters()), "lr": wae_lr},
        ]

    stages = [
        Stage("wae", cfg.stage1_epochs, loss_wae, adam, parameters=wae_params),
        Stage("cien", cfg.cien_epochs, loss_cien, adam, parameters=cien_params),
    ]
    return TrainSpec(
        method="sslwaeie",
        config=cfg,
        default_config=Config(),
        build_model=lambda: SSLWAEIENet(cfg),
        # one pass over ConcatDataset = crops_per_pair random crops of every pair (decoded once)
        dataset=lambda root: ConcatDataset(
            [RandomCropPairs(root, crop=cfg.crop, flip=True)] * cfg.crops_per_pair
        ),
        stages=[s for s in stages if s.epochs > 0],
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        fuser=lambda model: SSLWAEIE(model),
        test_metrics=[("vifb", ["NMI", "QY", "QABF", "IFC"])],
        paper=PAPER,
    )


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------

#: receptive-field radius of tau: 6 encoder + 1 IEM + 6 CED 3x3 convolutions
HALO = 13


class SSLWAEIE(TorchFuser):
    """Fuser: ``fuse(ir, vi)`` on float32 (H, W) planes in [0, 1] -> ``tau_i I_i + tau_v I_v``.

    After every call ``side_maps()["contributions"]`` holds the contribution map tau_i (float32
    (H, W) in [0, 1]); :meth:`contributions` computes it alone. The factory's ``contributions=PATH``
    sets where :class:`ivfuse.api.Pipeline` writes it; a ``{stem}`` in PATH is replaced by the
    output's stem (folder mode).

    Any size: the network is fully convolutional at full resolution (no padding to multiples).
    Images are processed in tiles (default 256 px; ``tile=None``: whole) extended by a margin
    beyond the receptive-field radius, so the result equals the untiled one; tiles that fit the
    CPU caches and channels-last tensors make a 480 x 640 pair about 1.5x faster than one pass.
    """

    label = LABEL
    no_half_precision = (
        "tau_i (Eq. 7) is a ratio of energy differences that bfloat16 rounding swamps "
        "(measured: the fused image moved by 61-83 gray levels on TNO and RoadScene pairs)"
    )

    def __init__(
        self,
        net: SSLWAEIENet,
        device: str | torch.device = "cpu",
        tile: int | None = 256,
        margin: int = 16,
        contributions: str | Path | None = None,
    ):
        if margin < HALO:
            raise ValueError(f"margin must be >= {HALO}, got {margin}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval().to(memory_format=torch.channels_last)
        self.tile = tile
        self.margin = margin
        if contributions is not None:
            self._write_maps({"contributions": str(contributions)})
        self._init_step(self.net.energies)  # the step ivfuse.backends may replace by an exported graph

    def graph(self) -> GraphSpec:
        """The exchanged energies (dE_i, dE_v) for :mod:`ivfuse.backends` (per tile)."""
        return GraphSpec(
            "energies",
            StepModule(self.net.energies, self.net),
            outputs=("energies",),
            # the check compares outputs clipped to [0, 1] in gray levels: energies, not tau_i.
            # tau_i is a ratio of energies near zero over much of an image: eager fp32 NHWC vs NCHW
            # differ by 0.056 gray levels on it, an engine's rounding of the energies moves it by
            # up to 0.11 on the backends test pair (the fused image by < 0.05): 0.01 is below its noise
            tolerance=0.2,
            note=(
                f"tiles of {self.tile} px, tau_i of Eq. (7) from the whole image's energies (stable_tau) "
                "and Eq. (1) (tau_i I_i + (1 - tau_i) I_v, NumPy) are outside"
            ),
            # alone on the 2-core AMD EPYC, 480x640: torch 808 ms, onnxruntime 777, openvino 915
            # (README, "Speed of the backends"): auto takes ONNX Runtime or stays on torch
            auto=("onnxruntime",),
        )

    def tau_tensor(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> tau_i (N, 1, H, W): the energies tiled when large, then Eq. (7) over
        the whole image (:func:`stable_tau`)."""
        ir = ir.contiguous(memory_format=torch.channels_last)
        vi = vi.contiguous(memory_format=torch.channels_last)
        e = tiled(self.step, ir, vi, self.tile, self.margin).float()
        cien = self.net.cien
        return stable_tau(e[:, :1], e[:, 1:], cien.eps, cien.tiny)

    def contributions(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """Contribution map tau_i of the infrared image, float32 (H, W) in [0, 1] (Eq. 7)."""
        ir, vi = planes(ir, vi, LABEL)
        return run_planes(self.tau_tensor, ir, vi, self.device)

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        tau_i = run_planes(self.tau_tensor, ir, vi, self.device)
        self._keep_maps({"contributions": tau_i})
        fused = tau_i * ir + (1.0 - tau_i) * vi  # Eq. (1) with tau_v = 1 - tau_i
        return np.clip(fused, 0.0, 1.0).astype(np.float32)

    def _batch_planes(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        tau_i = run_batch(self.tau_tensor, ir, vi, self.device)
        self._keep_maps({"contributions": tau_i[-1]})
        return np.clip(tau_i * ir + (1.0 - tau_i) * vi, 0.0, 1.0).astype(np.float32)

    def modules(self) -> tuple[nn.Module, ...]:
        """The networks used at test time: encoder + CIEN (the decoder only serves stage 1)."""
        return (self.net.wae.encoder, self.net.cien)

    def networks(self) -> tuple[nn.Module, ...]:
        return (self.net,)


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[SSLWAEIENet, dict]:
    """Build a :class:`SSLWAEIENet` from a safetensors file (no pickle). Returns (net, metadata)."""
    state, meta = read_weights(path, "sslwaeie", LABEL)
    net = SSLWAEIENet(Config.from_dict(config_of(meta)))
    load_state(net, state, path, LABEL)
    return net.to(device).eval(), meta


#: Tables 3-4: the paper's parameter and ablation rows (the default is mu = 10, IEE, L_CIEN)
ABLATIONS = (
    *(Ablation(f"mu-{m:g}", f"µ = {m:g}", "Table 3", {"mu": m}) for m in (9.0, 9.5, 10.5, 11.0)),
    Ablation("no-wae", "Network: No WAE", "Table 4", {"pretrain": False}),
    Ablation("no-iee", "Network: No IEE", "Table 4", {"network": "no_iee"}),
    Ablation("sl-iee", "Network: SL-IEE", "Table 4", {"network": "sl_iee"}),
    Ablation("loss-f", "Loss: L1 = Lf", "Table 4", {"loss": "f"}),
    Ablation("loss-wf", "Loss: L2 = Lwf", "Table 4", {"loss": "wf"}),
)


@register(
    "sslwaeie",
    family="self-supervised",
    paper=PAPER,
    summary="SSL-WAEIE: weighted auto-encoder + CNN information exchange, per-pixel contributions",
    trainable=True,
    weights=WEIGHTS_FILE,
    fuser=SSLWAEIE,
    config=Config,
    training_spec=training_spec,
    paper_tables="sslwaeie.json",
    ablations=ABLATIONS,
)
def create_sslwaeie(
    device: str = "cpu",
    weights: str | Path | None = None,
    tile: int | None = 256,
    contributions: str | None = None,
) -> SSLWAEIE:
    """SSL-WAEIE with the shipped weights (or ``weights=``); ``contributions=PATH`` saves tau_i."""
    if weights is None:
        weights = shipped(WEIGHTS_FILE, "sslwaeie", LABEL)
    net, _ = load_weights(weights, device=device)
    return SSLWAEIE(net, device=device, tile=tile, contributions=contributions)
