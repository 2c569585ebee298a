"""IFCNN: A general image fusion framework based on convolutional neural network.

Y. Zhang, Y. Liu, P. Sun, H. Yan, X. Zhao, L. Zhang. Information Fusion 54:99-118, 2020.

The idea (paper Sec. 3, Fig. 1): one fully convolutional network fuses any two images of a scene.
Each source goes through the same two feature-extraction layers CONV1 (the 7 x 7, 64-filter first
convolution of an ImageNet ResNet101, frozen) and CONV2; the two feature maps are fused *element
by element* (Sec. 3.2: maximum for infrared-visible, medical and multi-focus images, mean for
multi-exposure images, sum as a third choice); CONV3 and CONV4 reconstruct the fused image. The
network is trained once, supervised, on synthetic multi-focus pairs made from all-in-focus images
(Sec. 3.3), and applied to every task with the rule of that task.

Layers (Sec. 3.1 and the authors' code; replicate padding keeps the size):

=======  =====================================  =====  ======
layer    operation                              in     out
=======  =====================================  =====  ======
CONV1    7x7 conv, no bias (ResNet101 conv1)    3      64
CONV2    3x3 conv, no bias, BN, ReLU            64     64
fuse     element-wise max / mean / sum          2x64   64
CONV3    3x3 conv, no bias, BN, ReLU            64     64
CONV4    1x1 conv, bias                         64     3
=======  =====================================  =====  ======

Parameters (hand count): CONV1 9,408, CONV2 36,992 (36,864 + BN 128), CONV3 36,992, CONV4 195;
83,587 in all. Inputs are RGB normalised by the ImageNet mean and deviation, the output is
de-normalised the same way (the authors' test code).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..nn import parameter_count  # noqa: F401
from ..nn.losses import gradient_l1
from . import _torch
from ._config import MethodConfig
from .registry import register

PAPER = (
    "Y. Zhang, Y. Liu, P. Sun, H. Yan, X. Zhao, L. Zhang, IFCNN: A general image fusion framework "
    "based on convolutional neural network, Information Fusion 2020"
)
WEIGHTS_FILE = "ifcnn.safetensors"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: element-wise fusion rules of Sec. 3.2 (over the sources' CONV2 features)
FUSE = {
    "max": lambda a, b: torch.maximum(a, b),
    "mean": lambda a, b: (a + b) / 2,
    "sum": lambda a, b: a + b,
}
#: the paper's rule per task (Sec. 4): max for infrared-visible and multi-focus, mean for multi-exposure
TASK_RULE = {"ivif": "max", "mff": "max", "mef": "mean"}


@dataclass
class Config(MethodConfig):
    """IFCNN hyper-parameters and the choices taken where the paper's resources are not at hand.

    * CONV1: the paper copies the first convolution of a ResNet101 pre-trained on ImageNet and
      freezes it. Those weights are not at hand here, so CONV1 is trained with the rest
      (``freeze_conv1 = False``); with official weights (``scripts/convert_official.py ifcnn``) the
      network is the paper's. A trained-from-scratch CONV1 makes the card ``reduced_scale``.
    * Loss: the paper (Sec. 3.3) uses the mean squared error plus a perceptual loss on ResNet101
      features, which again needs the ImageNet network; here MSE + ``grad_weight`` x the L1
      difference of Sobel gradients (a sharpness term in place of the perceptual one).
    * Data: the paper blurs NYU-D2 images with depth-dependent Gaussian blur; here natural images
      (BSDS500 train + test, RGB) with random region masks and Gaussian blur, sigma in [1, 3]
      (:func:`ivfuse.data.synthetic_pairs.focus_pair`), random ``crop`` windows.
    * ``train_rule``: the fusion rule inside the network while training. The authors ship one
      model per rule (max, mean, sum); one model is trained here with ``max`` and used with the
      rule of each task (``mean`` for mef, chosen per call with ``rule=``).
    * Optimiser: Adam, lr 1e-3 halved every ``lr_step`` epochs (the paper's SGD schedule is for
      far more iterations than the CPU budget allows).
    """

    freeze_conv1: bool = False
    grad_weight: float = 1.0
    train_rule: str = "max"
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    lr_step: int = 10
    crop: int = 96
    splits: tuple[str, ...] = ("train", "test")
    rule: str = "max"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.splits = tuple(self.splits)
        for k in ("train_rule", "rule"):
            if getattr(self, k) not in FUSE:
                raise ValueError(f"{k} must be one of {sorted(FUSE)}, got {getattr(self, k)!r}")


class ConvBlock(nn.Module):
    """Replicate pad 1 -> 3x3 conv (no bias) -> BatchNorm -> ReLU (CONV2, CONV3)."""

    def __init__(self, cin: int = 64, cout: int = 64):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate"))))


class IFCNNNet(nn.Module):
    """CONV1, CONV2 per source; element-wise fusion; CONV3, CONV4. On normalised RGB tensors."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, bias=False)  # ResNet101 conv1 with stride 1, no padding
        self.conv2 = ConvBlock()
        self.conv3 = ConvBlock()
        self.conv4 = nn.Conv2d(64, 3, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(F.pad(x, (3, 3, 3, 3), mode="replicate")))

    def forward(self, a: torch.Tensor, b: torch.Tensor, rule: str = "max") -> torch.Tensor:
        return self.conv4(self.conv3(FUSE[rule](self.features(a), self.features(b))))


