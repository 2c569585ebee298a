"""DeFusion: Fusion from Decomposition, a self-supervised decomposition approach for image fusion.

P. Liang, J. Jiang, X. Liu, J. Ma. ECCV 2022.

The idea (paper Sec. 3): one network, trained only on natural images, learns to split two views of
a scene into what they share and what each has alone. The *common and unique decomposition* (CUD)
pretext (Sec. 3.2) hides random grid cells of an image x behind noise, differently in two views
x1, x2 (Eq. 1, with M1 + M2 > 0 so every pixel is visible somewhere). DeNet (Eq. 2) encodes both
views, an "ensembler" Ec mixes them, a common decoder gives the common embedding f_c and a unique
decoder the unique embeddings f_u1, f_u2. Projection heads render them as images, supervised by the
regions x.(M1 and M2), x.(M1 and not M2), x.(M2 and not M1), and a reconstruction head P_r renders
the whole scene x from the three embeddings together. At test time (Fig. 3) two real sources go in
and P_r's image is the fusion, for infrared-visible, multi-exposure and multi-focus pairs alike,
without fine-tuning and without a fusion rule.

The network, the pretext and the loss follow the authors' official code (it produced the published
numbers); docs/methods/defusion.md records its recipe and where the shipped run departs from it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..errors import InputError
from ..nn import parameter_count  # noqa: F401  (ivfuse.methods.defusion.parameter_count)
from ..nn.resnest import init_conv_weights, stage, stage_on_concat
from ._config import MethodConfig
from ._torch import GraphSpec, TorchFuser, config_of, load_state, read_weights, shipped
from .base import check_pair
from .registry import register

PAPER = (
    "P. Liang, J. Jiang, X. Liu, J. Ma, Fusion from Decomposition: A Self-Supervised Decomposition "
    "Approach for Image Fusion, ECCV 2022"
)
WEIGHTS_FILE = "defusion.safetensors"

#: the official run: 50,000 COCO images in batches of 4 -> 12,500 iterations per epoch, 51 epochs
RECIPE_IMAGES = 50_000
RECIPE_STEPS_PER_EPOCH = RECIPE_IMAGES // 4
RECIPE_EPOCHS = 51
RECIPE_ITERATIONS = RECIPE_STEPS_PER_EPOCH * RECIPE_EPOCHS  # 637,500


# --------------------------------------------------------------------------------------------
# Hyper-parameters
# --------------------------------------------------------------------------------------------


@dataclass
class Config(MethodConfig):
    """DeFusion hyper-parameters; defaults are the official code's (design/defusion.md Sec. 4).

    Data (CUD pretext, Sec. 3.2 + 3.3): colour jitter darkening only (brightness, contrast and
    saturation factors in [0.1, 1], hue 0, random order), then a random-resized crop (area 8-100 %,
    aspect 3/4-4/3) resized to ``crop`` x ``crop`` (256), bilinear with antialiasing (torchvision's
    tensor default since 0.17; the 2022 code's torchvision did not antialias tensors: chosen because
    the reduced 128-px crops shrink a BSDS500 crop by up to 2.5x, where aliasing would add
    artificial texture). Masks: keep probability
    ``p = keep_min + u / keep_div`` (u ~ U[0, 1)) per sample; each mask is the product of a 13 x 13
    and a g x g Bernoulli(p) grid (g in {26, 27}) upsampled to the crop; pixels hidden in both views
    are revealed in one of them by a filler grid (13, g or g3 cells, g3 in {26, 27}), so
    M1 + M2 >= 1 everywhere (the paper's M1 + M2 > 0). Noise ``clamp(|N(0, 1)|, 0, 1)`` fills the
    hidden pixels (the paper says Gaussian noise).

    Loss (Sec. 3.2, "MAE between the four projected results and their targets"; the code's form):
    per sample, ``L1(P_c(f_c) W_c, x R_c) + L1(P_u(f_u1) W_1, x R_1) + L1(P_u(f_u2) W_2, x R_2)
    + beta(t) L1(P_r(.), x)``, summed over the batch (not averaged), where R is the target region
    and ``W = a(t) + (1 - a(t)) R`` weighs the prediction outside its region by ``a(t)``:
    ``a = 0`` before ``mask_until`` (3k) iterations, then ``0.15 (min(t, 7k) / 7k)^2``, times 0.1
    after 40k; the fusion weight ``beta = 0`` before 17k, then ``(min(t - 10k, 14k) / 14k)^2``
    (0.25 at 17k, 1 from 24k). ``t`` counts iterations from 0; unlike the official code it is saved
    in checkpoints, so a resumed run continues the schedule instead of restarting it.

    Schedule scale: every threshold above is in iterations of the official run (12,500 per epoch,
    637,500 in 51 epochs). ``schedule_scale`` multiplies them all by one factor k; 0 (default)
    means "scale to the run": ``k = iterations of this run / 637,500`` (iterations per epoch times
    epochs; 1 for the official run), so every phase starts at the same fraction of the run as in
    the official one and the phases keep their order and proportions. The learning-rate steps
    (x0.5 after epochs 10, 20, 30, 40 of 51) are scaled by the same rule, to
    ``round(m * epochs / 51)``. (Changing ``--epochs`` on resume changes k and the steps from then.)

    Reduced run for a 2-core CPU (measured with ``--threads 1`` while two other trainings shared the
    CPU: 5.3 s per step of batch 4 at 128 x 128; 256 x 256 has 4x the pixels): BSDS500 train + test
    (400 images; val left out, it holds BSD100/BSD68) instead of 50k COCO images, ``crop=128``
    instead of 256 (the mask grids keep their cell counts, so the cells cover the same parts of the
    crop), batch 4, ``epochs=34`` = 3,400 iterations (~5 h), so k = 3,400 / 637,500 = 0.00533: the
    outside-region weight starts at iteration 16, the fusion term at 91 (full from 128), the
    outside weight is cut at 213, and the learning rate halves after epochs 7, 13, 20, 27. The card
    records all of it (``schedule_scale``, ``schedule_iterations``, ``reductions``).

    The shipped weights add a second stage to that run (chosen because a CPU session cannot hold
    one long run, and starting from the first stage's weights is cheaper than a longer run from
    scratch): ``--init`` from the 3,400-iteration weights, a fresh Adam, 60 more epochs of 100
    iterations (6,000; 9,400 in all) at 128 x 128 in bf16 autocast (about 1.0 s per step on a
    2-core AMD EPYC with AVX512-BF16 against 1.2-1.4 s in fp32). The schedule restarts scaled to
    the stage, k = 6,000 / 637,500, and the learning rate halves after epochs 12, 24, 35, 47. A
    third stage the same way from those weights, 50 epochs (5,000 iterations; 14,400 in all),
    starts at ``lr=5e-4``: chosen because the second stage's restart at the full 1e-3 shook the
    weights (its first epoch's loss was 2.5x the first stage's last), while half the rate
    continued from where they were. The card records the stage (``init_weights``, ``stages``) and
    its own reductions.

    Network choice: the test definition of the official code (design Sec. 3; the training one does
    not run) with the common image rendered by P_c, as the paper (Sec. 3.2) and the official training
    code do (the official test code renders it with P_u; the fused image does not depend on it).

    Inference (design Sec. 5): reflect-pad ``pad`` (16) pixels, run, crop, clamp to [0, 1]. For
    multi-exposure pairs the brighter image (higher mean) goes in first, as the official test does.
    """

    # data
    crop: int = 256
    splits: tuple[str, ...] = ("train", "test")  # used when the data folder has a *_splits.csv
    jitter_min: float = 0.1  # brightness / contrast / saturation factors in [jitter_min, 1]
    keep_min: float = 0.1
    keep_div: float = 1.12
    coarse_grid: int = 13
    fine_grids: tuple[int, ...] = (26, 27)
    # loss schedule, in iterations of the official run (scaled by k)
    mask_until: int = 3000
    ramp_end: int = 7000
    outside_max: float = 0.15
    outside_cut_after: int = 40_000
    outside_cut: float = 0.1
    fusion_from: int = 17_000
    fusion_offset: int = 10_000
    fusion_span: int = 14_000
    schedule_scale: float = 0.0  # 0: iterations of the run / 637,500
    # optimisation (Sec. 3.3 and the shipped config)
    epochs: int = 51
    batch_size: int = 4
    lr: float = 1e-3
    lr_milestones: tuple[int, ...] = (10, 20, 30, 40)
    lr_gamma: float = 0.5
    #: where the CUD augmentation runs: "loader" (CPU, per sample: :class:`CUDPretext`) or "device"
    #: (batched torch ops on the training device from a uint8 image cache: ivfuse.data.gpu_augment;
    #: same distribution, other random stream)
    augment: str = "loader"
    # inference
    pad: int = 16

    def __post_init__(self) -> None:
        self.splits = tuple(self.splits)
        self.fine_grids = tuple(int(g) for g in self.fine_grids)
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        if self.schedule_scale < 0:
            raise ValueError(f"schedule_scale must be >= 0 (0: automatic), got {self.schedule_scale}")
        if self.augment not in ("loader", "device"):
            raise ValueError(f"augment must be 'loader' or 'device', got {self.augment!r}")


# --------------------------------------------------------------------------------------------
# Network: DeNet (Sec. 3.3; layer table in design/defusion.md Sec. 3, test definition)
# --------------------------------------------------------------------------------------------


def _up(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear x2 (align_corners off), then a nearest resize to the skip's size when it differs."""
    y = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    # exported (ONNX, dynamic sizes): always resize; nearest to the same size is the identity
    if torch.compiler.is_exporting() or tuple(y.shape[-2:]) != tuple(size):
        y = F.interpolate(y, size=tuple(size), mode="nearest")
    return y


class Encoder(nn.Module):
    """E: full-resolution stem, one 3x3/2 max-pool, then ResNeSt stages to 1/2, 1/4 and 1/8.

    Returns the skips ``(e1, e2, e3)``: 64 ch at H/2, 128 ch at H/4, 256 ch at H/8. (The paper
    says three max-pools; the code has one plus two stride-2 ResNeSt stages, design 7.1.)
    """

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)  # E0a
        self.e0 = stage(16, 8, 6, 1, avd=True)  # E0b: 32 ch at H, 3x3 stride-1 blur in block 1
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.e1 = stage(32, 16, 6, 1)  # 64 ch, H/2
        self.e2 = stage(64, 32, 4, 2, avd=True)  # 128 ch, H/4
        self.e3 = stage(128, 64, 4, 2, avd=True)  # 256 ch, H/8

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.pool(self.e0(F.relu(self.stem(x))))
        e1 = self.e1(h)
        e2 = self.e2(e1)
        return e1, e2, self.e3(e2)


def _up_to(size: torch.Size | tuple[int, int]):
    return lambda t: _up(t, size)


def _repeat(k: int):
    return lambda t: torch.cat([t] * k, dim=0)


class CommonDecoder(nn.Module):
    """D_c: from the ensembled feature c and both sources' skips to f_c (16 ch, full size).

    The paper feeds only Ec's output; the code concatenates both sources' skips at 1/8, 1/4, 1/2
    (design 7.3). ``distribute``: the stages after a concatenation run through
    :func:`ivfuse.nn.resnest.stage_on_concat` (the first block's 1x1 convolutions before the
    upsampling; D_c4's input is the upsampled D_c3 alone, with an identity shortcut: it runs as
    written)."""

    def __init__(self):
        super().__init__()
        self.d1 = stage(1024 + 2 * 256, 64, 2, avg_down=False)  # 256 ch, H/8
        self.d2 = stage(256 + 2 * 128, 16, 2, avg_down=False)  # 64 ch, H/4
        self.d3 = stage(64 + 2 * 64, 4, 2, avg_down=False)  # 16 ch, H/2
        self.d4 = stage(16, 4, 2, avg_down=False)  # 16 ch, H
        self.distribute = True

    def forward(self, c, skips1, skips2, size) -> torch.Tensor:
        (a1, a2, a3), (b1, b2, b3) = skips1, skips2
        d = self.distribute
        y = stage_on_concat(self.d1, [(c, None), (a3, None), (b3, None)], d)
        y = stage_on_concat(self.d2, [(y, _up_to(a2.shape[-2:])), (a2, None), (b2, None)], d)
        y = stage_on_concat(self.d3, [(y, _up_to(a1.shape[-2:])), (a1, None), (b1, None)], d)
        return self.d4(_up(y, size))


class UniqueDecoder(nn.Module):
    """D_u: from c and ONE source's skips to its unique embedding f_u (16 ch, full size); the same
    weights serve both sources (paper: input [E(x_k); Ec(.)], code adds the 1/4, 1/2 skips).

    The skips may hold k sources as one batch of k * N while c has N samples: c then serves each
    of them (the official test runs D_u once per source). ``distribute``: see
    :class:`CommonDecoder`."""

    def __init__(self):
        super().__init__()
        self.d1 = stage(1024 + 256, 96, 4, avg_down=False)  # 384 ch, H/8
        self.d2 = stage(384 + 128, 32, 4, avg_down=False)  # 128 ch, H/4
        self.d3 = stage(128 + 64, 16, 6, avg_down=False)  # 64 ch, H/2
        self.d4 = stage(64, 4, 6, avg_down=False)  # 16 ch, H
        self.distribute = True

    def forward(self, c, skips, size) -> torch.Tensor:
        s1, s2, s3 = skips
        k = s3.shape[0] // c.shape[0]
        if k * c.shape[0] != s3.shape[0]:
            raise ValueError(f"c has {c.shape[0]} samples, the skips {s3.shape[0]}")
        d = self.distribute
        y = stage_on_concat(self.d1, [(c, None if k == 1 else _repeat(k)), (s3, None)], d)
        y = stage_on_concat(self.d2, [(y, _up_to(s2.shape[-2:])), (s2, None)], d)
        y = stage_on_concat(self.d3, [(y, _up_to(s1.shape[-2:])), (s1, None)], d)
        return stage_on_concat(self.d4, [(y, _up_to(size))], d)


class Head(nn.Module):
    """Projection head: one 3x3 conv 16 -> 3 (bias) + ReLU (the paper's "upsample and ResNeSt
    layers" live in the decoders in the code, design 7.5)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(f))


class DeNet(nn.Module):
    """phi_theta of Eq. (2): ``(x1, x2) -> f_c, f_u1, f_u2`` and the projection heads.

    ``forward`` returns the images ``common = P_c(f_c)``, ``unique1 = P_u(f_u1)``,
    ``unique2 = P_u(f_u2)`` and ``fused = P_r(f_u1 + f_u2 + f_c)`` (P_r acts on the element-wise
    sum, design 7.5). Any H x W >= 2 works: the decoders resize to the skip sizes. 7,874,473
    parameters. No normalisation layers; conv weights ~ N(0, sqrt(2 / (k^2 C_out))).
    """

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.ensembler = stage(2 * 256, 256, 4, 1)  # Ec: 512 -> 1024 ch at H/8
        self.common_decoder = CommonDecoder()
        self.unique_decoder = UniqueDecoder()
        self.head_common = Head()  # P_c
        self.head_unique = Head()  # P_u
        self.head_fused = Head()  # P_r
        init_conv_weights(self)

    @property
    def distribute(self) -> bool:
        """Both decoders' evaluation order (:class:`CommonDecoder`); False: the official order."""
        return self.common_decoder.distribute

    @distribute.setter
    def distribute(self, value: bool) -> None:
        self.common_decoder.distribute = self.unique_decoder.distribute = bool(value)

    def embed(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(f_c, f_u1, f_u2), each (N, 16, H, W). Both sources go through E (and D_u) as one batch."""
        n, size = x1.shape[0], x1.shape[-2:]
        skips = self.encoder(torch.cat([x1, x2], dim=0))
        s1 = tuple(s[:n] for s in skips)
        s2 = tuple(s[n:] for s in skips)
        c = self.ensembler(torch.cat([s1[2], s2[2]], dim=1))
        f_c = self.common_decoder(c, s1, s2, size)
        f_u = self.unique_decoder(c, skips, size)
        return f_c, f_u[:n], f_u[n:]

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
        f_c, f_u1, f_u2 = self.embed(x1, x2)
        u = self.head_unique(torch.cat([f_u1, f_u2], dim=0))
        n = x1.shape[0]
        return {
            "common": self.head_common(f_c),
            "unique1": u[:n],
            "unique2": u[n:],
            "fused": self.head_fused(f_u1 + f_u2 + f_c),
        }


# --------------------------------------------------------------------------------------------
# CUD pretext (Sec. 3.2, Eq. 1; design Sec. 4)
# --------------------------------------------------------------------------------------------


def _grid(cells: int, size: int, p: float) -> torch.Tensor:
    """A ``cells x cells`` grid of Bernoulli(p) cells, nearest-upsampled to (1, size, size)."""
    g = (torch.rand(cells, cells) < p).to(torch.float32)
    return F.interpolate(g[None, None], size=(size, size), mode="nearest")[0]


def cud_masks(size: int, cfg: Config | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The two visibility masks ``(M1, M2, p)`` of one sample: (1, size, size) float tensors of 0/1.

    ``p = keep_min + u / keep_div`` is the keep probability of every grid cell. Each mask is a
    coarse (13 x 13) times a fine (g x g) grid (g in {26, 27}, one draw for both masks); where both
    masks are 0 a filler grid (a fresh coarse, fine or g3 x g3 grid, probabilities 0.33 / 0.33 /
    0.34) decides which view shows the pixel, so
    ``M1 + M2 >= 1`` everywhere; then the two masks are swapped with probability 1/2. Draws come
    from torch's global generator.
    """
    cfg = cfg or Config()
    p = cfg.keep_min + float(torch.rand(())) / cfg.keep_div
    grids = cfg.fine_grids
    g = grids[int(torch.randint(len(grids), ()))]
    g3 = grids[int(torch.randint(len(grids), ()))]
    a = _grid(cfg.coarse_grid, size, p) * _grid(g, size, p)
    b = _grid(cfg.coarse_grid, size, p) * _grid(g, size, p)
    u = float(torch.rand(()))  # the official code's thresholds 0.33 / 0.66
    filler = _grid(cfg.coarse_grid if u < 0.33 else g if u < 0.66 else g3, size, p)
    hidden = (a == 0) & (b == 0)
    a = torch.where(hidden & (filler == 1), 1.0, a)
    b = torch.where(hidden & (filler == 0), 1.0, b)
    if float(torch.rand(())) < 0.5:
        a, b = b, a
    return a, b, p


def cud_views(x: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (1): ``x_k = M_k x + (1 - M_k) n_k`` with ``n_k = clamp(|N(0, 1)|, 0, 1)`` drawn per view,
    pixel and channel."""
    n1 = torch.randn_like(x).abs().clamp(0, 1)
    n2 = torch.randn_like(x).abs().clamp(0, 1)
    return x * m1 + n1 * (1 - m1), x * m2 + n2 * (1 - m2)


def cud_targets(x: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor) -> dict[str, torch.Tensor]:
    """Target regions (binary, broadcast over channels) of the three decomposition terms:
    common ``M1 and M2``, unique1 ``M1 and not M2``, unique2 ``M2 and not M1``. Targets are ``x R``."""
    return {"common": m1 * m2, "unique1": m1 * (1 - m2), "unique2": m2 * (1 - m1)}


class CUDIndices(Dataset):
    """The natural images of ``root`` as a cache of uint8 tensors (:class:`ivfuse.data.gpu_augment.
    ImageCache`); items are only indices, ``{"i": i}``: the loss builds the batch on the training
    device with :func:`ivfuse.data.gpu_augment.cud_batch` (``Config.augment = "device"``)."""

    def __init__(self, root: str | Path, cfg: Config | None = None):
        from ..data.gpu_augment import ImageCache
        from ..data.natural import natural_images

        self.cfg = cfg or Config()
        self.root = Path(root)
        self.files = natural_images(self.root, self.cfg.splits)
        self.cache = ImageCache(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"i": torch.tensor(i, dtype=torch.int64)}


class CUDPretext(Dataset):
    """Natural images turned into CUD training samples.

    Each item: ``{"x": scene, "x1", "x2": the two views, "m1", "m2": their masks}``; images are
    (3, crop, crop) float in [0, 1], masks (1, crop, crop). Per item, freshly drawn from torch's
    global generator (seeded and checkpointed by the trainer): colour jitter on the whole image,
    a random-resized crop, the masks and the noise. Images are decoded on demand.
    """

    def __init__(self, root: str | Path, cfg: Config | None = None):
        from ..data.natural import natural_images

        self.cfg = cfg or Config()
        self.root = Path(root)
        self.files = natural_images(self.root, self.cfg.splits)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from ..data.natural import color_jitter, load_rgb_uint8, random_resized_crop

        c = self.cfg
        img = load_rgb_uint8(self.files[i]).to(torch.float32).div(255.0)
        rng = (c.jitter_min, 1.0)
        img = color_jitter(img, rng, rng, rng)
        x = random_resized_crop(img, c.crop)
        m1, m2, _ = cud_masks(c.crop, c)
        x1, x2 = cud_views(x, m1, m2)
        return {"x": x, "x1": x1, "x2": x2, "m1": m1, "m2": m2}


# --------------------------------------------------------------------------------------------
# Loss and its schedule
# --------------------------------------------------------------------------------------------


def outside_weight(t: int, cfg: Config, scale: float = 1.0) -> float:
    """a(t), the weight of a prediction outside its target region (0 before ``mask_until``)."""
    u = t / scale
    if u < cfg.mask_until:
        return 0.0
    a = cfg.outside_max * (min(u, cfg.ramp_end) / cfg.ramp_end) ** 2
    return a * cfg.outside_cut if u > cfg.outside_cut_after else a


def fusion_weight(t: int, cfg: Config, scale: float = 1.0) -> float:
    """beta(t), the weight of the reconstruction (fusion) term (0 before ``fusion_from``)."""
    u = t / scale
    if u < cfg.fusion_from:
        return 0.0
    return (min(u - cfg.fusion_offset, cfg.fusion_span) / cfg.fusion_span) ** 2


def cud_loss(
    out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], a: float, beta: float
) -> dict[str, torch.Tensor]:
    """The CUD loss at outside weight ``a`` and fusion weight ``beta`` (see :class:`Config`).

    Terms (batch means of the per-sample L1, for the log): ``common``, ``unique1``, ``unique2``,
    ``fused`` (unweighted); ``total`` is the SUM over the batch of each sample's
    ``L_common + L_unique1 + L_unique2 + beta L_fused``, as the official code sums it.
    """
    x = batch["x"]
    per_sample = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    terms: dict[str, torch.Tensor] = {}
    for name, region in cud_targets(x, batch["m1"], batch["m2"]).items():
        pred = out[name] * (a + (1.0 - a) * region)
        l1 = (pred - x * region).abs().mean(dim=(1, 2, 3))
        terms[name] = l1.mean()
        per_sample = per_sample + l1
    fused = (out["fused"] - x).abs().mean(dim=(1, 2, 3))
    terms["fused"] = fused.mean()
    terms["total"] = (per_sample + beta * fused).sum()
    return terms


class CUDModel(nn.Module):
    """What the trainer trains: DeNet plus the iteration counter t of the loss schedule (a buffer,
    so checkpoints keep it). Exported weights are DeNet's alone."""

    def __init__(self):
        super().__init__()
        self.net = DeNet()
        self.register_buffer("iteration", torch.zeros((), dtype=torch.int64))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x1, x2)
        out["iteration"] = self.iteration.clone()
        if self.training:
            self.iteration += 1
        return out


# --------------------------------------------------------------------------------------------
# Training spec for ivfuse.train
# --------------------------------------------------------------------------------------------


def schedule_scale(cfg: Config, steps_per_epoch: int) -> float:
    """k: ``cfg.schedule_scale``, or (when 0) this run's iterations over the official 637,500."""
    if cfg.schedule_scale:
        return float(cfg.schedule_scale)
    return steps_per_epoch * cfg.epochs / RECIPE_ITERATIONS


def lr_milestones(cfg: Config) -> list[int]:
    """The epochs after which the learning rate halves: the recipe's (10, 20, 30, 40 of 51) scaled
    to ``cfg.epochs``, ``round(m * epochs / 51)``."""
    return sorted({max(1, round(m * cfg.epochs / RECIPE_EPOCHS)) for m in cfg.lr_milestones})


def schedule_card(cfg: Config, scale: float, images: int, steps_per_epoch: int) -> dict[str, Any]:
    """What the card records about the schedule and the reductions of the official recipe."""
    thresholds = {
        "mask_until": cfg.mask_until,
        "ramp_end": cfg.ramp_end,
        "fusion_from": cfg.fusion_from,
        "fusion_full": cfg.fusion_offset + cfg.fusion_span,
        "outside_cut_after": cfg.outside_cut_after,
    }
    iterations = steps_per_epoch * cfg.epochs
    reductions = []
    if images != RECIPE_IMAGES:
        reductions.append(f"{images} natural images instead of 50,000 COCO images (CPU budget)")
    if cfg.crop != 256:
        reductions.append(f"{cfg.crop}x{cfg.crop} crops instead of 256x256 (CPU budget)")
    if cfg.epochs != RECIPE_EPOCHS:
        reductions.append(f"{cfg.epochs} epochs instead of 51; LR halved after epochs {lr_milestones(cfg)}")
    if abs(scale - 1.0) > 1e-12:
        reductions.append(
            f"loss-schedule thresholds scaled by k={scale:.6g} ({iterations} instead "
            f"of {RECIPE_ITERATIONS} iterations), same order and proportions"
        )
    card: dict[str, Any] = {
        "schedule_scale": scale,
        "schedule_iterations": {k: round(v * scale, 3) for k, v in thresholds.items()},
        "lr_milestones_used": lr_milestones(cfg),
        "iterations_per_epoch": steps_per_epoch,
        "iterations_planned": iterations,
        "recipe": "official code: 50k COCO images, 256x256, batch 4, 51 epochs, 637,500 iterations",
        "reductions": reductions,
    }
    if iterations != RECIPE_ITERATIONS:  # an epoch here is not the recipe's epoch
        card["deviations_from_recipe"] = {
            "iterations": {"used": iterations, "recipe": RECIPE_ITERATIONS},
            "iterations_per_epoch": {"used": steps_per_epoch, "recipe": RECIPE_STEPS_PER_EPOCH},
        }
    if reductions:
        card["reduced_scale"] = True
    return card


def training_spec(config: Config | None = None):
    """The CUD pretext training as a :class:`ivfuse.train.spec.TrainSpec` (one stage)."""
    from ..train.spec import Stage, TrainSpec

    cfg = config or Config()
    state: dict[str, Any] = {"scale": cfg.schedule_scale or 1.0, "cache": None}
    extra: dict[str, Any] = {}

    def dataset(root: Path) -> Dataset:
        ds = CUDIndices(root, cfg) if cfg.augment == "device" else CUDPretext(root, cfg)
        state["cache"] = getattr(ds, "cache", None)
        state["t"] = None  # host copy of the model's iteration counter (read once per run)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        steps = math.ceil(len(ds) / (cfg.batch_size * world))
        state["scale"] = schedule_scale(cfg, steps)
        extra.clear()
        extra.update(schedule_card(cfg, state["scale"], len(ds), steps))
        return ds

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "i" in batch:  # augment="device": the batch is drawn here, on the batch's device
            from ..data.gpu_augment import cud_batch

            batch = cud_batch(state["cache"].to(batch["i"].device), batch["i"], cfg)
        out = model(batch["x1"], batch["x2"])
        # the counter is a buffer on the device: read it once, then count on the host (no sync)
        t = int(out["iteration"]) if state.get("t") is None else state["t"] + 1
        state["t"] = t
        a = outside_weight(t, cfg, state["scale"])
        beta = fusion_weight(t, cfg, state["scale"])
        terms = cud_loss(out, batch, a, beta)
        terms["outside_weight"] = torch.tensor(a)
        terms["fusion_weight"] = torch.tensor(beta)
        return terms

    stage_ = Stage(
        name="cud",
        epochs=cfg.epochs,
        loss=loss,
        optimizer=lambda params: torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999)),
        scheduler=lambda opt: torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=lr_milestones(cfg), gamma=cfg.lr_gamma
        ),
    )
    return TrainSpec(
        method="defusion",
        config=cfg,
        default_config=Config(),
        build_model=CUDModel,
        dataset=dataset,
        stages=[stage_],
        batch_size=cfg.batch_size,
        shuffle=True,
        export=lambda model: dict(model.net.state_dict()),
        fuser=lambda model: DeFusion(model.net, pad=cfg.pad),
        test_metrics=[("vifb", None)],
        paper=PAPER,
        extra_card=extra,
    )


