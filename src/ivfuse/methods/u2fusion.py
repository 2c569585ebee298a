"""U2Fusion: A Unified Unsupervised Image Fusion Network.

H. Xu, J. Ma, J. Jiang, X. Guo, H. Ling. IEEE TPAMI 44(1):502-518, 2022.

The idea (paper Sec. 3, Fig. 2): one DenseNet-style generator fuses two sources of any task
(infrared-visible, multi-exposure, multi-focus; stacked as two channels). There is no ground truth:
the loss asks the fused image to be similar (SSIM and MSE) to *both* sources, each weighted by how
much information that source carries. The amount of information (Sec. 3.2, Eq. 2-4) is measured on
the feature maps phi_j of a pre-trained extractor (VGG16, the five feature maps before its max-pooling
layers): ``g_k = 1/5 sum_j mean ||grad phi_j(I_k)||^2`` (grad: the Laplacian), and the adaptive
weights are ``[w_1, w_2] = softmax([g_1, g_2] / c)`` (Eq. 4). The loss is
``L = L_ssim + alpha L_mse`` with ``L_ssim = sum_k w_k (1 - SSIM(I_f, I_k))`` and
``L_mse = sum_k w_k MSE(I_f, I_k)`` (Eq. 5-7), alpha = 20. Tasks are learnt one after the other
with elastic weight consolidation (EWC, Sec. 3.4) so that a later task does not erase an earlier one.

Generator (Sec. 3.3 and the authors' code, as read here): a 3 x 3 convolution to 44 channels, a dense
block of five 3 x 3 convolutions (44 channels each, every one on the concatenation of all earlier
maps), then 3 x 3 convolutions to 128, 64, 32 and 1 channels; leaky ReLU (0.2), tanh at the output
mapped to [0, 1]; reflect padding keeps the size.

Parameters (hand count, weights + biases): first layer 836, dense block 261,580, 128/64/32/1 layers
304,256 + 73,792 + 18,464 + 289; 659,217 in all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..nn import parameter_count  # noqa: F401
from ..nn.losses import ssim_map
from . import _torch
from ._config import MethodConfig
from .registry import register

PAPER = (
    "H. Xu, J. Ma, J. Jiang, X. Guo, H. Ling, U2Fusion: A Unified Unsupervised Image Fusion "
    "Network, IEEE TPAMI 2022"
)
WEIGHTS_FILE = "u2fusion.safetensors"
_LAP = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


@dataclass
class Config(MethodConfig):
    """U2Fusion hyper-parameters, and what replaces the resources of the paper that are not at hand.

    * Information measurement: the paper's extractor is VGG16 pre-trained on ImageNet; those
      weights are not at hand. The feature maps used instead are the image itself at ``scales``
      dyadic scales (2x2 average pooling between them, 0-255 scale), so ``g_k`` is the mean squared
      Laplacian (gradient) of the source over five scales - the same measure on image rather than
      learnt features. The card is marked reduced for it.
    * Softmax temperature: the paper's ``c`` (Eq. 4) is tuned to VGG16 activation magnitudes and
      means nothing for other features; the weights here are ``softmax(g_k / (tau * mean(g)))``,
      scale-free, with ``tau = 0.5`` (a source with twice the other's information gets weight 0.79).
    * ``alpha = 20`` (Eq. 5); SSIM with the 11 x 11 Gaussian window.
    * Tasks and EWC: one model is trained *jointly* on a mixture of the three tasks (each batch one
      task, drawn in turn): infrared-visible ``flir_train`` pairs (leak-free for the TNO and
      RoadScene-test41 tables), and multi-exposure and multi-focus pairs simulated from natural
      images (:mod:`ivfuse.data.synthetic_pairs`; the paper's training sets are not at hand). With
      joint training there is no earlier task to protect, so EWC is omitted.
    * Optimiser: Adam lr 1e-4 (paper), ``crop`` x ``crop`` patches, batch ``batch_size``.
    """

    alpha: float = 20.0
    tau: float = 0.5
    scales: int = 5
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4
    crop: int = 64
    ivif_set: str = "flir_train"
    natural: str = "natural/BSDS500"
    extra: dict[str, Any] = field(default_factory=dict)


class DenseGenerator(nn.Module):
    """[I_1, I_2] -> 44 ch -> dense block (5 x 44) -> 128 -> 64 -> 32 -> 1, tanh -> [0, 1]."""

    def __init__(self, growth: int = 44, layers: int = 5):
        super().__init__()
        self.first = nn.Conv2d(2, growth, 3, padding=1, padding_mode="reflect")
        self.dense = nn.ModuleList(
            nn.Conv2d(growth * (i + 1), growth, 3, padding=1, padding_mode="reflect") for i in range(layers)
        )
        widths = [growth * (layers + 1), 128, 64, 32, 1]
        self.tail = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1, padding_mode="reflect")
            for a, b in zip(widths, widths[1:], strict=False)
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.first(torch.cat([a, b], dim=1)), 0.2)
        for conv in self.dense:
            x = torch.cat([x, F.leaky_relu(conv(x), 0.2)], dim=1)
        for conv in self.tail[:-1]:
            x = F.leaky_relu(conv(x), 0.2)
        return (torch.tanh(self.tail[-1](x)) + 1) / 2


def information(x: torch.Tensor, scales: int = 5) -> torch.Tensor:
    """g (N,) of Eq. (3) on the substitute features: mean squared Laplacian of the 0-255 image at
    ``scales`` dyadic scales, averaged over the scales."""
    k = torch.tensor(_LAP, dtype=x.dtype, device=x.device)[None, None]
    y = x * 255.0
    total = x.new_zeros(x.shape[0])
    for s in range(scales):
        if s:
            y = F.avg_pool2d(y, 2) if min(y.shape[-2:]) >= 4 else y
        lap = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), k)
        total = total + (lap**2).flatten(1).mean(1)
    return total / scales


def adaptive_weights(a: torch.Tensor, b: torch.Tensor, tau: float = 0.5, scales: int = 5) -> torch.Tensor:
    """(N, 2) weights of Eq. (4) with the scale-free temperature (see Config); no gradient."""
    with torch.no_grad():
        g = torch.stack([information(a, scales), information(b, scales)], dim=1)
        return torch.softmax(g / (tau * g.mean(1, keepdim=True).clamp_min(1e-12)), dim=1)


def u2fusion_loss(
    cfg: Config, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, w: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Eq. (5)-(7): ``{"ssim", "mse", "w1", "total" = ssim + alpha mse}`` (weights per sample)."""
    if w is None:
        w = adaptive_weights(a, b, cfg.tau, cfg.scales)
    d1 = 1 - ssim_map(fused, a).flatten(1).mean(1)
    d2 = 1 - ssim_map(fused, b).flatten(1).mean(1)
    m1 = ((fused - a) ** 2).flatten(1).mean(1)
    m2 = ((fused - b) ** 2).flatten(1).mean(1)
    ls = (w[:, 0] * d1 + w[:, 1] * d2).mean()
    lm = (w[:, 0] * m1 + w[:, 1] * m2).mean()
    return {"ssim": ls, "mse": lm, "w1": w[:, 0].mean(), "total": ls + cfg.alpha * lm}


class MixedTasks(Dataset):
    """Items ``{"a", "b"}`` (1, c, c) in [0, 1], cycling ivif / mef / mff by index (see Config)."""

    def __init__(self, root: str | Path, cfg: Config):
        from ..data.synthetic_pairs import NaturalPairs
        from ..data.training import RandomCropPairs

        root = Path(root)
        self.ivif = RandomCropPairs(root / cfg.ivif_set, crop=cfg.crop)
        self.mef = NaturalPairs(root / cfg.natural, "exposure", cfg.crop, gray=True)
        self.mff = NaturalPairs(root / cfg.natural, "focus", cfg.crop, gray=True)
        self.n = len(self.ivif) + len(self.mef) + len(self.mff)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        task = i % 3
        if task == 0:
            d = self.ivif[(i // 3) % len(self.ivif)]
            return {"a": d["ir"], "b": d["vi"]}
        src = self.mef if task == 1 else self.mff
        d = src[(i // 3) % len(src)]
        return {"a": d["a"], "b": d["b"]}


def training_spec(config: Config | None = None):
    """Joint unsupervised training on the three tasks (Sec. 3; substitutions in Config). ``--data``
    is the data root holding ``flir_train/`` and ``natural/BSDS500``."""
    from ..train.spec import Stage, TrainSpec

    cfg = config or Config()

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return u2fusion_loss(cfg, batch["a"], batch["b"], model(batch["a"], batch["b"]))

    stage = Stage(
        name="joint", epochs=cfg.epochs, loss=loss, optimizer=lambda ps: torch.optim.Adam(ps, lr=cfg.lr)
    )
    return TrainSpec(
        method="u2fusion",
        config=cfg,
        default_config=Config(),
        build_model=DenseGenerator,
        dataset=lambda root: MixedTasks(root, cfg),
        stages=[stage],
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        fuser=lambda model: U2Fusion(model),
        test_metrics=[("ma2019", ["EN", "MI", "SD", "SF", "VIF", "AG"]), ("vifb", None)],
        paper=PAPER,
        extra_card={
            "recipe": "VGG16 (ImageNet) information measurement, tasks in sequence with EWC, Adam 1e-4",
            "reductions": [
                "information measured on multi-scale image Laplacians instead of VGG16 ImageNet features",
                "joint training on the three tasks, EWC omitted",
                "mef/mff pairs simulated from BSDS500",
            ],
            "reduced_scale": True,
        },
    )


#: receptive-field radius: ten 3x3 convolutions
HALO = 10


class U2Fusion(_torch.TiledNetFuser):
    """Fuser: the generator on two planes (any task), in overlapping tiles when large."""

    label = "U2Fusion"
    halo = HALO

    def __init__(
        self,
        net: DenseGenerator,
        device: str | torch.device = "cpu",
        tile: int | None = 512,
        margin: int = 16,
    ):
        self._setup(net, device, tile, margin)


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[DenseGenerator, dict]:
    state, meta = _torch.read_weights(path, "u2fusion", "U2Fusion")
    net = _torch.load_state(DenseGenerator(), state, path, "U2Fusion")
    return net.to(device).eval(), meta


@register(
    "u2fusion",
    family="unsupervised",
    paper=PAPER,
    summary="U2Fusion: dense generator, information-weighted SSIM + MSE, all tasks (TPAMI 2022)",
    trainable=True,
    weights=WEIGHTS_FILE,
    tasks=("ivif", "mef", "mff"),
    fuser=U2Fusion,
    config=Config,
    training_spec=training_spec,
)
def create_u2fusion(
    device: str = "cpu", weights: str | Path | None = None, tile: int | None = 512
) -> U2Fusion:
    """U2Fusion with the shipped weights (or ``weights=`` a safetensors file)."""
    if weights is None:
        weights = _torch.shipped(WEIGHTS_FILE, "u2fusion", "U2Fusion")
    net, _ = load_weights(weights, device=device)
    return U2Fusion(net, device=device, tile=tile)
