"""DIDFuse: Deep Image Decomposition for Infrared and Visible Image Fusion.

Z. Zhao, S. Xu, C. Zhang, J. Liu, J. Zhang, P. Li. IJCAI 2020, pp. 970-976.

The idea (paper Sec. 3): an auto-encoder whose encoder splits an image into a *background*
feature map B (low frequencies, shared by infrared and visible) and a *detail* feature map D
(high frequencies, modality specific). Training is self-supervised: each modality is
reconstructed from its own features while B of the two modalities is pulled together and D is
pushed apart (Eq. 1-4). At test time both sources are encoded, the feature maps are fused by a
simple rule (Eq. 5) and decoded once.

Where the paper and the authors' official code disagree, this file follows the code (it produced
the published numbers) and exposes the paper's variant in :class:`Config`; docs/methods/didfuse.md
lists where they differ.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..nn import parameter_count  # noqa: F401  (ivfuse.methods.didfuse.parameter_count)
from ..nn.fusion import RULES
from ..nn.losses import dssim, gradient_l1
from . import _torch
from ._config import MethodConfig
from .registry import register

PAPER = (
    "Z. Zhao, S. Xu, C. Zhang, J. Liu, J. Zhang, P. Li, DIDFuse: Deep Image Decomposition "
    "for Infrared and Visible Image Fusion, IJCAI 2020"
)
WEIGHTS_FILE = "didfuse.safetensors"
ORDERS = ("imagefolder", "stem")


# --------------------------------------------------------------------------------------------
# Hyper-parameters
# --------------------------------------------------------------------------------------------


@dataclass
class Config(MethodConfig):
    """DIDFuse hyper-parameters; defaults are the official code's (= paper Sec. 4 unless noted).

    Loss, Eq. (4) of the paper, in the official code's form::

        L = alpha3 [MSE(V, V^) + lam DSSIM(V, V^)] + alpha2 [MSE(I, I^) + lam DSSIM(I, I^)]
            + tanh(mean|B_I - B_V|) - alpha1 tanh(mean|D_I - D_V|)
            + alpha4 mean|Sobel(V) - Sobel(V^)|

    Paper vs code (both available):

    * ``alpha1`` - detail weight of Eq. (1): the paper prints 0.05, the code uses 0.5 (default).
    * ``feature_gap`` - Eq. (1) applies tanh to squared L2 norms ``||B_V - B_I||_2^2``
      (``"sq_l2"``); the code applies it to the mean absolute difference (``"mean_abs"``,
      default). Over a batch of 24 x 64 x 128 x 128 features the squared norm saturates tanh.
    * ``pixel_term`` - f(X, X^) of Eq. (3) uses ``||X - X^||_2^2`` (``"sq_l2"``); the code uses
      the mean squared error (``"mse"``, default).
    * ``ssim_padding`` - DSSIM as kornia 0.2-0.4's ``SSIM(11)`` loss (reflect border, default);
      kornia 0.1.x padded with zeros (``"zeros"``).

    Choices the paper leaves open, taken from the code: channel width 64, reflection padding in
    the first and last layer only, BN after every convolution including the output one, one
    shared PReLU slope per layer, PyTorch default initialisation.

    Training recipe (paper Sec. 4 "Hyperparameters setting" and the code): Adam (lr 1e-3,
    betas 0.9/0.999, no weight decay), lr x0.1 after epochs 40 and 80, 120 epochs, batch 24,
    128 x 128 centre crops (no resize) of 180 FLIR pairs in gray, loader not shuffled.

    * ``order`` - which pairs form each of the 8 unshuffled batches. The official code reads
      ``IR1.jpg ... IR180.jpg`` with torchvision's ``ImageFolder``, which sorts file names as
      strings: 1, 10, 100-109, 11, 110-119, 12, ... so the first batch is pairs
      {1, 10, 100-109, 11, 110-119, 12} and the last (short) batch {89, 9, 90-99}
      (``"imagefolder"``, default: stems are compared with leading zeros stripped, so the
      zero-padded ``001 ... 180`` give the official order). ``"stem"`` keeps plain stem order
      (1-24, 25-48, ..., 169-180), which the shipped weights were trained with. The order decides
      the batch compositions (BatchNorm normalises by batch statistics in training) and which
      batches leave the final BN running statistics used at test time.

    * ``bn_init`` - initial BatchNorm scale gamma: ``"ones"`` (PyTorch >= 1.2, default) or
      ``"uniform"``, U(0, 1) as PyTorch <= 1.1 initialised it (pytorch/pytorch#12259). The
      official repository pins no PyTorch version; kornia 0.1.x, whose SSIM padded with zeros,
      ran on PyTorch 1.0/1.1, so a 2019 run may have had both (``ssim_padding="zeros"``).

    BatchNorm protocol (official code): the encoder runs on the visible batch, then on the
    infrared batch, then the decoder on each, all in train mode, so every BN layer normalises
    each modality by its own batch statistics and updates its running statistics twice per
    iteration (momentum 0.1, unbiased variance): 120 x 8 x 2 = 1920 updates in a full run.
    """

    channels: int = 64
    alpha1: float = 0.5  # detail term, Eq. (1); paper text: 0.05
    alpha2: float = 2.0  # infrared reconstruction, Eq. (2)
    alpha3: float = 2.0  # visible reconstruction, Eq. (2)
    alpha4: float = 10.0  # visible gradient term, Eq. (2)
    lam: float = 5.0  # SSIM weight inside f(X, X^), Eq. (3)
    feature_gap: str = "mean_abs"  # "mean_abs" (code) | "sq_l2" (paper Eq. 1)
    pixel_term: str = "mse"  # "mse" (code) | "sq_l2" (paper Eq. 3)
    ssim_window: int = 11
    ssim_padding: str = "reflect"  # kornia 0.2-0.4; "zeros" for kornia 0.1
    # optimisation (Sec. 4)
    epochs: int = 120
    batch_size: int = 24
    lr: float = 1e-3
    lr_milestones: tuple[int, ...] = (40, 80)
    lr_gamma: float = 0.1
    crop: int = 128
    shuffle: bool = False  # official loader order: the same 8 batches every epoch
    order: str = "imagefolder"  # "imagefolder" (official file-name sort) | "stem"
    bn_init: str = "ones"  # BN gamma init: "ones" (PyTorch >= 1.2) | "uniform" (U(0,1), <= 1.1)
    # inference
    rule: str = "sum"  # fusion strategy of Sec. 3.4: "sum" (code default) | "average" | "l1"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        if self.feature_gap not in ("mean_abs", "sq_l2"):
            raise ValueError(f"feature_gap must be 'mean_abs' or 'sq_l2', got {self.feature_gap!r}")
        if self.pixel_term not in ("mse", "sq_l2"):
            raise ValueError(f"pixel_term must be 'mse' or 'sq_l2', got {self.pixel_term!r}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)}, got {self.rule!r}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        if self.bn_init not in ("ones", "uniform"):
            raise ValueError(f"bn_init must be 'ones' or 'uniform', got {self.bn_init!r}")


# --------------------------------------------------------------------------------------------
# Network (Sec. 3.2, Table 1 of the paper; layer table in design/didfuse.md)
# --------------------------------------------------------------------------------------------


class ConvBNAct(nn.Module):
    """pad 1 px -> 3x3 conv (stride 1, bias) -> BatchNorm -> activation."""

    def __init__(self, cin: int, cout: int, act: str, reflect: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect" if reflect else "zeros")
        self.bn = nn.BatchNorm2d(cout)
        if act == "prelu":
            self.act: nn.Module = nn.PReLU()  # one shared slope, init 0.25
        elif act == "tanh":
            self.act = nn.Tanh()
        elif act == "sigmoid":
            self.act = nn.Sigmoid()
        else:
            raise ValueError(f"unknown activation {act!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Encoder(nn.Module):
    """conv1 -> conv2 -> {conv3 = background B, conv4 = detail D}; also returns f1, f2 skips."""

    def __init__(self, channels: int = 64):
        super().__init__()
        c = channels
        self.conv1 = ConvBNAct(1, c, "prelu", reflect=True)
        self.conv2 = ConvBNAct(c, c, "prelu")
        self.conv3 = ConvBNAct(c, c, "tanh")  # background, in (-1, 1)
        self.conv4 = ConvBNAct(c, c, "tanh")  # detail, in (-1, 1)

    def forward(self, x: torch.Tensor):
        f1 = self.conv1(x)
        f2 = self.conv2(f1)
        return f1, f2, self.conv3(f2), self.conv4(f2)


class Decoder(nn.Module):
    """conv5 on [B, D] -> conv6 on [., f2] -> conv7 on [., f1] -> image in (0, 1)."""

    def __init__(self, channels: int = 64):
        super().__init__()
        c = channels
        self.conv5 = ConvBNAct(2 * c, c, "prelu")
        self.conv6 = ConvBNAct(2 * c, c, "prelu")
        self.conv7 = ConvBNAct(2 * c, 1, "sigmoid", reflect=True)

    def forward(self, f1, f2, b, d) -> torch.Tensor:
        x = self.conv5(torch.cat([b, d], dim=1))
        x = self.conv6(torch.cat([x, f2], dim=1))
        return self.conv7(torch.cat([x, f1], dim=1))


class DIDFuseNet(nn.Module):
    """Encoder + decoder. ``forward(vi, ir)`` is the training pass (Fig. 1a of the paper)."""

    def __init__(self, channels: int = 64):
        super().__init__()
        self.encoder = Encoder(channels)
        self.decoder = Decoder(channels)

    def forward(self, vi: torch.Tensor, ir: torch.Tensor) -> dict[str, torch.Tensor]:
        # Two separate encoder passes, as in the official code: BatchNorm sees each modality's
        # batch statistics on their own.
        f1v, f2v, bv, dv = self.encoder(vi)
        f1i, f2i, bi, di = self.encoder(ir)
        return {
            "vi_hat": self.decoder(f1v, f2v, bv, dv),
            "ir_hat": self.decoder(f1i, f2i, bi, di),
            "B_vi": bv,
            "D_vi": dv,
            "B_ir": bi,
            "D_ir": di,
        }

    def fuse(self, ir: torch.Tensor, vi: torch.Tensor, rule: str = "sum") -> torch.Tensor:
        """Test pass (Fig. 1b): encode both, fuse f1, f2, B and D with ``rule``, decode once."""
        fuse = RULES[rule]
        feats_i = self.encoder(ir)
        feats_v = self.encoder(vi)
        return self.decoder(*(fuse(a, b) for a, b in zip(feats_i, feats_v, strict=True)))


def fold_batchnorm(net: DIDFuseNet) -> DIDFuseNet:
    """Copy of an eval-mode network with every BatchNorm folded into its convolution.

    ``BN(conv(x)) = s * (W x + b - mu) + beta`` with ``s = gamma / sqrt(var + eps)`` becomes
    one convolution with weights ``s W`` and bias ``s (b - mu) + beta``. Same function at
    inference (BN uses running statistics), one pass over the feature map fewer per layer.
    """
    import copy

    folded = copy.deepcopy(net).eval()
    for m in folded.modules():
        if isinstance(m, ConvBNAct) and isinstance(m.bn, nn.BatchNorm2d):
            bn, conv = m.bn, m.conv
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
            m.bn = nn.Identity()
    return folded


# --------------------------------------------------------------------------------------------
# Loss (Eq. 1-4)
# --------------------------------------------------------------------------------------------


def _pixel(x: torch.Tensor, y: torch.Tensor, form: str) -> torch.Tensor:
    d = (x - y) ** 2
    return d.mean() if form == "mse" else d.sum()


def _gap(a: torch.Tensor, b: torch.Tensor, form: str) -> torch.Tensor:
    return torch.tanh((a - b).abs().mean() if form == "mean_abs" else ((a - b) ** 2).sum())


def didfuse_loss(
    cfg: Config, vi: torch.Tensor, ir: torch.Tensor, out: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """All loss terms of Eq. (4) (unweighted) plus the weighted ``"total"``.

    Terms: ``pixel_vi``/``pixel_ir`` (MSE or squared norm), ``dssim_vi``/``dssim_ir``,
    ``gap_background`` = tanh(gap of B), ``gap_detail`` = tanh(gap of D), ``gradient``.
    """
    vi_hat, ir_hat = out["vi_hat"], out["ir_hat"]
    t = {
        "pixel_vi": _pixel(vi, vi_hat, cfg.pixel_term),
        "dssim_vi": dssim(vi, vi_hat, window_size=cfg.ssim_window, padding=cfg.ssim_padding),
        "pixel_ir": _pixel(ir, ir_hat, cfg.pixel_term),
        "dssim_ir": dssim(ir, ir_hat, window_size=cfg.ssim_window, padding=cfg.ssim_padding),
        "gap_background": _gap(out["B_ir"], out["B_vi"], cfg.feature_gap),
        "gap_detail": _gap(out["D_ir"], out["D_vi"], cfg.feature_gap),
        "gradient": gradient_l1(vi, vi_hat),
    }
    t["total"] = (
        cfg.alpha3 * (t["pixel_vi"] + cfg.lam * t["dssim_vi"])  # alpha3 f(V, V^), Eq. (3)
        + cfg.alpha2 * (t["pixel_ir"] + cfg.lam * t["dssim_ir"])  # alpha2 f(I, I^)
        + t["gap_background"]  # Phi(||B_V - B_I||), Eq. (1)
        - cfg.alpha1 * t["gap_detail"]  # - alpha1 Phi(||D_V - D_I||)
        + cfg.alpha4 * t["gradient"]  # alpha4 ||grad V - grad V^||_1, Eq. (2)
    )
    return t


# --------------------------------------------------------------------------------------------
# Training spec for ivfuse.train
# --------------------------------------------------------------------------------------------


def imagefolder_key(stem: str) -> str:
    """Sort key reproducing torchvision ``ImageFolder``'s order of the official file names.

    The official files are ``IR<n>.jpg`` / ``VIS<n>.jpg`` (n unpadded) and ImageFolder sorts
    names as strings; ivfuse's copies are named ``<n>`` zero-padded to 3 digits. Stripping the
    leading zeros gives back ``<n>``, and sorting ``<n>`` as a string orders the names exactly as
    ``IR<n>.jpg`` sort (``"."`` sorts before every digit, as a shorter prefix does).
    """
    return (stem.lstrip("0") or "0") if stem.isdigit() else stem


def order_pairs(dataset, order: str):
    """Put ``dataset`` (a :class:`ivfuse.data.training.CenterCropPairs`) in the batch order
    ``order`` (``"imagefolder"`` or ``"stem"``, see :class:`Config`); returns it."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if order == "imagefolder":
        perm = sorted(range(len(dataset.pairs)), key=lambda i: imagefolder_key(dataset.pairs[i].stem))
        dataset.pairs = [dataset.pairs[i] for i in perm]
        dataset.ir = dataset.ir[perm]
        dataset.vi = dataset.vi[perm]
    return dataset


def build_training_net(cfg: Config) -> DIDFuseNet:
    """A fresh network for training, with the BatchNorm scale initialisation ``cfg.bn_init``."""
    net = DIDFuseNet(cfg.channels)
    if cfg.bn_init == "uniform":
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight)
    return net