# --------------------------------------------------------------------------------------------
# Inference (Fig. 3; design Sec. 5)
# --------------------------------------------------------------------------------------------

#: BT.601 luma, as ivfuse.io uses for the luma/chroma split
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class DeFusion(TorchFuser):
    """Fuser: the trained DeNet applied to two 3-channel sources, P_r's image is the fusion.

    * ``fuse(a, b)``: two (H, W) planes in [0, 1] (the infrared plane and the visible luma, as
      :class:`ivfuse.api.Pipeline` passes them for ``ivif``); each is replicated to 3 channels, as
      the official infrared-visible test does, and the luma of the 3-channel result is returned.
    * ``fuse_rgb(a, b, task=...)``: two (H, W, 3) sources for ``mef``/``mff`` -> (H, W, 3); the
      network sees RGB. For ``mef`` the brighter source (higher mean) goes in first, whatever the
      order given; for ``mff`` the given order is kept.

    ``side_maps()`` holds the common and the two unique projections (Fig. 7-8 of the paper) of the
    last pair; ``parts=DIR`` names their files (``DIR/{stem}_common.png``, ``DIR/{stem}_unique1.png``
    for the first given source, ``DIR/{stem}_unique2.png``), which
    :meth:`ivfuse.api.Pipeline.fuse_files` writes.

    Inputs are reflect-padded by ``pad`` pixels (16; less for images of 16 pixels or fewer) and the
    result is cropped back and clamped to [0, 1]. The network runs in channels-last memory format
    under ``torch.inference_mode``. No tiling: split attention pools each feature map globally, so
    tiles would change the result. ``compile=True`` (``-p compile=true``) runs it through
    ``torch.compile`` with static shapes and frozen weights: 1.1-1.4x less CPU per 480x640 pair than
    the default path (README, "Speed of the backends"), but every new image size compiles first
    (30-60 s), so it can pay off only on folders of equal-sized images.
    """

    label = "DeFusion"
    rgb = True

    def __init__(
        self,
        net: DeNet,
        device: str | torch.device = "cpu",
        pad: int = 16,
        parts: str | Path | None = None,
        compile: bool = False,
    ):
        if pad < 0:
            raise InputError(f"pad must be >= 0, got {pad}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval().to(memory_format=torch.channels_last)
        self.pad = int(pad)
        if parts is not None:
            d = Path(parts)
            self._write_maps({n: str(d / f"{{stem}}_{n}.png") for n in ("common", "unique1", "unique2")})
        # static shapes with frozen weights (inductor's "freezing": weights become constants);
        # on one thread a 480x640 pair took 1.5 s of CPU this way, a 512x672 one 3.0 s with dynamic
        # shapes. Each new image size compiles once (inductor's disk cache shortens later processes)
        self._init_step(
            torch.compile(self.net, dynamic=False, options={"freezing": True}) if compile else self.net
        )

    def modules(self) -> tuple[nn.Module, ...]:
        return (self.net,)

    def graph(self) -> GraphSpec:
        """DeNet's test pass for :mod:`ivfuse.backends`: two RGB sources -> the four projections."""
        return GraphSpec(
            "fuse",
            self.net,
            inputs=("x1", "x2"),
            outputs=("common", "unique1", "unique2", "fused"),
            channels=3,
            as_dict=True,
            note=f"the {self.pad}-px reflection pad, the crop and the luma of the result are outside",
        )

    def run(self, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        """(H, W, 3) float sources -> the four (H, W, 3) images of DeNet in [0, 1]."""
        return {k: v[0] for k, v in self.run_batch(a[None], b[None]).items()}

    def run_batch(self, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        """(N, H, W, 3) float sources -> the four (N, H, W, 3) images of DeNet in [0, 1], as one
        tensor batch (eval mode: each pair's result is its own)."""
        from ._torch import _to_device

        n, h, w = a.shape[:3]
        pad = min(self.pad, h - 1, w - 1)
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(np.concatenate([a, b]), dtype=np.float32))
            t = _to_device(t, self.device).permute(0, 3, 1, 2)
            if pad > 0:
                t = F.pad(t, (pad, pad, pad, pad), mode="reflect")
            t = t.contiguous(memory_format=torch.channels_last)
            out = self.step(t[:n], t[n:])
            res = {}
            for k, v in out.items():
                v = v[:, :, pad : pad + h, pad : pad + w].clamp(0, 1)
                res[k] = v.permute(0, 2, 3, 1).float().cpu().numpy().astype(np.float32)
        return res

    @staticmethod
    def _rgb(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim != 3 or b.ndim != 3 or a.shape[-1] != 3 or b.shape[-1] != 3:
            raise InputError(f"DeFusion fuse_rgb expects two (H, W, 3) arrays, got {a.shape} and {b.shape}")
        names = ("first source", "second source")
        return check_pair(a, b, names, plane=False, label="DeFusion", min_size=2)

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        res = self.run(np.repeat(ir[..., None], 3, axis=-1), np.repeat(vi[..., None], 3, axis=-1))
        luma = {k: np.clip(v @ _LUMA, 0, 1) for k, v in res.items()}
        self._keep_maps({k: luma[k] for k in ("common", "unique1", "unique2")})
        return luma["fused"]

    def _batch_planes(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        res = self.run_batch(np.repeat(ir[..., None], 3, axis=-1), np.repeat(vi[..., None], 3, axis=-1))
        luma = {k: np.clip(v @ _LUMA, 0, 1) for k, v in res.items()}
        self._keep_maps({k: luma[k][-1] for k in ("common", "unique1", "unique2")})
        return luma["fused"]

    def fuse_rgb(self, a: np.ndarray, b: np.ndarray, *, task: str = "mef") -> np.ndarray:
        a, b = self._rgb(a, b)
        swap = task == "mef" and float(b.mean()) > float(a.mean())
        res = self.run(b, a) if swap else self.run(a, b)
        u1, u2 = ("unique2", "unique1") if swap else ("unique1", "unique2")
        self._keep_maps({"common": res["common"], "unique1": res[u1], "unique2": res[u2]})
        return res["fused"]


def unit_range_denet(seed: int = 0) -> DeNet:
    """A seeded random DeNet (eval mode) whose three output heads are scaled so that its outputs on
    a random 48 x 48 pair peak at 0.8: a stand-in for trained weights in speed and export checks.
    A random net's raw outputs reach ~500, where fp32 reassociation alone (NCHW vs NHWC) moves
    them by 0.3 gray levels; scaled, a comparison at 0.01 gray levels is meaningful."""
    torch.manual_seed(seed)
    net = DeNet().eval()
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        out = net(x[:1], x[1:])
        for head, key in (
            (net.head_common, "common"),
            (net.head_unique, "unique1"),
            (net.head_fused, "fused"),
        ):
            s = 0.8 / float(out[key].max())
            head.conv.weight.mul_(s)
            head.conv.bias.mul_(s)
    return net


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[DeNet, dict]:
    """Build a :class:`DeNet` from a safetensors file (no pickle). Returns (net, metadata with the
    training config as a dict).

    Accepts DeNet's own tensors (``weights.safetensors`` of a run, the shipped file, float16 or
    float32) and a training checkpoint's model exported as is (``net.``-prefixed keys plus the
    ``iteration`` counter, as ``scripts/ship_weights.py`` writes them)."""
    state, meta = read_weights(path, "defusion", "DeFusion")
    state.pop("iteration", None)
    state = {k.removeprefix("net."): v.to(torch.float32) for k, v in state.items()}
    net = load_state(DeNet(), state, path, "DeFusion")
    return net.to(device).eval(), {**meta, "config": config_of(meta)}


@register(
    "defusion",
    family="self-supervised",
    paper=PAPER,
    summary="DeFusion: common/unique decomposition learnt on natural images (ECCV 2022)",
    trainable=True,
    weights=WEIGHTS_FILE,
    tasks=("ivif", "mef", "mff"),
    fuser=DeFusion,
    config=Config,
    training_spec=training_spec,
    paper_tables="defusion.json",
)
def create_defusion(
    device: str = "cpu",
    weights: str | Path | None = None,
    pad: int = 16,
    parts: str | None = None,
    compile: bool = False,
) -> DeFusion:
    """DeFusion with the shipped weights (or ``weights=`` a safetensors file)."""
    if weights is None:
        weights = shipped(WEIGHTS_FILE, "defusion", "DeFusion")
    net, _ = load_weights(weights, device=device)
    return DeFusion(net, device=device, pad=pad, parts=parts, compile=compile)
