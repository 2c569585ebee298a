"""DeepFuse: A Deep Unsupervised Approach for Exposure Fusion with Extreme Exposure Image Pairs.

K. R. Prabhakar, V. S. Srikar, R. V. Babu. ICCV 2017, pp. 4714-4722.

The idea (paper Sec. 3, Fig. 2): the luminance (Y) channels of an under- and an over-exposed image
go through two feature extractors with *tied weights* (C1: 5 x 5, 16 filters; C2: 7 x 7, 32
filters); the two 32-channel feature maps are fused by *addition* (Sec. 3.1: the simplest rule,
which keeps the network symmetric in its inputs) and three layers reconstruct the fused luminance
(C3: 7 x 7, 32; C4: 5 x 5, 16; C5: 5 x 5, 1). Training is unsupervised: no ground-truth fusion
exists, the loss is the MEF-SSIM index of Ma et al. (IEEE TIP 2015) between the fused output and the
two inputs (Sec. 3.2, Eq. 1-6). The chroma (Cb, Cr) is fused outside the network by the weighting
rule of Eq. (7), ``C = (C1 |C1 - tau| + C2 |C2 - tau|) / (|C1 - tau| + |C2 - tau|)``, tau = 128 (0.5
on [0, 1]): :class:`ivfuse.api.Pipeline` applies that rule for ``mef`` with any plane fuser. Later
infrared-visible papers apply the same network to infrared and visible luma (task ``ivif``).

Parameters (hand count, weights + biases): C1 416, C2 25,120, C3 50,208, C4 12,816, C5 401; 88,961.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn import parameter_count  # noqa: F401
from ..nn.losses import float32_outside_autocast, gaussian_window
from . import _torch
from ._config import MethodConfig
from .registry import register

PAPER = (
    "K. R. Prabhakar, V. S. Srikar, R. V. Babu, DeepFuse: A Deep Unsupervised Approach for Exposure "
    "Fusion with Extreme Exposure Image Pairs, ICCV 2017"
)
WEIGHTS_FILE = "deepfuse.safetensors"


@dataclass
class Config(MethodConfig):
    """DeepFuse hyper-parameters; where the paper leaves a choice open, what is taken and why.

    MEF-SSIM (Sec. 3.2, after Ma et al. 2015): for every window the source patches y_k are split
    into contrast ``c_k = ||y_k - mu_k||`` and structure ``s_k = (y_k - mu_k) / c_k``; the desired
    contrast is the largest, ``c^ = max_k c_k`` (Eq. 2), the desired structure the weighted mean
    ``s_bar = sum_k w_k s_k / sum_k w_k``, ``s^ = s_bar / ||s_bar||`` (Eq. 3-4), with
    ``w_k = c_k ^ p`` (Ma et al.'s weighting, ``p = 4``: the structure of the patch with the larger
    contrast dominates; ``p = inf`` takes it alone). The target patch ``y^ = c^ s^`` and the fused
    patch are compared by the SSIM structure-contrast term ``(2 sigma_{y^ y} + C2) / (sigma_{y^}^2 +
    sigma_y^2 + C2)`` (Eq. 5); the loss is 1 - its mean over all windows (Eq. 6). Luminance is
    left to the network, as in the paper.

    * Window: an ``ssim_window`` x ``ssim_window`` Gaussian (sigma 1.5) in place of the paper's
      plain patches - the usual SSIM window, and smooth in the image position; ``C2 = (0.03)^2``.
    * Activations: ReLU after C1-C4, none after C5 (the paper's figure shows ReLU layers; the
      output's range is left free and clipped at inference).
    * Padding: zero padding that keeps the size ("same"), the paper's outputs have the input size.
    * Data: the paper trains on its own 25 exposure stacks (64 x 64 patches, gray Y). Those are not
      at hand; pairs are simulated from natural images (BSDS500 train + test) by gains on
      gamma-2.2 intensities with clipping (:func:`ivfuse.data.synthetic_pairs.exposure_pair`).
    * Optimiser: Adam, lr 1e-4 (paper), batch ``batch_size`` of ``crop`` x ``crop`` Y patches.
    * ``lum_weight``: MEF-SSIM is blind to luminance (an offset of the output does not change it),
      so nothing keeps the output in [0, 1]; in a run here it drifted out of range within 29
      epochs (every fused TNO image black). A weak anchor, ``lum_weight`` x the MSE between the
      output and the mean of the two sources, keeps the luminance near their average (0: the
      paper's loss alone).
    """

    p: float = 4.0
    ssim_window: int = 11
    lum_weight: float = 0.1
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-4
    crop: int = 64
    splits: tuple[str, ...] = ("train", "test")
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.splits = tuple(self.splits)
        if not self.p > 0:
            raise ValueError(f"p must be positive, got {self.p}")


class DeepFuseNet(nn.Module):
    """C1-C2 shared by both inputs (tied weights), addition, C3-C5 (Fig. 2)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 5, padding=2)
        self.c2 = nn.Conv2d(16, 32, 7, padding=3)
        self.c3 = nn.Conv2d(32, 32, 7, padding=3)
        self.c4 = nn.Conv2d(32, 16, 5, padding=2)
        self.c5 = nn.Conv2d(16, 1, 5, padding=2)

    def extract(self, y: torch.Tensor) -> torch.Tensor:
        return F.relu(self.c2(F.relu(self.c1(y))))

    def forward(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        f = self.extract(y1) + self.extract(y2)  # fusion by addition (Sec. 3.1)
        return self.c5(F.relu(self.c4(F.relu(self.c3(f)))))


def mef_ssim_map(
    y1: torch.Tensor,
    y2: torch.Tensor,
    fused: torch.Tensor,
    p: float = 4.0,
    window: int = 11,
    c2: float = 0.03**2,
) -> torch.Tensor:
    """Per-window MEF-SSIM score (N, 1, H, W) of ``fused`` against the sources (see Config).

    All patch quantities come from local (Gaussian-weighted) moments: with ``a_k = w_k / (c_k sum w)``
    the target is ``y^ = c^ s_bar / ||s_bar||``, ``||s_bar||^2 = sum_jk a_j a_k cov(y_j, y_k)`` and
    ``sigma_{y^ y} = c^ sum_k a_k cov(y_k, y) / ||s_bar||``. Computed in float32 under any autocast
    (local variances ``E[x^2] - E[x]^2`` cancel in bfloat16) and returned in the inputs' dtype."""
    return _mef_ssim_map(y1, y2, fused, p=p, window=window, c2=c2)


@float32_outside_autocast
def _mef_ssim_map(y1, y2, fused, *, p: float, window: int, c2: float) -> torch.Tensor:
    g = gaussian_window(window, 1.5, dtype=fused.dtype, device=fused.device)[None, None]
    pad = window // 2

    def filt(x):
        return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), g)

    mu = [filt(y1), filt(y2), filt(fused)]
    var1 = (filt(y1 * y1) - mu[0] ** 2).clamp_min(0)
    var2 = (filt(y2 * y2) - mu[1] ** 2).clamp_min(0)
    vary = (filt(fused * fused) - mu[2] ** 2).clamp_min(0)
    c12 = filt(y1 * y2) - mu[0] * mu[1]
    c1y = filt(y1 * fused) - mu[0] * mu[2]
    c2y = filt(y2 * fused) - mu[1] * mu[2]
    eps = 1e-12
    s1, s2 = (var1 + eps).sqrt(), (var2 + eps).sqrt()
    chat = torch.maximum(s1, s2)  # desired contrast, Eq. (2)
    if np.isinf(p):
        w1, w2 = (s1 >= s2).to(s1.dtype), (s1 < s2).to(s1.dtype)
    else:
        m = chat  # scale before the power: (c/cmax)^p stays in [0, 1]
        w1, w2 = (s1 / m) ** p, (s2 / m) ** p
    a1, a2 = w1 / (s1 * (w1 + w2)), w2 / (s2 * (w1 + w2))
    norm2 = (a1 * a1 * var1 + a2 * a2 * var2 + 2 * a1 * a2 * c12).clamp_min(eps)
    cov_hat = chat * (a1 * c1y + a2 * c2y) / norm2.sqrt()
    # Cauchy-Schwarz: |cov(y^, y)| <= c^ sigma_y. Local moments in float32 (and the clamped
    # variances) can break it where both sources are flat (saturated), and a network then learns
    # to exploit the score there (it exceeded 1 within four epochs), so it is enforced.
    bound = chat * (vary + eps).sqrt()
    cov_hat = torch.maximum(torch.minimum(cov_hat, bound), -bound)
    return (2 * cov_hat + c2) / (chat**2 + vary + c2)