def training_spec(config: Config | None = None):
    """The official training recipe as a :class:`ivfuse.train.spec.TrainSpec`."""
    from ..data.training import CenterCropPairs
    from ..train.spec import Stage, TrainSpec

    cfg = config or Config()

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return didfuse_loss(cfg, batch["vi"], batch["ir"], model(batch["vi"], batch["ir"]))

    stage = Stage(
        name="autoencoder",
        epochs=cfg.epochs,
        loss=loss,
        optimizer=lambda params: torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8),
        scheduler=lambda opt: torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=list(cfg.lr_milestones), gamma=cfg.lr_gamma
        ),
    )
    return TrainSpec(
        method="didfuse",
        config=cfg,
        default_config=Config(),
        build_model=lambda: build_training_net(cfg),
        dataset=lambda root: order_pairs(CenterCropPairs(root, crop=cfg.crop), cfg.order),
        stages=[stage],
        batch_size=cfg.batch_size,
        shuffle=cfg.shuffle,
        fuser=lambda model: DIDFuse(model, rule=cfg.rule),
        # the paper's Table 4 convention (metrics.md sec. 6) and the full VIFB set
        test_metrics=[("ma2019", ["EN", "MI", "SD", "VIF", "AG"]), ("vifb", None)],
        paper=PAPER,
    )


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------

