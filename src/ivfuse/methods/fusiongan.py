"""FusionGAN: A generative adversarial network for infrared and visible image fusion.

J. Ma, W. Yu, P. Liang, C. Li, J. Jiang. Information Fusion 48:11-26, 2019.

The idea (paper Sec. 3, Fig. 2): a generator G takes the infrared and the visible image stacked as
two channels and outputs a fused image that keeps the infrared *intensities* and the visible
*gradients* (content loss, Eq. 4); a discriminator D learns to tell the visible image from the
fused one, which pushes G to add more of the visible texture (adversarial loss, Eq. 3 and 5).
Least-squares GAN losses with *soft labels* drawn at random (Sec. 3.2): a in [0, 0.3] for fused
images, b and c in [0.7, 1.2] for visible images.

Generator (Sec. 3.3, Fig. 3): five convolutions without padding (valid), 5 x 5 x 256, 5 x 5 x 128,
3 x 3 x 64, 3 x 3 x 32, 1 x 1 x 1; batch normalisation and leaky ReLU after the first four, tanh
after the last. The input is padded beforehand by 6 pixels (the authors' code: 'edge' padding),
so the output has the input size. Discriminator (Fig. 4): four 3 x 3 stride-2 valid convolutions,
32, 64, 128, 256 filters, leaky ReLU, batch normalisation from the second on, then one linear
unit. Images are scaled to [-1, 1] (the authors' code).

Parameters (hand count): generator 925,633 (conv 925,153 + BN 480); discriminator 397,953 for
120 x 120 patches (conv 387,840 + BN 896 + linear 9,217).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import parameter_count  # noqa: F401
from . import _torch
from ._config import MethodConfig
from .registry import register

PAPER = (
    "J. Ma, W. Yu, P. Liang, C. Li, J. Jiang, FusionGAN: A generative adversarial network for "
    "infrared and visible image fusion, Information Fusion 2019"
)
WEIGHTS_FILE = "fusiongan.safetensors"
#: total shrink of the five valid convolutions of G (4 + 4 + 2 + 2 + 0)
PAD = 6
#: the Laplacian the content loss takes the gradient with (the authors' code)
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


@dataclass
class Config(MethodConfig):
    """FusionGAN hyper-parameters (Sec. 3-4 and the authors' code), choices stated.

    Losses::

        L_G = V_G + lam L_content,    V_G = mean (D(I_f) - c)^2,                   (Eq. 2-3)
        L_content = 1/(HW) (||I_f - I_r||_F^2 + xi ||grad I_f - grad I_v||_F^2),   (Eq. 4)
        L_D = mean (D(I_v) - b)^2 + mean (D(I_f) - a)^2                            (Eq. 5)

    * ``xi = 5`` and ``lam = 100`` as in the authors' code; ``grad`` is the 3 x 3 Laplacian
      (their ``gradient`` function), on images in [-1, 1].
    * Soft labels a ~ U[0, 0.3], b, c ~ U[0.7, 1.2] (Sec. 3.2), one draw per batch.
    * Updates: the generic trainer takes one optimiser step per batch, so G and D are updated
      *simultaneously*: G's adversarial term sees D through detached parameters, D's loss sees the
      fused image detached; each network gets only its own gradient. The authors alternate (D
      first, then G) with the same optimiser settings.
    * Data: the paper crops 120 x 120 patches (stride 14) from 45 TNO pairs. Training on TNO would
      leak into the TNO test tables, so the leak-free ``flir_train`` pairs (180 RoadScene pairs)
      are used, random ``patch`` x ``patch`` windows with flips, in gray.
    * Optimiser: Adam lr 1e-4, batch 32 (authors' code); ``epochs`` over the 180 pairs.
    """

    xi: float = 5.0
    lam: float = 100.0
    label_fake: tuple[float, float] = (0.0, 0.3)
    label_real: tuple[float, float] = (0.7, 1.2)
    epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-4
    patch: int = 120
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label_fake = tuple(float(v) for v in self.label_fake)
        self.label_real = tuple(float(v) for v in self.label_real)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, bn: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride=stride)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """Five valid convolutions on [ir, vi] padded by 6 px (edge): output the input size, tanh."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            _conv_bn(2, 256, 5),
            _conv_bn(256, 128, 5),
            _conv_bn(128, 64, 3),
            _conv_bn(64, 32, 3),
            nn.Conv2d(32, 1, 1),
            nn.Tanh(),
        )

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """Inputs and output in [-1, 1]."""
        x = F.pad(torch.cat([ir, vi], dim=1), (PAD,) * 4, mode="replicate")
        return self.layers(x)


class Discriminator(nn.Module):
    """Four 3x3 stride-2 valid convolutions and a linear unit, on ``patch`` x ``patch`` images."""

    def __init__(self, patch: int = 120):
        super().__init__()
        self.convs = nn.Sequential(
            _conv_bn(1, 32, 3, 2, bn=False),
            _conv_bn(32, 64, 3, 2),
            _conv_bn(64, 128, 3, 2),
            _conv_bn(128, 256, 3, 2),
        )
        s = patch
        for _ in range(4):
            s = (s - 3) // 2 + 1
        self.linear = nn.Linear(256 * s * s, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """3x3 Laplacian with zero padding ('SAME', the authors' ``gradient``)."""
    k = torch.tensor(LAPLACIAN, dtype=x.dtype, device=x.device)[None, None]
    return F.conv2d(x, k, padding=1)


def content_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, xi: float = 5.0) -> torch.Tensor:
    """Eq. (4): ``mean (I_f - I_r)^2 + xi mean (grad I_f - grad I_v)^2`` (per pixel and image)."""
    return ((fused - ir) ** 2).mean() + xi * ((laplacian(fused) - laplacian(vi)) ** 2).mean()


class FusionGANModel(nn.Module):
    """G and D together; ``forward(ir, vi)`` (in [0, 1]) runs everything one training step needs."""

    def __init__(self, cfg: Config | None = None):
        super().__init__()
        self.cfg = cfg or Config()
        self.generator = Generator()
        self.discriminator = Discriminator(self.cfg.patch)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        ir2, vi2 = ir * 2 - 1, vi * 2 - 1
        fused = self.generator(ir2, vi2)
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        frozen.update(dict(self.discriminator.named_buffers()))
        d_fake_g = torch.func.functional_call(self.discriminator, frozen, (fused,))  # G's view of D
        d_fake = self.discriminator(fused.detach())
        d_real = self.discriminator(vi2)
        return {
            "fused": fused,
            "ir": ir2,
            "vi": vi2,
            "d_fake_g": d_fake_g,
            "d_fake": d_fake,
            "d_real": d_real,
        }


def fusiongan_loss(cfg: Config, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Generator and discriminator terms with soft labels drawn now (Eq. 2-5); ``total = L_G + L_D``
    (disjoint parameters: see Config)."""
    a = float(torch.empty(1).uniform_(*cfg.label_fake))
    b = float(torch.empty(1).uniform_(*cfg.label_real))
    c = float(torch.empty(1).uniform_(*cfg.label_real))
    content = content_loss(out["fused"], out["ir"], out["vi"], cfg.xi)
    adv_g = ((out["d_fake_g"] - c) ** 2).mean()
    loss_d = ((out["d_real"] - b) ** 2).mean() + ((out["d_fake"] - a) ** 2).mean()
    loss_g = adv_g + cfg.lam * content
    return {"content": content, "adv_g": adv_g, "loss_g": loss_g, "loss_d": loss_d, "total": loss_g + loss_d}


def training_spec(config: Config | None = None):
    """Adversarial training on infrared-visible pairs (Sec. 4.1; data and updates in Config)."""
    from ..data.training import RandomCropPairs
    from ..train.spec import Stage, TrainSpec

    cfg = config or Config()

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return fusiongan_loss(cfg, model(batch["ir"], batch["vi"]))

    stage = Stage(
        name="gan", epochs=cfg.epochs, loss=loss, optimizer=lambda ps: torch.optim.Adam(ps, lr=cfg.lr)
    )
    return TrainSpec(
        method="fusiongan",
        config=cfg,
        default_config=Config(),
        build_model=lambda: FusionGANModel(cfg),
        dataset=lambda root: RandomCropPairs(root, crop=cfg.patch),
        stages=[stage],
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        export=lambda model: dict(model.generator.state_dict()),
        fuser=lambda model: FusionGAN(model.generator),
        test_metrics=[("ma2019", ["EN", "MI", "SD", "SF", "VIF", "AG"]), ("vifb", None)],
        paper=PAPER,
        extra_card={
            "recipe": "45 TNO pairs, 120x120 patches stride 14, Adam 1e-4, batch 32, 10 epochs, D then G",
            "reductions": [
                "flir_train pairs instead of TNO (leak-free for the TNO tables)",
                "G and D updated simultaneously (one step per batch)",
            ],
            "reduced_scale": True,
        },
    )


class FusionGAN(_torch.TiledNetFuser):
    """Fuser: the generator on the whole image (6 px edge padding inside, output the input size);
    overlapping tiles for large images (receptive field 6 px)."""

    label = "FusionGAN"
    halo = PAD

    def __init__(
        self,
        generator: Generator | FusionGANModel,
        device: str | torch.device = "cpu",
        tile: int | None = 512,
        margin: int = 8,
    ):
        if isinstance(generator, FusionGANModel):  # a training model: its generator fuses
            generator = generator.generator
        self._setup(generator, device, tile, margin, step=self._step_fn)

    def _step_fn(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return (self.net(ir * 2 - 1, vi * 2 - 1) + 1) / 2

    def graph(self) -> _torch.GraphSpec:
        return _torch.GraphSpec(
            "fuse",
            _torch.StepModule(self._step_fn, self.net),
            note="tiles (if any) are cut outside the graph",
        )


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, dict]:
    state, meta = _torch.read_weights(path, "fusiongan", "FusionGAN")
    if any(k.startswith("generator.") for k in state):  # a whole training model (G and D): keep G
        state = {k[len("generator.") :]: v for k, v in state.items() if k.startswith("generator.")}
    net = _torch.load_state(Generator(), state, path, "FusionGAN")
    return net.to(device).eval(), meta


@register(
    "fusiongan",
    family="unsupervised",
    paper=PAPER,
    summary="FusionGAN: generator vs discriminator, infrared intensity + visible gradient (Inf. Fusion 2019)",
    trainable=True,
    weights=WEIGHTS_FILE,
    fuser=FusionGAN,
    config=Config,
    training_spec=training_spec,
)
def create_fusiongan(
    device: str = "cpu", weights: str | Path | None = None, tile: int | None = 512
) -> FusionGAN:
    """FusionGAN's generator with the shipped weights (or ``weights=`` a safetensors file)."""
    if weights is None:
        weights = _torch.shipped(WEIGHTS_FILE, "fusiongan", "FusionGAN")
    net, _ = load_weights(weights, device=device)
    return FusionGAN(net, device=device, tile=tile)