def normalize(x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def denormalize(x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x * s + m


def ifcnn_loss(cfg: Config, fused: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"mse", "gradient", "total" = mse + grad_weight * gradient}`` on [0, 1] images."""
    mse = F.mse_loss(fused, target)
    grad = gradient_l1(fused, target)
    return {"mse": mse, "gradient": grad, "total": mse + cfg.grad_weight * grad}


def training_spec(config: Config | None = None):
    """Supervised training on synthetic multi-focus pairs (Sec. 3.3, substitutions in Config)."""
    from ..data.synthetic_pairs import NaturalPairs
    from ..train.spec import Stage, TrainSpec

    cfg = config or Config()
    extra: dict[str, Any] = {
        "recipe": "NYU-D2 synthetic multi-focus pairs, frozen ImageNet ResNet101 CONV1, MSE + perceptual",
        "reductions": [
            "CONV1 trained from scratch (ImageNet ResNet101 weights not at hand)",
            "MSE + Sobel-gradient L1 instead of MSE + ResNet101 perceptual loss",
            "synthetic pairs from BSDS500 with random region masks instead of NYU-D2 depth-based blur",
        ],
        "reduced_scale": True,
    }

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = denormalize(model(normalize(batch["a"]), normalize(batch["b"]), cfg.train_rule))
        return ifcnn_loss(cfg, out, batch["x"])

    def params(model: nn.Module):
        return [p for n, p in model.named_parameters() if not (cfg.freeze_conv1 and n.startswith("conv1."))]

    stage = Stage(
        name="multifocus",
        epochs=cfg.epochs,
        loss=loss,
        optimizer=lambda ps: torch.optim.Adam(ps, lr=cfg.lr),
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step, 0.5),
        parameters=params,
    )
    return TrainSpec(
        method="ifcnn",
        config=cfg,
        default_config=Config(),
        build_model=IFCNNNet,
        dataset=lambda root: NaturalPairs(root, "focus", cfg.crop, gray=False, splits=cfg.splits),
        stages=[stage],
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        fuser=lambda model: IFCNN(model, rule=cfg.rule),
        test_metrics=[("ma2019", ["EN", "MI", "SD", "SF", "VIF", "AG"]), ("vifb", None)],
        paper=PAPER,
        extra_card=extra,
    )


# official weights (uzeful/IFCNN, ``IFCNN-MAX.pth`` etc.): same layer names, ResNet's conv1 included
_OFFICIAL = re.compile(
    r"^(conv1\.weight|conv[23]\.(conv\.weight|bn\.(weight|bias|running_mean|running_var|num_batches_tracked))|conv4\.(weight|bias))$"
)


def convert_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' state dict with our names (they coincide: ``conv1.weight``, ``conv2.conv.weight``,
    ``conv2.bn.*``, ..., ``conv4.bias``); a leading ``module.`` (DataParallel) is dropped; KeyError
    for any other key."""
    out = {}
    for k, v in state.items():
        k2 = k[len("module.") :] if k.startswith("module.") else k
        if not _OFFICIAL.match(k2):
            raise KeyError(f"unknown IFCNN key {k!r}")
        out[k2] = (
            v.detach().contiguous() if k2.endswith("num_batches_tracked") else v.detach().float().contiguous()
        )
    return out


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------

_LUMA = (0.299, 0.587, 0.114)


class IFCNN(_torch.TorchFuser):
    """Fuser: the network on RGB sources (``fuse_rgb``, mef/mff) or on two planes replicated to RGB
    (``fuse``, ivif; the luma of the result is returned). ``rule``: max (default; ivif, mff), mean
    (the paper's rule for mef: ``-o rule=mean``) or sum. No tiling is needed for memory at these
    widths; the receptive field is 4 pixels (7x7, 3x3, 3x3)."""

    label = "IFCNN"
    rgb = True

    def __init__(self, net: IFCNNNet, rule: str = "max", device: str | torch.device = "cpu"):
        if rule not in FUSE:
            raise InputError(f"unknown IFCNN fusion rule {rule!r}; choose one of {sorted(FUSE)}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.rule = rule
        self._init_step(self._step_fn)

    def modules(self) -> tuple[nn.Module, ...]:
        return (self.net,)

    def _step_fn(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) sources in [0, 1] -> (1, 3, H, W) fused (not clipped)."""
        return denormalize(self.net(normalize(a), normalize(b), self.rule))

    def graph(self) -> _torch.GraphSpec:
        return _torch.GraphSpec(
            "fuse",
            _torch.StepModule(self._step_fn, self.net),
            channels=3,
            key=f"rule={self.rule}",
            note=f"the {self.rule!r} rule and the ImageNet (de)normalisation are in the graph",
        )

    def _run(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            ta = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(self.device)
            tb = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1)))[None].to(self.device)
            out = self.step(ta, tb)
        return out[0].float().cpu().numpy().transpose(1, 2, 0)

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        out = self._run(np.repeat(ir[..., None], 3, -1), np.repeat(vi[..., None], 3, -1))
        luma = out @ np.asarray(_LUMA, np.float32)
        return np.clip(luma, 0, 1).astype(np.float32)

    def fuse_rgb(self, a: np.ndarray, b: np.ndarray, *, task: str = "mef") -> np.ndarray:
        """Two (H, W, 3) sources in [0, 1] -> (H, W, 3) with this fuser's rule."""
        a, b = _torch.check_pair(
            a, b, ("first source", "second source"), plane=False, label="IFCNN", min_size=2
        )
        if a.ndim != 3 or a.shape[-1] != 3 or b.ndim != 3 or b.shape[-1] != 3:
            raise InputError("IFCNN fuse_rgb takes two (H, W, 3) images")
        return np.clip(self._run(a, b), 0, 1).astype(np.float32)


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[IFCNNNet, dict]:
    """An :class:`IFCNNNet` from a safetensors file (ours or a converted official one)."""
    state, meta = _torch.read_weights(path, "ifcnn", "IFCNN")
    net = _torch.load_state(IFCNNNet(), state, path, "IFCNN")
    return net.to(device).eval(), meta


@register(
    "ifcnn",
    family="supervised",
    paper=PAPER,
    summary="IFCNN: general fusion CNN, element-wise max/mean/sum of CONV2 features (Inf. Fusion 2020)",
    trainable=True,
    weights=WEIGHTS_FILE,
    tasks=("ivif", "mef", "mff"),
    fuser=IFCNN,
    config=Config,
    training_spec=training_spec,
)
def create_ifcnn(rule: str = "max", device: str = "cpu", weights: str | Path | None = None) -> IFCNN:
    """IFCNN with the shipped weights (or ``weights=``) and element-wise ``rule`` (mef: ``mean``)."""
    if weights is None:
        weights = _torch.shipped(WEIGHTS_FILE, "ifcnn", "IFCNN")
    net, _ = load_weights(weights, device=device)
    return IFCNN(net, rule=rule, device=device)