#: receptive-field radius of the fusion network: 6 padded 3x3 convolutions (+1 for the L1 box)
HALO = 8


class DIDFuse(_torch.TorchFuser):
    """Fuser: ``fuse(ir, vi)`` on float32 (H, W) luma planes in [0, 1] -> fused (H, W) in [0, 1].

    Inference runs a copy of the network with BatchNorm folded into the convolutions, in
    channels-last memory format under ``torch.inference_mode`` (same function as the eval-mode
    network; about 1.5x eager fp32 on a 2-core CPU, ``python -m benchmarks.bench_deep`` times it).
    ``compile=True`` wraps it in ``torch.compile`` (about 1.7x, same results).

    ``precision="bf16"`` runs the 64-channel interior (conv2-conv6, over 99 % of the
    multiply-adds) under bfloat16 autocast, while the image-facing layers (conv1 on the 8-bit
    input, conv7 producing the output) stay in float32. bfloat16 keeps only
    8 significant bits, so rounding the input or the output to it alone costs up to a gray
    level; autocasting the whole network puts trained DIDFuse up to ~2 gray levels off fp32,
    the mixed split stays within about 0.4. Fast only on CPUs with AVX512-BF16/AMX (or GPUs).

    Large images are fused in overlapping tiles: every tile is extended by a margin larger than
    the network's receptive-field radius, so the cropped tile centres equal the untiled result
    (no seams) while memory stays bounded by the tile size.

    ``parts=DIR`` (``-p parts=DIR``): the decomposition of Fig. 3 of the paper, written by
    :meth:`ivfuse.api.Pipeline.fuse_files` beside each fused image as ``DIR/{stem}_NAME.png`` for
    the names of :data:`PARTS`: channel ``parts_channel`` (default 0, the first channel, which
    Fig. 3 shows) of the background (conv3) and detail (conv4) maps of each source and of their
    fusion by the rule (Eq. 5). :meth:`parts` returns the raw values, ``side_maps()`` the images
    (:func:`display_parts`). The maps are computed on the whole image, not in tiles.
    """

    label = "DIDFuse"
    torch_bf16 = True

    def __init__(
        self,
        net: DIDFuseNet,
        rule: str = "sum",
        device: str | torch.device = "cpu",
        tile: int | None = 768,
        margin: int = 16,
        precision: str = "fp32",
        compile: bool = False,
        parts: str | Path | None = None,
        parts_channel: int = 0,
    ):
        if rule not in RULES:
            raise InputError(f"unknown DIDFuse fusion rule {rule!r}; choose one of {sorted(RULES)}")
        channels = net.encoder.conv3.conv.out_channels
        if (
            not isinstance(parts_channel, int)
            or isinstance(parts_channel, bool)
            or not 0 <= parts_channel < channels
        ):
            raise InputError(f"parts_channel must be an integer in [0, {channels}), got {parts_channel!r}")
        if precision not in ("fp32", "bf16"):
            raise InputError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if margin < HALO:
            raise ValueError(f"margin must be >= {HALO}, got {margin}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.rule = rule
        self.tile = tile
        self.margin = margin
        self.precision = precision
        if precision == "bf16" and self.device.type == "cpu" and not _torch.cpu_has_bf16():
            warnings.warn(
                "precision='bf16': this CPU has no native bfloat16 (AVX512-BF16/AMX), so bf16 "
                "is emulated and slower than fp32",
                RuntimeWarning,
                stacklevel=2,
            )
        self._infer = fold_batchnorm(self.net).to(memory_format=torch.channels_last)
        self._init_step(torch.compile(self._fuse_folded, dynamic=False) if compile else self._fuse_folded)
        self.parts_channel = parts_channel
        if parts is not None:  # Fig. 3: written by ivfuse.api.Pipeline beside each fused image
            self._write_maps({n: str(Path(parts) / f"{{stem}}_{n}.png") for n in PARTS})

    def modules(self) -> tuple[nn.Module, ...]:
        """The trained network (inference runs its BatchNorm-folded copy)."""
        return (self.net,)

    def networks(self) -> tuple[nn.Module, ...]:
        return (self.net, self._infer)

    def _interior(self):
        """Context for conv2-conv6: bfloat16 autocast when ``precision="bf16"``."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """conv1-conv4 of the folded network on one source: (f1, f2, B, D), NHWC."""
        enc = self._infer.encoder
        f1 = enc.conv1(x.contiguous(memory_format=torch.channels_last))
        with self._interior():
            f2 = enc.conv2(f1)
            return f1, f2, enc.conv3(f2), enc.conv4(f2)  # f2, b, d stay bf16 under precision="bf16"

    def _fuse_folded(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """Encode both sources, fuse f1, f2, B, D with the rule, decode (folded BN, NHWC)."""
        dec, fuse = self._infer.decoder, RULES[self.rule]
        feats = [self._encode(x) for x in (ir, vi)]
        f1, f2, b, d = (fuse(a, c) for a, c in zip(*feats, strict=True))
        with self._interior():
            x = dec.conv6(torch.cat([dec.conv5(torch.cat([b, d], dim=1)), f2], dim=1))
        return dec.conv7(torch.cat([x.float(), f1], dim=1))

    def graph(self) -> _torch.GraphSpec:
        """The fusion step for :mod:`ivfuse.backends`: both encoder passes, the rule, the decoder."""
        if self.precision != "fp32":
            raise InputError("DIDFuse exports its fp32 network; backends set their own precision")
        return _torch.GraphSpec(
            "fuse",
            _torch.StepModule(self._fuse_folded, self._infer),
            key=f"rule={self.rule}",
            note=f"the {self.rule!r} rule is in the graph; tiles of {self.tile} px (if any) are cut outside",
        )

    def fuse_tensor(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """(1, 1, H, W) tensors on the fuser's device -> (1, 1, H, W), tiled when large."""
        return _torch.tiled(self.step, ir, vi, self.tile, self.margin)

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        if self._map_paths:
            self._keep_maps(display_parts(self.parts(ir, vi)))
        return _torch.run_planes(self.fuse_tensor, ir, vi, self.device)

    def _batch_planes(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        if self._map_paths:  # the side maps are those of the last pair
            self._keep_maps(display_parts(self.parts(ir[-1], vi[-1])))
        return _torch.run_batch(self.fuse_tensor, ir, vi, self.device)

    def parts(self, ir: np.ndarray, vi: np.ndarray) -> dict[str, np.ndarray]:
        """The maps of Fig. 3 for one pair of (H, W) planes in [0, 1]: :func:`feature_parts` of the
        (BatchNorm-folded) encoder's outputs, channel :attr:`parts_channel`, raw values."""
        with torch.inference_mode():
            ti, tv = (
                torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None].to(self.device)
                for x in (ir, vi)
            )
            return feature_parts(self._encode(ti), self._encode(tv), self.rule, self.parts_channel)


#: the maps of Fig. 3 (and their fusion, Eq. 5) that ``parts=DIR`` writes, one channel each
PARTS = ("base_ir", "detail_ir", "base_vi", "detail_vi", "base_fused", "detail_fused")


def feature_parts(
    feats_ir: tuple[torch.Tensor, ...],
    feats_vi: tuple[torch.Tensor, ...],
    rule: str = "sum",
    channel: int = 0,
) -> dict[str, np.ndarray]:
    """Fig. 3 of the paper and the fusion layer of Eq. (5), for the first sample of a batch.

    ``feats_*`` are the encoder's outputs ``(f1, f2, B, D)`` of each source (B = conv3, the
    background map; D = conv4, the detail map). Returns float32 (H, W) maps, raw values (the
    sources' in tanh's (-1, 1)): ``base_ir`` = B_I, ``detail_ir`` = D_I, ``base_vi`` = B_V,
    ``detail_vi`` = D_V, ``base_fused`` = B_F = Fusion(B_I, B_V), ``detail_fused`` = D_F, each at
    channel ``channel``. The rule fuses the whole maps before the channel is taken (the L1-norm
    rule's weights sum the activity over all channels, Sec. 3.4).

    Which channel: Fig. 3 "displays the first channels of feature maps which are generated by conv3
    and conv4" (Sec. 4.2), so the default is channel 0, not a mean: a mean over the 64 channels
    mixes maps of opposite signs and would show none of them as the paper does.
    """
    fuse = RULES[rule]
    b_i, d_i, b_v, d_v = feats_ir[2], feats_ir[3], feats_vi[2], feats_vi[3]
    maps = {
        "base_ir": b_i,
        "detail_ir": d_i,
        "base_vi": b_v,
        "detail_vi": d_v,
        "base_fused": fuse(b_i, b_v),
        "detail_fused": fuse(d_i, d_v),
    }
    return {k: v[0, channel].float().cpu().numpy().astype(np.float32) for k, v in maps.items()}


def display_parts(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`feature_parts` as images in [0, 1]: ``v / (2 m) + 1/2``, where ``m`` is the largest
    ``|v|`` of the map's triple (``base_*`` or ``detail_*``: infrared, visible, fused).

    Zero is mid-gray and a triple shares one linear scale, so signs and ratios survive (a fused
    map that is the sum of two equal maps lies twice as far from gray as each), and the brightness
    of the three panels compares, as in the paper's figure (whose scaling the paper does not give).
    """
    top: dict[str, float] = {}
    for k, v in maps.items():
        kind = k.split("_", 1)[0]
        top[kind] = max(top.get(kind, 0.0), float(np.abs(v).max()))
    out: dict[str, np.ndarray] = {}
    for k, v in maps.items():  # in the order given (PARTS: Fig. 3's, then the fused maps)
        m = top[k.split("_", 1)[0]]
        out[k] = (v / (2 * m) + 0.5 if m > 0 else np.full_like(v, 0.5)).astype(np.float32)
    return out


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[DIDFuseNet, dict]:
    """Build a :class:`DIDFuseNet` from a safetensors file (no pickle). Returns (net, metadata)."""
    state, meta = _torch.read_weights(path, "didfuse", "DIDFuse")
    net = DIDFuseNet(int(_torch.config_of(meta).get("channels", 64)))
    _torch.load_state(net, state, path, "DIDFuse")
    return net.to(device).eval(), meta


@register(
    "didfuse",
    family="self-supervised",
    paper=PAPER,
    summary="DIDFuse: auto-encoder splitting background/detail features (IJCAI 2020)",
    trainable=True,
    weights=WEIGHTS_FILE,
    fuser=DIDFuse,
    config=Config,
    training_spec=training_spec,
    paper_tables="didfuse.json",
)
def create_didfuse(
    rule: str = "sum",
    device: str = "cpu",
    weights: str | Path | None = None,
    tile: int | None = 768,
    precision: str = "fp32",
    compile: bool = False,
    parts: str | Path | None = None,
    parts_channel: int = 0,
) -> DIDFuse:
    """DIDFuse with the shipped weights (or ``weights=`` a safetensors file) and fusion ``rule``;
    ``parts=DIR`` also writes the background/detail maps of Fig. 3 and their fusion (:data:`PARTS`,
    channel ``parts_channel``) as ``DIR/{stem}_NAME.png``."""
    if weights is None:
        weights = _torch.shipped(WEIGHTS_FILE, "didfuse", "DIDFuse")
    net, _ = load_weights(weights, device=device)
    return DIDFuse(
        net,
        rule=rule,
        device=device,
        tile=tile,
        precision=precision,
        compile=compile,
        parts=parts,
        parts_channel=parts_channel,
    )