def deepfuse_loss(
    cfg: Config, y1: torch.Tensor, y2: torch.Tensor, fused: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``{"mef_ssim": mean score, "total": 1 - mean score}`` (Eq. 6)."""
    score = mef_ssim_map(y1, y2, fused, cfg.p, cfg.ssim_window).mean()
    lum = ((fused - (y1 + y2) / 2) ** 2).mean()  # the anchor of Config.lum_weight
    return {"mef_ssim": score, "luminance": lum, "total": 1.0 - score + cfg.lum_weight * lum}


def training_spec(config: Config | None = None):
    """Unsupervised MEF-SSIM training on simulated exposure pairs (Sec. 3.2; data in Config)."""
    from ..data.synthetic_pairs import NaturalPairs
    from ..train.spec import Stage, TrainSpec

    cfg = config or Config()

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return deepfuse_loss(cfg, batch["a"], batch["b"], model(batch["a"], batch["b"]))

    stage = Stage(
        name="mef_ssim", epochs=cfg.epochs, loss=loss, optimizer=lambda ps: torch.optim.Adam(ps, lr=cfg.lr)
    )
    return TrainSpec(
        method="deepfuse",
        config=cfg,
        default_config=Config(),
        build_model=DeepFuseNet,
        dataset=lambda root: NaturalPairs(root, "exposure", cfg.crop, gray=True, splits=cfg.splits),
        stages=[stage],
        batch_size=cfg.batch_size,
        shuffle=True,
        fuser=lambda model: DeepFuse(model),
        test_metrics=[("ma2019", ["EN", "MI", "SD", "SF", "VIF", "AG"]), ("vifb", None)],
        paper=PAPER,
        extra_card={
            "recipe": "25 real exposure stacks of the authors, 64x64 Y patches, MEF-SSIM, Adam 1e-4",
            "reductions": ["exposure pairs simulated from BSDS500 (the authors' stacks are not at hand)"],
            "reduced_scale": True,
        },
    )


#: receptive-field radius: 2 + 3 + 3 + 2 + 2
HALO = 12


class DeepFuse(_torch.TiledNetFuser):
    """Fuser: two luma planes (under/over exposed, or infrared/visible) -> fused luma, in
    overlapping tiles (margin beyond the 12-pixel receptive field) when large."""

    label = "DeepFuse"
    halo = HALO

    def __init__(
        self, net: DeepFuseNet, device: str | torch.device = "cpu", tile: int | None = 768, margin: int = 16
    ):
        self._setup(net, device, tile, margin)


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[DeepFuseNet, dict]:
    state, meta = _torch.read_weights(path, "deepfuse", "DeepFuse")
    net = _torch.load_state(DeepFuseNet(), state, path, "DeepFuse")
    return net.to(device).eval(), meta


@register(
    "deepfuse",
    family="unsupervised",
    paper=PAPER,
    summary="DeepFuse: tied-weight feature extractors, addition, MEF-SSIM loss (ICCV 2017)",
    trainable=True,
    weights=WEIGHTS_FILE,
    tasks=("ivif", "mef"),
    fuser=DeepFuse,
    config=Config,
    training_spec=training_spec,
)
def create_deepfuse(
    device: str = "cpu", weights: str | Path | None = None, tile: int | None = 768
) -> DeepFuse:
    """DeepFuse with the shipped weights (or ``weights=`` a safetensors file)."""
    if weights is None:
        weights = _torch.shipped(WEIGHTS_FILE, "deepfuse", "DeepFuse")
    net, _ = load_weights(weights, device=device)
    return DeepFuse(net, device=device, tile=tile)
