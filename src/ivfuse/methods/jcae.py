"""JCAE: A Joint Convolution Auto-encoder Network for Infrared and Visible Image Fusion.

Z. Zhang, Y. Gao, M. Xiong, X. Luo, X.-J. Wu (Suzhou University of Science and Technology;
Jiangnan University).

The idea (paper Sec. 2.1-2.2, Fig. 1c, Fig. 2): the encoder of an auto-encoder is split into
two *private* branches, one per modality (not shared), that learn what distinguishes infrared
from visible (complementary features), and one *common* branch, shared by both modalities, that
learns what they have in common (redundant features). One decoder, shared by everything, turns
features back into images, and each source is reconstructed as the sum of the decoded common
and the decoded private features, Eq. (4)::

    min (A - [g_dec(g_enc^C(A)) + g_dec(g_enc^PA(A))]) + (B - [g_dec(g_enc^C(B)) + g_dec(g_enc^PB(B))])

The encoder layers are VGG19's first three convolutions with the pooling between them (Sec.
2.4), optionally initialised from ImageNet weights. Training minimises L_mse + lambda (1 - SSIM)
on both reconstructions (Eq. 5-7). To fuse (Sec. 2.5), the private features of the two sources
are fused by choose-max (Eq. 8), the common features by an activity-switched choose-max /
weighted average (Eq. 9), and both fused feature sets are decoded as in training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, TrainingError
from ..nn import parameter_count  # noqa: F401  (ivfuse.methods.jcae.parameter_count)
from ..nn.losses import ssim_map
from ._config import Ablation, MethodConfig
from ._torch import (
    TorchFuser,
    config_of,
    load_state,
    read_weights,
    run_batch,
    run_planes,
    sha256_file,
    shipped,
)
from .registry import register

PAPER = (
    "Z. Zhang, Y. Gao, M. Xiong, X. Luo, X.-J. Wu, A Joint Convolution Auto-encoder Network "
    "for Infrared and Visible Image Fusion"
)
WEIGHTS_FILE = "jcae.safetensors"
LABEL = "JCAE"

#: fusion rules of :class:`JCAE`: the paper's (Eq. 8 + Eq. 9), and two plain ones for study
FUSION_RULES = ("paper", "sum", "average")

#: torchvision's ImageNet input normalisation, which its VGG19 weights expect (RGB order)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: the paper's training input, width x height: ~1400 pairs resized to 360 x 280 (Sec. 3.1)
PAPER_SIZE = (360, 280)

#: keys of torchvision's ``vgg19`` state dict for conv1_1, conv1_2 and conv2_1 (Sec. 2.4)
VGG19_KEYS = ("features.0", "features.2", "features.5")


# --------------------------------------------------------------------------------------------
# Hyper-parameters
# --------------------------------------------------------------------------------------------


@dataclass
class Config(MethodConfig):
    """JCAE hyper-parameters; defaults are the paper's where it gives them.

    From the paper: Adam with lr 3e-4 (Sec. 3.1); loss ``L_mse + lambda (1 - SSIM)`` with
    lambda = 100 (Eq. 5, 7, Sec. 3.2) on both modalities' reconstructions (Eq. 4 sums them);
    encoder = VGG19 conv1_1 (64), conv1_2 (64), max-pool 2x2, conv2_1 (128) (Sec. 2.4), so the
    encoder output has 128 feature maps (Sec. 3.3) at half the input size; the gray input is
    replicated to 3 channels for the VGG layers (Sec. 2.4); threshold T = (h w) 3/5 of Eq. (9).

    Choices where the paper is silent or contradicts itself:

    * ``pixel_loss`` - Eq. (6) prints ``sqrt(1/MN) sum [I - O]``, the root of a mean *signed*
      difference (which cancels and can be negative): the square is missing. We read it as the
      RMSE ``sqrt(mean((I - O)^2))`` (``"rmse"``, default): it keeps the root the equation
      prints, and with ``pixel_scale`` = 255 (gray levels, the scale of the paper's Keras VGG19
      input) it is "an approximated order of magnitude" of ``100 (1 - SSIM)`` as Sec. 3.2 says
      lambda = 100 achieves (a converged auto-encoder: RMSE a few gray levels, 1 - SSIM a few
      hundredths). ``"mse"`` is the squared version the text's name ("mean squared error")
      suggests. The RMSE is taken per image, then averaged over the batch.
    * ``ssim_loss`` - ``False`` trains with the pixel term only (the "MSE-only" model of
      Fig. 4). SSIM is the library's Gaussian SSIM (11 x 11, sigma 1.5, Wang et al. 2004)
      on [0, 1] images; ``1 - SSIM`` is ``1 - mean(SSIM map)``.
    * ``common_branch`` - ``False`` removes the common branch: a plain two-branch auto-encoder
      (Fig. 1b with a shared decoder), each image reconstructed from its private features only
      and fused by choose-max of the private features (ablation).
    * ``vgg19`` - path of a local VGG19 ImageNet state dict (torchvision ``vgg19-*.pth`` or a
      safetensors file with the same keys) that initialises conv1_1, conv1_2, conv2_1 of *every*
      encoder branch (Sec. 2.4 transfers them into "the encoder layer"). ``None``: PyTorch's
      default initialisation (Kaiming-uniform), recorded in the card as ``init: random``.
    * Input: gray in [0, 1], replicated to 3 channels and normalised with torchvision's
      ImageNet mean/std, the input convention of the VGG19 weights accepted here (the paper's
      Keras weights expect BGR 0-255 minus the mean; a fixed affine map either way).
    * Activations: ReLU after every encoder convolution (VGG19's), so the encoder outputs are
      >= 0 and the "non-zero activations" Eq. (9) counts exist; ReLU in the decoder except its
      last convolution, which is linear: the two decoder outputs are *added* (Eq. 4), so each
      must be free to carry any part of the image; the fused image is clipped to [0, 1].
    * Decoder widths mirror the encoder: conv 128->64, nearest-neighbour 2x upsampling (Keras'
      ``UpSampling2D`` default; the paper used Keras), conv 64->64, conv 64->1; all 3 x 3.
    * Padding: every convolution pads by reflection (not VGG's zeros): fewer border artefacts,
      and the input normalisation then folds exactly into a 1-channel first convolution for
      inference. Odd sizes: the input is reflect-padded by one row/column to even size before
      the pooling and the output is cropped back.
    * Eq. (9): L^m_K counts the non-zero activations of feature map m of source K. The paper
      leaves open which K decides; ``activity="min"`` (default) averages a map only when both
      sources reach T (a map active in one source only is complementary: choose-max), and
      ``"union"`` counts the positions where either source is non-zero (the set notation of
      the text). T = ``activity_ratio`` x h x w, h x w the size of the feature map. Where
      ``C_A + C_B = 0`` the weights are 1/2.
    * Training data: the paper resizes "more than 1400 pairs of grayscale images of the IFCNN
      dataset" to 360 x 280. IFCNN's data set (Zhang et al., Information Fusion 2020, Sec. 3.3) is
      multi-focus, NYU-D2's 1,449 indoor photographs blurred by depth, not infrared-visible pairs.
      We have neither; ``scripts/focus_pairs_folder.py`` builds the closest set from natural
      photographs (random region masks for the depth), and the shipped weights train on it:
      1,500 pairs from the 500 BSDS500 photographs (leak-free: JCAE is scored on TNO only). The
      weights before them trained on the 221 RoadScene infrared-visible pairs; the JCAE page of
      the docs compares the two (Training). By default we train on random ``crop`` x ``crop``
      crops (aligned in both modalities) with random horizontal flips of the training folder;
      ``resize=[360, 280]`` trains on whole pairs resized to the paper's 360 x 280 (width x
      height, bicubic, the aspect ratio not kept, as the paper's resize) instead, 6.2 times the
      pixels per sample of a 128 x 128 crop. The card's recipe is the paper's 360 x 280, so a
      crop run lists ``resize`` among its ``deviations_from_recipe``. ``batch_size`` is not given
      by the paper.
    """

    lam: float = 100.0  # lambda of Eq. (5), Sec. 3.2
    ssim_loss: bool = True  # False: MSE-only ablation of Fig. 4
    pixel_loss: str = "rmse"  # "rmse" | "mse", Eq. (6), see above
    pixel_scale: float = 255.0  # the pixel term in gray levels
    common_branch: bool = True  # False: plain two-branch AE (ablation)
    vgg19: str | None = None  # VGG19 ImageNet state dict for the encoder (Sec. 2.4)
    # optimisation (Sec. 3.1)
    epochs: int = 30  # Fig. 5: the loss has converged after about 30 epochs
    batch_size: int = 4
    lr: float = 3e-4
    crop: int = 128
    resize: list[int] | None = None  # [width, height]: whole pairs resized (the paper: [360, 280])
    flip: bool = True
    # inference (Sec. 2.5)
    rule: str = "paper"  # "paper" (Eq. 8 + 9) | "sum" | "average"
    activity: str = "min"  # which count of Eq. (9) decides: "min" | "union"
    activity_ratio: float = 0.6  # T = (h w) 3/5

    def __post_init__(self) -> None:
        if self.pixel_loss not in ("rmse", "mse"):
            raise ValueError(f"pixel_loss must be 'rmse' or 'mse', got {self.pixel_loss!r}")
        if self.rule not in FUSION_RULES:
            raise ValueError(f"rule must be one of {list(FUSION_RULES)}, got {self.rule!r}")
        if self.activity not in ("min", "union"):
            raise ValueError(f"activity must be 'min' or 'union', got {self.activity!r}")
        if self.resize is not None:
            if len(self.resize) != 2 or any(int(v) < 8 for v in self.resize):
                raise ValueError(f"resize must be [width, height] of at least 8 pixels, got {self.resize!r}")
            self.resize = [int(v) for v in self.resize]
        if self.vgg19 is not None:
            self.vgg19 = str(self.vgg19)


# --------------------------------------------------------------------------------------------
# Network (Sec. 2.2, Fig. 2, Eq. 2-4; layers of Sec. 2.4)
# --------------------------------------------------------------------------------------------


def _conv(cin: int, cout: int, reflect: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect" if reflect else "zeros")


class GrayToVGG(nn.Module):
    """Gray (N, 1, H, W) in [0, 1] -> 3 replicated channels normalised as VGG19 expects."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.expand(-1, 3, -1, -1) - self.mean) / self.std


class EncoderBranch(nn.Module):
    """One encoder branch: VGG19 conv1_1 (64) -> conv1_2 (64) -> max-pool -> conv2_1 (128), ReLUs."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv1 = _conv(in_channels, 64, reflect=True)  # reflect: see Config (padding)
        self.conv2 = _conv(64, 64)
        self.conv3 = _conv(64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.relu(self.conv3(F.max_pool2d(x, 2)))


class Decoder(nn.Module):
    """The shared decoder, mirroring a branch: conv 128->64, 2x nearest upsampling, 64->64, 64->1."""

    def __init__(self):
        super().__init__()
        self.conv1 = _conv(128, 64)
        self.conv2 = _conv(64, 64)
        self.conv3 = _conv(64, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(F.relu(self.conv1(f)), scale_factor=2, mode="nearest")
        return self.conv3(F.relu(self.conv2(x)))  # linear: two outputs are added (Eq. 4)


def _pad_even(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = h % 2, w % 2
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x, h, w


class JCAENet(nn.Module):
    """Private infrared/visible branches, a shared common branch and a shared decoder (Fig. 2).

    ``forward(ir, vi)`` is the feature-learning stage: both reconstructions of Eq. (4) and the
    four feature maps. ``fuse(ir, vi, rule)`` is the fusion stage (Sec. 2.5).
    """

    def __init__(self, common_branch: bool = True):
        super().__init__()
        self.input = GrayToVGG()
        self.private_ir = EncoderBranch()
        self.private_vi = EncoderBranch()
        self.common = EncoderBranch() if common_branch else None
        self.decoder = Decoder()

    @property
    def has_common(self) -> bool:
        return self.common is not None

    def encode(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of both sources (inputs already of even size)."""
        xi, xv = self.input(ir), self.input(vi)
        feats = {"P_ir": self.private_ir(xi), "P_vi": self.private_vi(xv)}
        if self.common is not None:  # one shared branch: both modalities in one batch
            feats["C_ir"], feats["C_vi"] = self.common(torch.cat([xi, xv])).chunk(2)
        return feats

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        ir, h, w = _pad_even(ir)
        vi, _, _ = _pad_even(vi)
        feats = self.encode(ir, vi)
        n = ir.shape[0]
        if self.common is None:
            dec = self.decoder(torch.cat([feats["P_ir"], feats["P_vi"]]))[..., :h, :w]
            ir_hat, vi_hat = dec[:n], dec[n:]
        else:  # the shared decoder on all four feature sets at once
            dec = self.decoder(torch.cat([feats["C_ir"], feats["P_ir"], feats["C_vi"], feats["P_vi"]]))
            dec = dec[..., :h, :w]
            ir_hat = dec[:n] + dec[n : 2 * n]  # g_dec(g_enc^C(A)) + g_dec(g_enc^PA(A)), Eq. (4)
            vi_hat = dec[2 * n : 3 * n] + dec[3 * n :]
        return {"ir_hat": ir_hat, "vi_hat": vi_hat, **feats}

    def fuse(
        self,
        ir: torch.Tensor,
        vi: torch.Tensor,
        rule: str = "paper",
        activity: str = "min",
        activity_ratio: float = 0.6,
    ) -> torch.Tensor:
        """Fusion stage: encode both, fuse private and common features, decode both and add."""
        ir, h, w = _pad_even(ir)
        vi, _, _ = _pad_even(vi)
        f = self.encode(ir, vi)
        fused = fuse_features(f, rule, activity, activity_ratio)
        return sum(self.decoder(x) for x in fused)[..., :h, :w]


# --------------------------------------------------------------------------------------------
# Fusion rules (Sec. 2.5, Eq. 8-9)
# --------------------------------------------------------------------------------------------


def fuse_private(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. (8): choose-max, ``F_S(x, y) = max(F_A^m(x, y), F_B^m(x, y))`` for every map m."""
    return torch.maximum(a, b)


def activity_counts(a: torch.Tensor, b: torch.Tensor, activity: str = "min") -> torch.Tensor:
    """L^m of Eq. (9), shape (N, M): non-zero activations of each feature map.

    ``"min"``: ``min(L^m_A, L^m_B)``; ``"union"``: positions where ``F_A^m`` or ``F_B^m`` is
    non-zero.
    """
    if activity == "min":
        return torch.minimum((a != 0).sum((-2, -1)), (b != 0).sum((-2, -1)))
    if activity == "union":
        return ((a != 0) | (b != 0)).sum((-2, -1))
    raise ValueError(f"activity must be 'min' or 'union', got {activity!r}")


def fuse_common(
    a: torch.Tensor, b: torch.Tensor, activity: str = "min", activity_ratio: float = 0.6
) -> torch.Tensor:
    """Eq. (9): per feature map, choose-max when ``L^m < T``, else the weighted average.

    ``T = activity_ratio * h * w``; the weights are ``w1 = C_A / (C_A + C_B)``, ``w2 = C_B /
    (C_A + C_B)`` with ``C_K(x, y) = sum_m F_K^m(x, y)`` (one weight map for all m; 1/2 where
    ``C_A + C_B = 0``).
    """
    h, w = a.shape[-2:]
    active = activity_counts(a, b, activity) >= activity_ratio * h * w  # (N, M)
    ca, cb = a.sum(1, keepdim=True), b.sum(1, keepdim=True)
    den = ca + cb
    zero = den == 0
    w1 = torch.where(zero, torch.full_like(den, 0.5), ca / torch.where(zero, torch.ones_like(den), den))
    weighted = w1 * a + (1 - w1) * b
    return torch.where(active[..., None, None], weighted, torch.maximum(a, b))


def fuse_features(
    f: dict[str, torch.Tensor], rule: str = "paper", activity: str = "min", activity_ratio: float = 0.6
) -> list[torch.Tensor]:
    """Fused feature sets to decode: [private] or [common, private] (``f`` from ``encode``)."""
    pa, pb = f["P_ir"], f["P_vi"]
    has_common = "C_ir" in f
    if rule == "paper":
        out = [fuse_private(pa, pb)]
        if has_common:
            out.insert(0, fuse_common(f["C_ir"], f["C_vi"], activity, activity_ratio))
    elif rule == "sum":
        out = [pa + pb] + ([f["C_ir"] + f["C_vi"]] if has_common else [])
    elif rule == "average":
        out = [(pa + pb) / 2] + ([(f["C_ir"] + f["C_vi"]) / 2] if has_common else [])
    else:
        raise ValueError(f"unknown JCAE fusion rule {rule!r}; choose one of {list(FUSION_RULES)}")
    return out


# --------------------------------------------------------------------------------------------
# VGG19 initialisation (Sec. 2.4)
# --------------------------------------------------------------------------------------------


def read_vgg19(path: str | Path) -> dict[str, torch.Tensor]:
    """conv1_1, conv1_2, conv2_1 weights and biases of a local VGG19 ImageNet file.

    Accepts torchvision's ``vgg19-*.pth`` state dict (read with ``torch.load(weights_only=True)``,
    no code executed) and a ``.safetensors`` file with the same keys (``features.0.weight`` ...).
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"--vgg19 {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainingError(
            f"--vgg19 {path}: not a readable VGG19 state dict ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(state, dict):
        raise TrainingError(f"--vgg19 {path}: expected a state dict, got {type(state).__name__}")
    want = {"features.0": (64, 3), "features.2": (64, 64), "features.5": (128, 64)}
    out = {}
    for key, (cout, cin) in want.items():
        wt, bs = state.get(f"{key}.weight"), state.get(f"{key}.bias")
        if not isinstance(wt, torch.Tensor) or not isinstance(bs, torch.Tensor):
            raise TrainingError(
                f"--vgg19 {path}: no {key}.weight/{key}.bias (not a torchvision VGG19 state dict)"
            )
        if tuple(wt.shape) != (cout, cin, 3, 3) or tuple(bs.shape) != (cout,):
            raise TrainingError(
                f"--vgg19 {path}: {key}.weight is {tuple(wt.shape)}, expected {(cout, cin, 3, 3)} (VGG19)"
            )
        out[f"{key}.weight"], out[f"{key}.bias"] = wt.float(), bs.float()
    return out


def init_from_vgg19(net: JCAENet, path: str | Path) -> str:
    """Copy VGG19 conv1_1, conv1_2, conv2_1 into every encoder branch; returns the file's SHA-256."""
    vgg = read_vgg19(path)
    branches = [net.private_ir, net.private_vi] + ([net.common] if net.common is not None else [])
    with torch.no_grad():
        for br in branches:
            for conv, key in zip((br.conv1, br.conv2, br.conv3), VGG19_KEYS, strict=True):
                conv.weight.copy_(vgg[f"{key}.weight"])
                conv.bias.copy_(vgg[f"{key}.bias"])
    return sha256_file(Path(path))


# --------------------------------------------------------------------------------------------
# Loss (Eq. 5-7)
# --------------------------------------------------------------------------------------------


def pixel_term(cfg: Config, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. (6) read as per-image RMSE (or MSE) in units of ``pixel_scale``, batch mean."""
    mse = ((cfg.pixel_scale * (x - y)) ** 2).mean((-3, -2, -1))
    return (mse.add(1e-12).sqrt() if cfg.pixel_loss == "rmse" else mse).mean()


def jcae_loss(
    cfg: Config, ir: torch.Tensor, vi: torch.Tensor, out: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Eq. (5) on both reconstructions: ``sum_K L_mse(K) + lambda (1 - SSIM(K))``.

    Terms: ``pixel_ir``, ``pixel_vi`` (Eq. 6), ``ssim_ir``, ``ssim_vi`` (``1 - SSIM``, Eq. 7) and
    the weighted ``total`` (with ``ssim_loss=False`` the SSIM terms are logged, not trained).
    """
    t: dict[str, torch.Tensor] = {}
    for k, x, xh in (("ir", ir, out["ir_hat"]), ("vi", vi, out["vi_hat"])):
        t[f"pixel_{k}"] = pixel_term(cfg, x, xh)
        t[f"ssim_{k}"] = 1.0 - ssim_map(xh, x).mean()
    total = t["pixel_ir"] + t["pixel_vi"]
    if cfg.ssim_loss:
        total = total + cfg.lam * (t["ssim_ir"] + t["ssim_vi"])
    t["total"] = total
    return t


# --------------------------------------------------------------------------------------------
# Training spec for ivfuse.train
# --------------------------------------------------------------------------------------------


def _card_notes(cfg: Config) -> dict[str, Any]:
    if cfg.resize is not None:
        w, h = cfg.resize
        flips = ", with horizontal flips" if cfg.flip else ""
        data = f"here the training folder's pairs resized to {w}x{h}{flips}"
    else:
        flips = " and horizontal flips" if cfg.flip else ""
        data = f"here random {cfg.crop}x{cfg.crop} crops{flips} of the training folder"
    notes = [
        f"paper: ~1400 gray IFCNN pairs resized to 360x280; {data}",
        f"paper: Keras, batch size not stated; here PyTorch, batch size {cfg.batch_size}",
    ]
    if cfg.vgg19 is None:
        notes.append(
            "paper: encoder initialised from VGG19 ImageNet weights; here random init (no VGG19 file)"
        )
    d: dict[str, Any] = {"init": "vgg19" if cfg.vgg19 else "random (PyTorch default)", "recipe_notes": notes}
    if cfg.vgg19 is None:
        d["reduced_scale"] = True
    return d


def training_spec(config: Config | None = None):
    """The paper's training recipe as a :class:`ivfuse.train.spec.TrainSpec`."""
    from ..data.training import RandomCropPairs, ResizedPairs
    from ..train.spec import Stage, TrainSpec

    cfg = config or Config()
    extra = _card_notes(cfg)

    def dataset(root):
        if cfg.resize is not None:
            return ResizedPairs(root, size=cfg.resize, flip=cfg.flip)
        return RandomCropPairs(root, crop=cfg.crop, flip=cfg.flip)

    def build() -> JCAENet:
        net = JCAENet(common_branch=cfg.common_branch)
        if cfg.vgg19 is not None:
            extra["vgg19_sha256"] = init_from_vgg19(net, cfg.vgg19)
        return net

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return jcae_loss(cfg, batch["ir"], batch["vi"], model(batch["ir"], batch["vi"]))

    stage = Stage(
        name="autoencoder",
        epochs=cfg.epochs,
        loss=loss,
        optimizer=lambda params: torch.optim.Adam(params, lr=cfg.lr),
    )
    return TrainSpec(
        method="jcae",
        config=cfg,
        # the paper's recipe: whole pairs resized to 360 x 280 (Sec. 3.1), so a crop run lists
        # ``resize`` among its deviations; it initialises from VGG19 (Sec. 2.4): a run given a VGG19
        # file follows it there (the file is provenance: vgg19_sha256); a random-init run is
        # flagged reduced_scale
        default_config=Config(vgg19=cfg.vgg19, resize=list(PAPER_SIZE)),
        build_model=build,
        dataset=dataset,
        stages=[stage],
        batch_size=cfg.batch_size,
        shuffle=True,
        fuser=lambda model: JCAE(
            model, rule=cfg.rule, activity=cfg.activity, activity_ratio=cfg.activity_ratio
        ),
        test_metrics=[("vifb", None)],
        paper=PAPER,
        extra_card=extra,
    )


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def fold_input(net: JCAENet) -> JCAENet:
    """Copy of ``net`` whose branches take the gray image directly (same function).

    conv1 of a branch sees ``(x - mean_c) / std_c`` on 3 copies of x, so it equals one
    1-channel convolution with weights ``sum_c W_c / std_c`` and bias
    ``b - sum_c mean_c / std_c sum W_c`` (exact: reflection padding commutes with the affine
    map). A third of conv1's work and no replicated input.
    """
    folded = copy.deepcopy(net).eval()
    branches = [folded.private_ir, folded.private_vi] + ([folded.common] if folded.common is not None else [])
    with torch.no_grad():
        for br in branches:
            w, b = br.conv1.weight, br.conv1.bias
            # every tensor on the weight's device and dtype (a CUDA net folds on CUDA)
            kw = {"device": w.device, "dtype": w.dtype}
            mean = torch.tensor(IMAGENET_MEAN, **kw).reshape(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, **kw).reshape(1, 3, 1, 1)
            conv = _conv(1, 64, reflect=True).to(**kw)
            conv.weight.copy_((w / std).sum(1, keepdim=True))
            conv.bias.copy_(b - (w * (mean / std)).sum((1, 2, 3)))
            br.conv1 = conv
    folded.input = nn.Identity()
    return folded


class JCAE(TorchFuser):
    """Fuser: ``fuse(ir, vi)`` on float32 (H, W) luma planes in [0, 1] -> fused (H, W) in [0, 1].

    Inference runs a copy of the network with the input normalisation folded into 1-channel
    first convolutions (:func:`fold_input`), in channels-last memory format under
    ``torch.inference_mode``, with the two decoder passes of Eq. (4) as one batch of 2
    (``python -m benchmarks.bench_deep --methods jcae`` times it). ``compile=True`` wraps
    it in ``torch.compile``. No tiling: Eq. (9) counts activations over whole feature maps.
    """

    label = LABEL

    def __init__(
        self,
        net: JCAENet,
        rule: str = "paper",
        device: str | torch.device = "cpu",
        activity: str = "min",
        activity_ratio: float = 0.6,
        compile: bool = False,
        parts: str | Path | None = None,
    ):
        if rule not in FUSION_RULES:
            raise InputError(f"unknown JCAE fusion rule {rule!r}; choose one of {list(FUSION_RULES)}")
        if activity not in ("min", "union"):
            raise InputError(f"activity must be 'min' or 'union', got {activity!r}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.rule, self.activity, self.activity_ratio = rule, activity, float(activity_ratio)
        self._infer = fold_input(self.net).to(self.device, memory_format=torch.channels_last)
        self._init_step(torch.compile(self._fuse_fast, dynamic=False) if compile else self._fuse_fast)
        if parts is not None:  # Fig. 6: written by ivfuse.api.Pipeline beside each fused image
            names = PARTS if self.net.common is not None else PARTS[:3]
            self._write_maps({n: str(Path(parts) / f"{{stem}}_{n}.png") for n in names})

    def modules(self) -> tuple[nn.Module, ...]:
        """The trained network (inference runs its copy with the input normalisation folded in)."""
        return (self.net,)

    def networks(self) -> tuple[nn.Module, ...]:
        return (self.net, self._infer)

    def _fuse_fast(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        n = self._infer
        ir, h, w = _pad_even(ir)
        vi, _, _ = _pad_even(vi)
        cl = torch.channels_last
        f = n.encode(ir.contiguous(memory_format=cl), vi.contiguous(memory_format=cl))
        fused = fuse_features(f, self.rule, self.activity, self.activity_ratio)
        dec = n.decoder(torch.cat(fused))  # the decoder passes (private, common) as one batch
        return dec.unflatten(0, (len(fused), ir.shape[0])).sum(0)[..., :h, :w]  # per sample

    def fuse_tensor(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """(1, 1, H, W) tensors on the fuser's device -> (1, 1, H, W)."""
        return self.step(ir, vi)

    def graph(self):
        """The fusion step for :mod:`ivfuse.backends`, Eq. (8)-(9) included (even sizes: the step
        reflect-pads odd ones itself, so a backend pads before the graph)."""
        from ._torch import GraphSpec, StepModule

        key = f"rule={self.rule},activity={self.activity},ratio={self.activity_ratio}"
        return GraphSpec(
            "fuse",
            StepModule(self._fuse_fast, self._infer),
            multiple=2,
            key=key,
            note="Eq. (8) and the activity count of Eq. (9) are in the graph",
        )

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        if self._map_paths:
            self._keep_maps(self.parts(ir, vi))
        return run_planes(self.fuse_tensor, ir, vi, self.device)

    def parts(self, ir: np.ndarray, vi: np.ndarray) -> dict[str, np.ndarray]:
        """The feature maps of Fig. 6 for one pair of planes (:func:`feature_parts`), at the
        feature resolution (the encoder keeps VGG19's pooling: half the image size)."""
        with torch.inference_mode():
            ti, _, _ = _pad_even(torch.from_numpy(np.ascontiguousarray(ir))[None, None].to(self.device))
            tv, _, _ = _pad_even(torch.from_numpy(np.ascontiguousarray(vi))[None, None].to(self.device))
            f = self._infer.encode(ti, tv)
            fused = fuse_features(f, self.rule, self.activity, self.activity_ratio)
            return feature_parts(f, fused, *f["P_ir"].shape[-2:])

    def _batch_planes(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        # Eq. (9) counts activations per sample and feature map: a batch fuses each pair alone
        return run_batch(self.fuse_tensor, ir, vi, self.device)


#: the feature maps of Fig. 6 that ``parts=DIR`` writes, one channel each
PARTS = ("private_ir", "private_vi", "private_fused", "common_ir", "common_vi", "common_fused")


def feature_parts(
    f: dict[str, torch.Tensor], fused: list[torch.Tensor], h: int, w: int
) -> dict[str, np.ndarray]:
    """Fig. 6 of the paper for the first sample: one channel of the infrared and visible private
    features and of their fusion by Eq. (8), and of the common features and their fusion by
    Eq. (9) (when the network has a common branch), cropped to the (h, w) image.

    The paper shows "one channel of the 128 feature maps" without saying which: here the channel
    whose fused map varies most (largest standard deviation), chosen separately for the private
    and the common triple. The three maps of a triple share one min-max scaling to [0, 1], so their
    brightness compares as in the paper's panels."""
    triples = [("private", f["P_ir"], f["P_vi"], fused[-1])]
    if "C_ir" in f:
        triples.append(("common", f["C_ir"], f["C_vi"], fused[0]))
    out: dict[str, np.ndarray] = {}
    for name, a, b, c in triples:
        k = int(c[0].flatten(1).float().std(1).argmax())
        maps = [t[0, k, :h, :w].float().cpu().numpy() for t in (a, b, c)]
        lo, hi = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
        scale = 1.0 / (hi - lo) if hi > lo else 0.0
        for tag, m in zip(("ir", "vi", "fused"), maps, strict=True):
            out[f"{name}_{tag}"] = ((m - lo) * scale).astype(np.float32)
    return out


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[JCAENet, dict]:
    """Build a :class:`JCAENet` from a safetensors file (no pickle). Returns (net, metadata).

    Whether the network has a common branch is read from the stored config, else from the keys.
    """
    state, meta = read_weights(path, "jcae", LABEL)
    common = bool(config_of(meta).get("common_branch", any(k.startswith("common.") for k in state)))
    net = load_state(JCAENet(common_branch=common), state, path, LABEL)
    return net.to(device).eval(), meta


#: Fig. 4 (MSE loss only) and Fig. 5 (the SSIM weight lambda of Eq. 5; the default is 100). The text
#: does not list the other lambdas of Fig. 5: 1, 10 and 1000 bracket the default by decades.
ABLATIONS = (
    Ablation("mse-only", "MSE loss only", "Fig. 4", {"ssim_loss": False}),
    *(Ablation(f"lambda-{v:g}", f"λ = {v:g}", "Fig. 5", {"lam": v}) for v in (1.0, 10.0, 1000.0)),
)


@register(
    "jcae",
    family="self-supervised",
    paper=PAPER,
    summary="JCAE: joint conv auto-encoder, private + common branches, shared decoder",
    trainable=True,
    weights=WEIGHTS_FILE,
    fuser=JCAE,
    config=Config,
    training_spec=training_spec,
    paper_tables="jcae.json",
    ablations=ABLATIONS,
)
def create_jcae(
    rule: str = "paper",
    device: str = "cpu",
    weights: str | Path | None = None,
    activity: str = "min",
    activity_ratio: float = 0.6,
    compile: bool = False,
    parts: str | Path | None = None,
) -> JCAE:
    """JCAE with the shipped weights (or ``weights=`` a safetensors file) and fusion ``rule``;
    ``parts=DIR`` also writes the feature maps of Fig. 6 (:data:`PARTS`) as ``DIR/{stem}_NAME.png``."""
    if weights is None:
        weights = shipped(WEIGHTS_FILE, "jcae", LABEL)
    net, _ = load_weights(weights, device=device)
    return JCAE(
        net,
        rule=rule,
        device=device,
        activity=activity,
        activity_ratio=activity_ratio,
        compile=compile,
        parts=parts,
    )
