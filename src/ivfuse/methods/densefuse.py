"""DenseFuse: A Fusion Approach to Infrared and Visible Images.

H. Li, X.-J. Wu. IEEE Transactions on Image Processing 28(5):2614-2623, 2019.

The idea (paper Sec. III, Fig. 1): an auto-encoder is trained to reconstruct single natural
images (MS-COCO, Sec. III-C); its encoder - one convolution C1 followed by a *dense block* whose
three convolutions each see the concatenation of all earlier outputs (Sec. III-A, Fig. 2) - gives a
64-channel feature map that keeps the shallow and the deep features. At test time both sources are
encoded, the two feature maps are fused by a rule (Sec. III-B: *addition*, Eq. 4, or the
*l1-norm* strategy, Eq. 5-7) and the decoder C2-C5 turns the fused map into the fused image. The
network never sees an infrared image during training.

Layers (Table I of the paper; every convolution 3 x 3, stride 1, ReLU except C5):

=========  ======  =======  ==========
layer      in      out      note
=========  ======  =======  ==========
C1         1       16       encoder
DC1        16      16       dense block, input C1
DC2        32      16       input [C1, DC1]
DC3        48      16       input [C1, DC1, DC2]; encoder output [C1, DC1, DC2, DC3] = 64 ch
C2         64      64       decoder
C3         64      32
C4         32      16
C5         16      1        no activation
=========  ======  =======  ==========

Parameters (hand count of Table I, weights + biases): encoder 14,032, decoder 60,161, total 74,193.
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
from torch.utils.data import Dataset

from ..errors import InputError
from ..nn import parameter_count  # noqa: F401  (ivfuse.methods.densefuse.parameter_count)
from ..nn.fusion import RULES
from ..nn.losses import ssim_map
from . import _torch
from ._config import MethodConfig
from .registry import register

PAPER = "H. Li, X.-J. Wu, DenseFuse: A Fusion Approach to Infrared and Visible Images, IEEE TIP 2019"
WEIGHTS_FILE = "densefuse.safetensors"
#: the paper's schedule (Sec. III-C): 80,000 MS-COCO images, 4 epochs
RECIPE_IMAGES = 80_000
RECIPE_EPOCHS = 4


# --------------------------------------------------------------------------------------------
# Hyper-parameters
# --------------------------------------------------------------------------------------------


@dataclass
class Config(MethodConfig):
    """DenseFuse hyper-parameters; defaults follow the paper (Sec. III-C) unless noted.

    Loss, Eq. (1)-(3) of the paper::

        L = L_p + lam * L_ssim,   L_p = ||O - I||^2 (here: the mean, as the official code),
                                  L_ssim = 1 - SSIM(O, I)

    * ``lam`` - the paper trains four models, lam in {1, 10, 100, 1000}, and reports the fusion
      results of all; 100 (``1e2``) is the default model of the authors' code and the one most
      later papers compare against, so it is the default here.
    * ``pixel_term`` - the paper's L_p is the Euclidean distance; the authors' code uses the mean
      squared error (``"mse"``, default), which keeps ``lam`` on the same scale for any image size.
    * SSIM: the paper's SSIM [Wang et al. 2004] with an 11 x 11 Gaussian window (sigma 1.5),
      reflect padding (:func:`ivfuse.nn.losses.ssim_map`). The official PyTorch port uses MS-SSIM;
      the paper says SSIM, which is followed.

    Choices the paper leaves open, taken from the authors' code: reflection padding of 1 pixel
    before every convolution (the output keeps the input size), PyTorch default initialisation.

    Training recipe (Sec. III-C): 80,000 MS-COCO images, resized to 256 x 256 and converted to
    gray, Adam with lr 1e-4, batch 2, 4 epochs. Here the images are the natural images the run is
    given (BSDS500 train + test splits, 400 images; ``splits``), resized to ``size`` x ``size``;
    the card records the reduction.

    Fusion (Sec. III-B): ``rule = "sum"`` (addition, Eq. 4; the default of the authors' code) or
    ``"l1"`` (Eq. 5-7: activity = l1 norm over channels, averaged over a (2r+1)^2 block with r = 1,
    weights = activity / sum of activities).
    """

    lam: float = 100.0
    pixel_term: str = "mse"  # "mse" (code) | "sq_l2" (paper Eq. 3)
    ssim_window: int = 11
    # optimisation (Sec. III-C)
    epochs: int = RECIPE_EPOCHS
    batch_size: int = 2
    lr: float = 1e-4
    size: int = 256  # images resized to size x size (paper: 256)
    crop: int | None = None  # optional random crop of the resized image (CPU budget), None: whole
    splits: tuple[str, ...] = ("train", "test")  # BSDS500 splits (val = BSD100/BSD68 left out)
    # inference
    rule: str = "sum"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.splits = tuple(self.splits)
        if self.pixel_term not in ("mse", "sq_l2"):
            raise ValueError(f"pixel_term must be 'mse' or 'sq_l2', got {self.pixel_term!r}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)}, got {self.rule!r}")


# --------------------------------------------------------------------------------------------
# Network (Sec. III-A, Table I)
# --------------------------------------------------------------------------------------------


class ConvLayer(nn.Module):
    """Reflection pad 1 -> 3x3 convolution (bias) -> ReLU (none for the last layer)."""

    def __init__(self, cin: int, cout: int, last: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if self.last else F.relu(y)


class Encoder(nn.Module):
    """C1 then the dense block DC1-DC3 (Fig. 2): each layer sees all earlier outputs."""

    def __init__(self, growth: int = 16):
        super().__init__()
        self.conv1 = ConvLayer(1, growth)
        self.dense = nn.ModuleList([ConvLayer(growth * (i + 1), growth) for i in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for layer in self.dense:
            x = torch.cat([x, layer(x)], dim=1)
        return x  # 64 channels


class Decoder(nn.Module):
    """C2-C5: 64 -> 64 -> 32 -> 16 -> 1."""

    def __init__(self):
        super().__init__()
        self.conv2 = ConvLayer(64, 64)
        self.conv3 = ConvLayer(64, 32)
        self.conv4 = ConvLayer(32, 16)
        self.conv5 = ConvLayer(16, 1, last=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))


class DenseFuseNet(nn.Module):
    """Encoder + decoder. ``forward(x)`` is the training pass (reconstruction of ``x``)."""

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def fuse(self, ir: torch.Tensor, vi: torch.Tensor, rule: str = "sum") -> torch.Tensor:
        """Test pass (Fig. 1): encode both, fuse with ``rule`` (Eq. 4 or 5-7), decode."""
        return self.decoder(RULES[rule](self.encoder(ir), self.encoder(vi)))


# --------------------------------------------------------------------------------------------
# Loss (Eq. 1-3)
# --------------------------------------------------------------------------------------------


def densefuse_loss(cfg: Config, x: torch.Tensor, out: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"pixel": L_p, "ssim": 1 - SSIM(O, I), "total": L_p + lam L_ssim}`` (Eq. 1)."""
    d = (out - x) ** 2
    pixel = d.mean() if cfg.pixel_term == "mse" else d.sum()
    ssim = 1.0 - ssim_map(out, x, window_size=cfg.ssim_window).mean()
    return {"pixel": pixel, "ssim": ssim, "total": pixel + cfg.lam * ssim}


# --------------------------------------------------------------------------------------------
# Training data and spec
# --------------------------------------------------------------------------------------------


class NaturalGray(Dataset):
    """Natural images as ``{"x": (1, s, s)}`` gray tensors in [0, 1] (Sec. III-C: resized to
    256 x 256, gray). Decoded and resized once at construction (PIL 'L', bilinear); with ``crop``
    a random ``crop x crop`` window of the resized image is drawn (torch's seeded generator)."""

    def __init__(
        self,
        root: str | Path,
        size: int = 256,
        splits: tuple[str, ...] | None = None,
        crop: int | None = None,
    ):
        from PIL import Image

        from ..data.natural import natural_images

        self.files = natural_images(root, splits)
        self.crop = crop
        imgs = []
        for p in self.files:
            with Image.open(p) as im:
                g = im.convert("L").resize((size, size), Image.BILINEAR)
                imgs.append(np.asarray(g, dtype=np.uint8))
        self.images = torch.from_numpy(np.stack(imgs))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.images[i]
        if self.crop:
            h, w = x.shape
            top = int(torch.randint(0, h - self.crop + 1, (1,)))
            left = int(torch.randint(0, w - self.crop + 1, (1,)))
            x = x[top : top + self.crop, left : left + self.crop]
        return {"x": x.to(torch.float32).div(255.0).unsqueeze(0).contiguous()}


def reductions(cfg: Config, images: int | None = None) -> list[str]:
    """What of the paper's recipe a run with ``cfg`` leaves out (for the card)."""
    out = []
    if images is not None and images != RECIPE_IMAGES:
        out.append(f"{images} natural images (BSDS500) instead of 80,000 MS-COCO images")
    if cfg.epochs != RECIPE_EPOCHS:
        out.append(f"{cfg.epochs} epochs instead of {RECIPE_EPOCHS}")
    if cfg.crop:
        out.append(f"random {cfg.crop}x{cfg.crop} crops of the {cfg.size}x{cfg.size} images (CPU budget)")
    if cfg.batch_size != 2:
        out.append(f"batch {cfg.batch_size} instead of 2")
    return out


def training_spec(config: Config | None = None):
    """The paper's auto-encoder training (Sec. III-C) as a :class:`ivfuse.train.spec.TrainSpec`."""
    from ..train.spec import Stage, TrainSpec

    cfg = config or Config()
    extra: dict[str, Any] = {"recipe": "80,000 MS-COCO images, 256x256 gray, Adam 1e-4, batch 2, 4 epochs"}

    def dataset(root: Path) -> NaturalGray:
        ds = NaturalGray(root, cfg.size, cfg.splits, cfg.crop)
        red = reductions(cfg, len(ds))
        extra["reductions"] = red
        if red:
            extra["reduced_scale"] = True
        return ds

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return densefuse_loss(cfg, batch["x"], model(batch["x"]))

    stage = Stage(
        name="autoencoder",
        epochs=cfg.epochs,
        loss=loss,
        optimizer=lambda params: torch.optim.Adam(params, lr=cfg.lr),
    )
    return TrainSpec(
        method="densefuse",
        config=cfg,
        default_config=Config(),
        build_model=DenseFuseNet,
        dataset=dataset,
        stages=[stage],
        batch_size=cfg.batch_size,
        shuffle=True,
        fuser=lambda model: DenseFuse(model, rule=cfg.rule),
        test_metrics=[("ma2019", ["EN", "MI", "SD", "SF", "VIF", "AG"]), ("vifb", None)],
        paper=PAPER,
        extra_card=extra,
    )


# --------------------------------------------------------------------------------------------
# Official weights (hli1221/densefuse-pytorch, ``DenseFuse_net``), pickle-free
# --------------------------------------------------------------------------------------------

#: official key prefix -> ours (``conv1.conv2d.weight`` -> ``encoder.conv1.conv.weight``)
OFFICIAL_KEYS = (
    (r"^conv1\.conv2d\.", "encoder.conv1.conv."),
    (r"^DB1\.denseblock\.(\d)\.dense_conv\.conv2d\.", r"encoder.dense.\1.conv."),
    (r"^conv([2-5])\.conv2d\.", r"decoder.conv\1.conv."),
)


def convert_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official PyTorch state dict (1-channel model) with our key names; KeyError for a key
    the map does not know (a foreign checkpoint)."""
    out = {}
    for k, v in state.items():
        for pat, rep in OFFICIAL_KEYS:
            if re.match(pat, k):
                out[re.sub(pat, rep, k)] = v.detach().to(torch.float32).contiguous()
                break
        else:
            raise KeyError(f"unknown DenseFuse key {k!r}")
    return out


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------

#: receptive-field radius: 8 padded 3x3 convolutions, +1 for the l1 rule's 3x3 block
HALO = 9


class DenseFuse(_torch.TorchFuser):
    """Fuser: ``fuse(ir, vi)`` on float32 (H, W) planes in [0, 1] -> fused (H, W) in [0, 1].

    Encodes both planes, fuses the 64-channel features with ``rule`` (``"sum"``: addition, Eq. 4;
    ``"l1"``: Eq. 5-7; ``"average"``), decodes; large images in overlapping tiles whose margin
    exceeds the receptive field (same result as untiled).

    ``output``: how the decoded plane is brought to [0, 1]. ``"minmax"`` (default) stretches it
    linearly to its own minimum and maximum, which is what the authors' code did to every result
    it saved (``scipy.misc.imsave`` of a float image rescales it to 0-255) and so what the papers
    comparing against DenseFuse measured; with the addition rule the decoder sees about twice the
    features of one image and its output exceeds 1 over bright regions, which clipping would flatten.
    ``"clip"`` clips to [0, 1]. The stretch is a whole-image step after the tiles (outside the graph).
    """

    label = "DenseFuse"

    def __init__(
        self,
        net: DenseFuseNet,
        rule: str = "sum",
        device: str | torch.device = "cpu",
        tile: int | None = 768,
        margin: int = 16,
        output: str = "minmax",
    ):
        if rule not in RULES:
            raise InputError(f"unknown DenseFuse fusion rule {rule!r}; choose one of {sorted(RULES)}")
        if output not in ("minmax", "clip"):
            raise InputError(f"DenseFuse output must be 'minmax' or 'clip', got {output!r}")
        self.output = output
        if margin < HALO:
            raise ValueError(f"margin must be >= {HALO}, got {margin}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.rule, self.tile, self.margin = rule, tile, margin
        self._init_step(self._step_fn)

    def modules(self) -> tuple[nn.Module, ...]:
        return (self.net,)

    def _step_fn(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return self.net.fuse(ir, vi, self.rule)

    def graph(self) -> _torch.GraphSpec:
        return _torch.GraphSpec(
            "fuse",
            _torch.StepModule(self._step_fn, self.net),
            key=f"rule={self.rule}",
            note=f"the {self.rule!r} rule is in the graph; tiles of {self.tile} px (if any) are cut outside",
        )

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            a = torch.from_numpy(ir)[None, None].to(self.device)
            b = torch.from_numpy(vi)[None, None].to(self.device)
            raw = _torch.tiled(self.step, a, b, self.tile, self.margin)[0, 0].float().cpu().numpy()
        if self.output == "minmax":
            lo, hi = float(raw.min()), float(raw.max())
            raw = (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)
        return np.clip(raw, 0.0, 1.0).astype(np.float32)


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[DenseFuseNet, dict]:
    """A :class:`DenseFuseNet` from a safetensors file (no pickle): ours, or an official checkpoint
    converted by ``scripts/convert_official.py densefuse``. Returns (net, metadata)."""
    state, meta = _torch.read_weights(path, "densefuse", "DenseFuse")
    net = _torch.load_state(DenseFuseNet(), state, path, "DenseFuse")
    return net.to(device).eval(), meta


@register(
    "densefuse",
    family="self-supervised",
    paper=PAPER,
    summary="DenseFuse: dense-block auto-encoder trained on natural images, addition/l1 rule (TIP 2019)",
    trainable=True,
    weights=WEIGHTS_FILE,
    fuser=DenseFuse,
    config=Config,
    training_spec=training_spec,
)
def create_densefuse(
    rule: str = "sum",
    device: str = "cpu",
    weights: str | Path | None = None,
    tile: int | None = 768,
    output: str = "minmax",
) -> DenseFuse:
    """DenseFuse with the shipped weights (or ``weights=`` a safetensors file), fusion ``rule`` and
    ``output`` scaling (``minmax``: as the authors saved results; ``clip``)."""
    if weights is None:
        weights = _torch.shipped(WEIGHTS_FILE, "densefuse", "DenseFuse")
    net, _ = load_weights(weights, device=device)
    return DenseFuse(net, rule=rule, device=device, tile=tile, output=output)
