"""IFESNet: Interactive Feature Embedding for Infrared and Visible Image Fusion.

F. Zhao, W. Zhao, H. Lu (Liaoning Normal University; Dalian University of Technology);
venue and year not stated (see docs/methods/ifesnet.md).

The idea (Sec. III, Fig. 3): three networks run side by side at full resolution (no pooling, no
up-sampling anywhere). IVIFNet fuses, SHFENet-ir and SHFENet-vis reconstruct their source in a
self-supervised way, and the three exchange features stage by stage (the *interactive feature
embedding model*, IFEM, Eq. 5):

* IVIFNet starts from the concatenated sources, two convolutions -> ``F_1``;
* ``Bi`` (Eq. 1): each SHFENet takes its stage-n feature from the fusion feature,
  ``F'_n = C(F_n)``, ``F''_n = C(F_n)``;
* ``INT`` (Eq. 3): the fusion feature of the next stage is built from both of them,
  ``F_{n+1} = C^2(Cat(F'_n, F''_n))``;
* after the last stage the SHFENets reconstruct their sources, ``I_r1 = C^3(F'_n)``,
  ``I_r2 = C^3(F''_n)`` (Eq. 2), and IVIFNet turns ``F_n`` into two weight maps
  ``W_i = C^4(F_n)`` that blend the sources, ``I_f = sum_i W_i * I_i`` (Eq. 4).

Training (Sec. III-D) is joint: ``L = L_I + L_V + L_F + L_M`` (Eq. 6) with MSE reconstruction
losses (Eq. 7), a MEF-SSIM-style structural loss ``L_F = 1 - SSIM(I_f, I_bar)`` towards a target
built patch by patch from the sources' largest contrast and their summed structure (Eq. 8-12),
and a weight-map constraint ``L_M = |tau - W_1 - W_2|`` (Eq. 13). At test time only the fusion
path runs (the reconstruction heads are skipped); the Discussion's optional Gaussian smoothing
of the weight maps (5 x 5, variance 2, Fig. 8) is ``smooth=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..nn import parameter_count  # noqa: F401  (ivfuse.methods.ifesnet.parameter_count)
from ..nn.losses import float32_outside_autocast, gaussian_window
from . import _torch
from ._config import Ablation, MethodConfig
from .registry import register

PAPER = (
    "F. Zhao, W. Zhao, H. Lu, Interactive Feature Embedding for Infrared and Visible Image Fusion "
    "(venue and year not stated)"
)
WEIGHTS_FILE = "ifesnet.safetensors"

#: feature streams: the paper's IFEM (Fig. 3/9a), one-way delivery (w/o IFEM, Fig. 9b),
#: hierarchical connections between stages (IFESNet-HC, Fig. 10)
NETWORKS = ("ifem", "no_ifem", "hc")
RECON_LOSSES = ("mse", "mae")  # Eq. (7); "mae": the ablation of Table VI
FUSION_LOSSES = ("ssim", "vp")  # Eq. (8)-(12); "vp": Table VII's visible perception loss of [37]


# --------------------------------------------------------------------------------------------
# Hyper-parameters
# --------------------------------------------------------------------------------------------


@dataclass
class Config(MethodConfig):
    """IFESNet hyper-parameters. Defaults: the paper where it speaks, our choices elsewhere.

    From the paper: SHFENet = six 3x3 convolutions of 64, 128, 256, 128, 64, 1 channels; IVIFNet
    = ten 3x3 convolutions of 64, 64, 128, 128, 256, 256, 256, 128, 64, 1 channels (Sec. III-B);
    three IFEM stages (Sec. IV-D); ``L = L_I + L_V + L_F + L_M`` with unit weights (Eq. 6), MSE
    reconstruction (Eq. 7), ``xi`` = 1.7 and ``tau`` = 1.0 (Sec. IV-A); Adam, lr 1e-4, momentum
    0.9, weight decay 5e-3, batch size 1 (Sec. IV-A).

    Our choices where the text is silent or does not add up:

    * **Widths onto stages.** The listed widths fit Eq. (1)-(4) exactly with three stages whose
      feature width doubles: stage 1 is IVIFNet's two stem convolutions (64, 64) -> ``F_1`` and
      one Bi convolution per SHFENet (64); stage 2 is INT (128, 128) -> ``F_2`` and Bi (128);
      stage 3 is INT (256, 256) -> ``F_3`` and Bi (256). The SHFENets then reconstruct with
      ``C^3`` = (128, 64, 1) (Eq. 2) and IVIFNet ends with ``C^4`` = (256, 128, 64, out)
      (Eq. 4). That is 3 + 3 = 6 SHFENet and 2 + 2 + 2 + 4 = 10 IVIFNet convolutions with the
      listed widths in the listed order. ``stage_widths`` gives the width of stage n (the first
      ``stages`` entries are used); for IFESNet-S4 the fourth stage keeps 256 (not 512: at full
      resolution a 512-channel layer costs 4x the compute and memory of a 256-channel one, and
      the paper lists no wider layer). ``recon_widths`` and ``head_widths`` are the hidden
      widths of ``C^3`` and ``C^4``, the same for every number of stages.
    * **Two weight maps from a "1-channel" layer.** Eq. (4) needs ``W_1`` and ``W_2`` from
      ``C^4(F_n)`` and Eq. (13) constrains their sum, which would be trivial if ``W_2`` were
      defined as ``tau - W_1``. So the last IVIFNet convolution has 2 output channels (one weight
      map per source; +577 parameters against the listed 1).
    * **Activations.** ReLU after every hidden convolution; a sigmoid on the two weight maps (each
      in (0, 1); L_M pushes their sum to tau) and on the reconstructions (images in [0, 1]). The
      text names no activation and no normalisation; we use none.
    * **Padding.** Every convolution pads 1 px by reflection, so the output has the input's size
      and borders carry no zero-padding seams; biases on; PyTorch's default initialisation.
    * **L_F window (Eq. 8-12).** As in MEF-SSIM [40] (Ma et al.'s ``mef_ssim.m``) on 11 x 11
      patches at every position fully inside the image: per source, the patch mean, contrast
      ``C_n = ||x_n - mu_n||`` (plus 0.001/255, the code's guard) and structure
      ``S_n = (x_n - mu_n) / C_n`` come from the plain square patch; the target patch is
      ``I_bar = xi max_n C_n * sum_n S_n / ||sum_n S_n||`` (Eq. 10, DeepFuse's [39] unweighted
      structure sum); Eq. (11) is evaluated between target and fused patch with the 11 x 11
      Gaussian weights (sigma 1.5) of ``mef_ssim.m`` and ``C = (0.03)^2`` (its ``(K L)^2`` with
      K = 0.03 on [0, 1] images). ``L_F`` is 1 minus the mean over patches. The patch sums are
      computed with box and Gaussian filters, not a loop (``ssim_target`` is the loop version,
      for one patch). ``||sum_n S_n||`` is floored at 1e-3, so two nearly opposite structures give
      a flat target rather than a normalised rounding error.
    * **Norms.** ``L_I``, ``L_V`` are per-pixel means (MSE); ``L_M`` is the mean over pixels of
      ``|tau - W_1 - W_2|``; all averaged over the batch.
    * **Weight decay: decoupled (AdamW).** The text does not say how 5e-3 is applied. Applied as
      an L2 term added to the gradient (``weight_decay_mode="coupled"``: PyTorch Adam's
      ``weight_decay``, what a TensorFlow L2 regulariser does), Adam normalises it like any
      gradient, so every weight whose loss gradient is small against 5e-3 w moves towards 0 at
      the full step lr: in our run the network collapsed within the first 100 steps (both
      weight maps and both reconstructions constant over the image, e.g. W_1 = 0.787, W_2 =
      0.214 everywhere at epoch 16: a fixed global average), and by epoch 8 6 % of the weights
      were subnormal. With decoupled decay (Loshchilov & Hutter's AdamW, ``"decoupled"``, the
      default) each step shrinks the weights by lr x 5e-3 = 5e-7 of their value, and the maps
      vary over the image (W_1 std 0.071 on a TNO crop after 200 steps, against 0.000 coupled,
      same seed and data). Betas (0.9, 0.999).
    * **Which source is I_1.** Sec. III-B calls I_1 infrared and I_2 visible, the text after
      Eq. (7) the reverse; we follow Sec. III-B and Fig. 3 (SHFENet-ir reconstructs I_1, W_1
      weights the infrared image).
    * **Ablations.** ``network="no_ifem"`` (Fig. 9b, one-way delivery): the SHFENets run as
      stand-alone chains on their own source, ``F'_n = C(F'_{n-1})``, ``F'_0 = I_1`` (the listed
      six-layer SHFENet), and deliver to IVIFNet one way, ``F_n = C^2(Cat(F_{n-1}, F'_{n-1},
      F''_{n-1}))``: nothing flows from IVIFNet back to the SHFENets. The paper says both use
      "identical convolution layers"; without the reverse flow the input widths of the Bi and
      INT convolutions must change (and F_{n-1} must enter INT, else IVIFNet's own chain would
      be cut), so the parameter count differs (about 4.3 M against 4.8 M). ``network="hc"``
      (Fig. 10): the IVIFNet feature of every stage is also concatenated into the INT input of
      every later stage and into the weight head, ``F_n = C^2(Cat(F'_{n-1}, F''_{n-1}, F_1, ...,
      F_{n-1}))``, ``W = C^4(Cat(F_1, ..., F_S))``; Table V's IFESNet-HC is ``hc`` with
      ``stages=4``. ``stages`` = 1..4 are IFESNet-S1..S4 (Table V); ``recon_loss="mae"`` is
      Table VI's MAE reconstruction loss.
    * **Table VII's VP loss** (``fusion_loss="vp"``, replacing L_F). The paper only names it: the
      "visible perception loss" of its reference [37] (Zhao & Zhao, "Learning specific and general
      realm feature representations for image fusion", IEEE TMM 2020), which it describes as an
      "energy-based contrast constraint" (Sec. III-D) and whose abstract calls its losses
      "no-reference perceptual metric losses based on the edge details and contrast"; no formula
      is given. Our reading, :func:`vp_loss`: an edge term and a contrast (local energy) term,
      each asking the fused image for the larger of the two sources' values at every pixel (the
      Sobel gradient magnitude; the square root of the Gaussian-weighted local variance, window
      ``ssim_window``, sigma ``ssim_sigma``), as an L1 gap divided by the target's mean so each
      term is a relative error of the size of ``1 - SSIM``. Intensity needs no term: the fused
      image is the weight-map combination of Eq. (4), kept near a convex one by L_M.
      **What this loss does to IFESNet** (measured; see the IFESNet docs page, Table VII): trained
      on our pairs it drives the weight maps to W1 = 1, W2 = 0, a fused image equal to the
      infrared one. That is its optimum among simple fusions here, not a training accident: a
      target made of the stronger source's detail at each pixel halves under any blend, and a
      per-region choice between two sources of different brightness makes steps at the seams.
      Mean over 33 of our (mostly FLIR) training pairs, edge + contrast: infrared alone 0.32,
      half-half blend 0.93, visible alone 0.89, a choice by the larger local contrast 0.45; on
      the 16 TNO training pairs the visible image wins instead (0.48 against 0.74 for the
      infrared one). Two other readings were tried and rejected: counting only a shortfall
      below the target trained to W1 = W2 = 1 within one epoch (fused = IR + VI, clipped); a
      Q^AB/F-style ratio weighted by each source's strength still ranks infrared alone first
      (0.39 against 0.46 for the choice). Any loss that asks for the stronger source's detail
      without an intensity or structure term behaves so; the paper's SSIM loss (Eq. 8-12)
      compares normalised structure and does not.
    * **Training data and schedule (reduced scale).** The paper trains on 110 TNO groups (crop
      size, epochs and steps not stated), which we do not have: we train on FLIR (180 pairs) plus
      ``splits/tno_train16.txt`` (16 TNO pairs), ``crops_per_pair`` random aligned ``crop`` x
      ``crop`` crops with horizontal flips per pair and epoch, batch 1, 32 epochs (6272 steps, a
      checkpoint every epoch of 196 steps). Every layer runs at full resolution (4.8 M parameters,
      ~9.5 MFLOP per pixel forward), so a step's cost grows with the crop's area. The crop is 128:
      on the 2-core Intel Xeon (AMX) of 2026-12-05 the schedule took 4909 s in bf16 on 2 threads
      (143-172 s per epoch), and against 64 x 64 crops (the former default, 1339 s) it raised
      AG, GLD, SF and VIFF on tno-test24 by 6-20 % (every one of the 24 images gained AG, GLD and
      SF against the former shipped weights). In fp32 a 64 x 64 step takes 0.51 s on that machine,
      2.6x the bf16 step, so fp32 at 128 is several hours. The card lists these reductions
      (``recipe_notes``).
    """

    stages: int = 3  # IFEM stages (Sec. IV-D); 1..4 = IFESNet-S1..S4 (Table V)
    network: str = "ifem"  # "ifem" | "no_ifem" (Fig. 9b) | "hc" (Fig. 10)
    stage_widths: tuple[int, ...] = (64, 128, 256, 256)
    recon_widths: tuple[int, ...] = (128, 64)  # hidden widths of C^3 (Eq. 2)
    head_widths: tuple[int, ...] = (256, 128, 64)  # hidden widths of C^4 (Eq. 4)
    # loss (Eq. 6-13, Sec. IV-A)
    recon_loss: str = "mse"  # "mse" (Eq. 7) | "mae" (Table VI)
    fusion_loss: str = "ssim"  # "ssim" (Eq. 8-12) | "vp" (Table VII, our reading of [37])
    tau: float = 1.0  # Eq. (13)
    xi: float = 1.7  # contrast scale of the target, Eq. (8)-(10)
    ssim_window: int = 11  # MEF-SSIM patch size
    ssim_sigma: float = 1.5  # Gaussian weights of Eq. (11) inside a patch
    ssim_k: float = 0.03  # C = (K L)^2, L = 1
    # optimisation (Sec. IV-A)
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-3
    weight_decay_mode: str = "decoupled"  # AdamW; "coupled": L2 in the gradient (collapses, above)
    batch_size: int = 1
    # our reduced schedule (see above)
    epochs: int = 32
    crop: int = 128
    crops_per_pair: int = 1
    flip: bool = True

    def __post_init__(self) -> None:
        self.stage_widths = tuple(int(c) for c in self.stage_widths)
        self.recon_widths = tuple(int(c) for c in self.recon_widths)
        self.head_widths = tuple(int(c) for c in self.head_widths)
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if self.weight_decay_mode not in ("decoupled", "coupled"):
            raise ValueError(
                f"weight_decay_mode must be 'decoupled' or 'coupled', got {self.weight_decay_mode!r}"
            )
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {self.network!r}")
        if self.recon_loss not in RECON_LOSSES:
            raise ValueError(f"recon_loss must be one of {RECON_LOSSES}, got {self.recon_loss!r}")
        if self.fusion_loss not in FUSION_LOSSES:
            raise ValueError(f"fusion_loss must be one of {FUSION_LOSSES}, got {self.fusion_loss!r}")
        if not 1 <= int(self.stages) <= len(self.stage_widths):
            raise ValueError(
                f"stages must be 1..{len(self.stage_widths)} (one width per stage), got {self.stages}"
            )
        self.stages = int(self.stages)
        if self.ssim_window < 2:
            raise ValueError(f"ssim_window must be at least 2, got {self.ssim_window}")
        if self.crop < self.ssim_window:
            raise ValueError(f"crop {self.crop} is smaller than the {self.ssim_window}-px SSIM patch")

    @property
    def widths(self) -> tuple[int, ...]:
        """Feature width of each used stage."""
        return self.stage_widths[: self.stages]


# --------------------------------------------------------------------------------------------
# Network (Sec. III-B/C, Eq. 1-5, Fig. 3, 9, 10)
# --------------------------------------------------------------------------------------------


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")


class ConvChain(nn.Module):
    """3x3 convolutions ``cin -> widths[0] -> ... -> widths[-1]`` with a ReLU after each; the last
    one is followed by a sigmoid instead when ``out="sigmoid"`` (nothing when ``out="none"``)."""

    def __init__(self, cin: int, widths: tuple[int, ...], out: str = "relu"):
        super().__init__()
        chans = (cin, *widths)
        self.convs = nn.ModuleList([conv3x3(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)])
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < last or self.out == "relu":
                x = torch.relu(x)
            elif self.out == "sigmoid":
                x = torch.sigmoid(x)
        return x


class SHFENet(nn.Module):
    """Self-supervised hierarchical feature extraction network of one source (Eq. 1-2).

    ``bi[n]`` is its stage-n convolution (``Bi``, Eq. 1/5); ``recon`` is ``C^3`` (Eq. 2).
    """

    def __init__(self, bi_inputs: list[int], widths: tuple[int, ...], recon_widths: tuple[int, ...]):
        super().__init__()
        self.bi = nn.ModuleList([conv3x3(cin, w) for cin, w in zip(bi_inputs, widths, strict=True)])
        self.recon = ConvChain(widths[-1], (*recon_widths, 1), out="sigmoid")

    def stage(self, n: int, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bi[n](x))


class IVIFNet(nn.Module):
    """Fusion network: stem ``C^2`` -> ``F_1``, one INT ``C^2`` per later stage (Eq. 3), head ``C^4``
    -> two weight maps (Eq. 4)."""

    def __init__(self, widths: tuple[int, ...], int_inputs: list[int], head_in: int, head_widths):
        super().__init__()
        self.stem = ConvChain(2, (widths[0], widths[0]))
        self.int = nn.ModuleList(
            [ConvChain(cin, (w, w)) for cin, w in zip(int_inputs, widths[1:], strict=True)]
        )
        self.head = ConvChain(head_in, (*head_widths, 2), out="sigmoid")


class IFESNetModel(nn.Module):
    """SHFENet-ir + SHFENet-vis + IVIFNet with the feature stream of ``cfg.network``.

    ``forward(ir, vi)`` -> ``{"w1", "w2", "fused", "ir_hat", "vi_hat"}``; :meth:`weight_maps` runs
    the fusion path only (inference).
    """

    def __init__(self, cfg: Config | None = None):
        super().__init__()
        cfg = cfg or Config()
        self.network = cfg.network
        w = cfg.widths
        s = len(w)
        if cfg.network == "no_ifem":  # own chains: F'_n = C(F'_{n-1}), F'_0 = I
            bi_in = [1, *w[:-1]]
            int_in = [3 * w[n - 1] for n in range(1, s)]  # Cat(F_{n-1}, F'_{n-1}, F''_{n-1})
            head_in = w[-1]
        elif cfg.network == "hc":  # + Cat(F_1, ..., F_{n-1}) into INT and the head (Fig. 10)
            bi_in = list(w)
            int_in = [2 * w[n - 1] + sum(w[:n]) for n in range(1, s)]
            head_in = sum(w)
        else:  # the paper's IFEM: F'_n = C(F_n), F_{n+1} = C^2(Cat(F'_n, F''_n))
            bi_in = list(w)
            int_in = [2 * w[n - 1] for n in range(1, s)]
            head_in = w[-1]
        self.shfe_ir = SHFENet(bi_in, w, cfg.recon_widths)
        self.shfe_vi = SHFENet(bi_in, w, cfg.recon_widths)
        self.ivif = IVIFNet(w, int_in, head_in, cfg.head_widths)

    def features(self, ir: torch.Tensor, vi: torch.Tensor, last_bi: bool = True):
        """``(fused features F_1..F_S, F'_S, F''_S)``; ``last_bi=False`` skips the stage-S Bi
        convolutions (only the reconstructions need them)."""
        ivif = self.ivif
        f = ivif.stem(torch.cat([ir, vi], dim=1))  # F_1
        fs = [f]
        s = len(ivif.int) + 1
        if self.network == "no_ifem":
            fa, fb = ir, vi  # F'_0, F''_0
            for n in range(s):
                if n < s - 1 or last_bi:
                    fa, fb = self.shfe_ir.stage(n, fa), self.shfe_vi.stage(n, fb)  # F'_n = C(F'_{n-1})
                if n < s - 1:
                    f = ivif.int[n](torch.cat([f, fa, fb], dim=1))  # one-way delivery (Fig. 9b)
                    fs.append(f)
            return fs, fa, fb
        fa = fb = None
        for n in range(s):
            if n < s - 1 or last_bi:
                fa, fb = self.shfe_ir.stage(n, f), self.shfe_vi.stage(n, f)  # Bi (Eq. 1)
            if n < s - 1:
                parts = [fa, fb, *fs] if self.network == "hc" else [fa, fb]
                f = ivif.int[n](torch.cat(parts, dim=1))  # INT (Eq. 3)
                fs.append(f)
        return fs, fa, fb

    def _head(self, fs: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(fs, dim=1) if self.network == "hc" else fs[-1]
        return self.ivif.head(x)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        fs, fa, fb = self.features(ir, vi)
        w = self._head(fs)
        w1, w2 = w[:, :1], w[:, 1:]
        return {
            "w1": w1,
            "w2": w2,
            "fused": w1 * ir + w2 * vi,  # Eq. (4)
            "ir_hat": self.shfe_ir.recon(fa),  # Eq. (2)
            "vi_hat": self.shfe_vi.recon(fb),
        }

    def weight_maps(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """``(N, 2, H, W)``: ``W_1, W_2`` of Eq. (4), without the reconstruction path."""
        fs, _, _ = self.features(ir, vi, last_bi=False)
        return self._head(fs)

    def receptive_radius(self) -> int:
        """Radius in pixels of the weight maps' receptive field (one per 3x3 convolution)."""
        s = len(self.ivif.int) + 1
        if self.network == "no_ifem":  # F_n = C^2(F_{n-1}, ...): 2 convolutions per stage
            return 2 * s + 4
        return 2 + 3 * (s - 1) + 4  # stem, then Bi + INT per stage, then the head


# --------------------------------------------------------------------------------------------
# Losses (Eq. 6-13)
# --------------------------------------------------------------------------------------------


#: MEF-SSIM's guard on the contrast (``ed + 0.001`` on 0..255 images), on the [0, 1] scale
CONTRAST_EPS = 0.001 / 255.0
#: floor of ``||sum_n S_n||`` (in [0, 2]): near-opposite structures cancel to a flat target
#: instead of a normalised rounding error
STRUCTURE_EPS = 1e-3


def ssim_target(x1: np.ndarray, x2: np.ndarray, xi: float = 1.7) -> np.ndarray:
    """The expected patch of Eq. (8)-(10) for one pair of patches (reference, float64).

    ``C_n = ||x_n - mu_n||`` (+ guard), ``S_n = (x_n - mu_n) / C_n``, ``C_bar = max C_n``,
    ``S_bar = sum S_n / max(||sum S_n||, 1e-3)``, ``I_bar = xi C_bar S_bar`` (zero mean: Eq. 11
    has no luminance term).
    """
    xs = [np.asarray(x, dtype=np.float64) for x in (x1, x2)]
    cs = [np.linalg.norm(x - x.mean()) + CONTRAST_EPS for x in xs]
    s = sum((x - x.mean()) / c for x, c in zip(xs, cs, strict=True))
    s_bar = s / max(np.linalg.norm(s), STRUCTURE_EPS)
    return xi * max(cs) * s_bar


def _box(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(x, k, stride=1)  # mean over every k x k patch fully inside ('valid')


def fusion_ssim_map(
    fused: torch.Tensor,
    i1: torch.Tensor,
    i2: torch.Tensor,
    *,
    xi: float = 1.7,
    window: int = 11,
    sigma: float = 1.5,
    k: float = 0.03,
) -> torch.Tensor:
    """Eq. (11) between every fused patch and its target patch of Eq. (8)-(10); ``(N, 1, h, w)``
    with ``h = H - window + 1`` (patches fully inside, as MEF-SSIM).

    With ``y = sum_n a_n (x_n - mu_n)``, ``a_n = xi C_bar / (||sum S|| C_n)``, every Gaussian-
    weighted moment of ``y`` and ``f`` is a combination of filtered products of the sources and
    ``f`` (``mu_n`` being the box mean of the patch), so no patch is formed explicitly. The
    statistics are computed in float64 (see the comment below); the map has ``fused``'s dtype.
    """
    if fused.shape != i1.shape or fused.shape != i2.shape or fused.shape[1] != 1:
        raise ValueError(f"expected three (N, 1, H, W) tensors of one shape, got {tuple(fused.shape)}")
    # float64: a flat source patch has C_n ~ the guard, so a_n ~ 1e5 multiplies moments that
    # are zero up to rounding; float32 rounding (1e-8) would turn them into a noise target
    out_dtype = fused.dtype
    fused, i1, i2 = fused.double(), i1.double(), i2.double()
    n_px = window * window
    g = gaussian_window(window, sigma, dtype=torch.float64, device=fused.device).reshape(1, 1, window, window)

    def gauss(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, g)

    xs = (i1, i2)
    mu = [_box(x, window) for x in xs]
    var = [(_box(x * x, window) - m * m).clamp_min(0.0) for x, m in zip(xs, mu, strict=True)]
    c = [torch.sqrt(n_px * v) + CONTRAST_EPS for v in var]  # C_n, Eq. (9)
    c_bar = torch.maximum(c[0], c[1])  # Eq. (10)
    cov12 = _box(i1 * i2, window) - mu[0] * mu[1]
    s_norm2 = n_px * var[0] / c[0] ** 2 + n_px * var[1] / c[1] ** 2 + 2 * n_px * cov12 / (c[0] * c[1])
    s_norm = torch.sqrt(s_norm2.clamp_min(0.0)).clamp_min(STRUCTURE_EPS)
    a = [xi * c_bar / (s_norm * cn) for cn in c]
    gx = [gauss(x) for x in xs]
    gf = gauss(fused)
    # Gaussian moments: E[y], E[y^2], E[y f], E[f], E[f^2]
    e_y = a[0] * (gx[0] - mu[0]) + a[1] * (gx[1] - mu[1])
    e_yy = 0.0
    for p in range(2):
        for q in range(2):
            m_pq = gauss(xs[p] * xs[q]) - mu[q] * gx[p] - mu[p] * gx[q] + mu[p] * mu[q]
            e_yy = e_yy + a[p] * a[q] * m_pq
    e_yf = a[0] * (gauss(i1 * fused) - mu[0] * gf) + a[1] * (gauss(i2 * fused) - mu[1] * gf)
    var_y = (e_yy - e_y * e_y).clamp_min(0.0)
    var_f = (gauss(fused * fused) - gf * gf).clamp_min(0.0)
    cov = e_yf - e_y * gf
    cst = k**2
    return ((2.0 * cov + cst) / (var_y + var_f + cst)).to(out_dtype)


#: floor under the squares whose square root the VP loss takes (a flat patch: gradient 0)
VP_EPS = 1e-6


def vp_loss(
    fused: torch.Tensor, i1: torch.Tensor, i2: torch.Tensor, *, window: int = 11, sigma: float = 1.5
) -> dict[str, torch.Tensor]:
    """Table VII's visible perception loss, our reading of [37] (Config docstring): ``{"edge",
    "contrast"}`` for ``(N, 1, H, W)`` images in [0, 1].

    ``edge = mean|g(f) - max(g(i1), g(i2))| / mean(max(g(i1), g(i2)))`` with ``g`` the Sobel
    gradient magnitude (kernels / 8, replicate padding); ``contrast`` the same with ``g`` the
    square root of the Gaussian-weighted local variance (``window``, ``sigma``; patches fully
    inside). Zero when the fused image has, everywhere, the edges and contrast of the stronger
    source; scaling the fused detail by ``a`` (<= 1) of the target's gives ``1 - a`` for each term.

    Computed in at least float32 outside autocast, as :func:`ivfuse.nn.losses.ssim_map`: the local
    variance ``E[x^2] - E[x]^2`` cancels in bfloat16. The terms come back in the inputs' dtype.
    """
    if fused.shape != i1.shape or fused.shape != i2.shape or fused.shape[1] != 1:
        raise ValueError(f"expected three (N, 1, H, W) tensors of one shape, got {tuple(fused.shape)}")
    return _vp_terms(fused, i1, i2, window=window, sigma=sigma)


@float32_outside_autocast
def _vp_terms(
    fused: torch.Tensor, i1: torch.Tensor, i2: torch.Tensor, *, window: int, sigma: float
) -> dict[str, torch.Tensor]:
    from ..nn.losses import sobel_gradient

    g = gaussian_window(window, sigma, dtype=fused.dtype, device=fused.device).reshape(1, 1, window, window)

    def edge(x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(sobel_gradient(x).pow(2).sum(dim=2) + VP_EPS)

    def contrast(x: torch.Tensor) -> torch.Tensor:
        mu = F.conv2d(x, g)
        return torch.sqrt((F.conv2d(x * x, g) - mu * mu).clamp_min(0.0) + VP_EPS)

    out = {}
    for name, fn in (("edge", edge), ("contrast", contrast)):
        target = torch.maximum(fn(i1), fn(i2)).detach()
        out[name] = (fn(fused) - target).abs().mean() / target.mean().clamp_min(VP_EPS)
    return out


def ifesnet_loss(
    cfg: Config, ir: torch.Tensor, vi: torch.Tensor, out: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Eq. (6): ``L = L_I + L_V + L_F + L_M``, each term named for the trainer's log (Table VII's
    ablation: ``L_F`` replaced by the VP loss, :func:`vp_loss`, logged as ``vp_edge`` and
    ``vp_contrast``)."""

    def rec(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b) ** 2).mean() if cfg.recon_loss == "mse" else (a - b).abs().mean()

    t = {
        "rec_ir": rec(out["ir_hat"], ir),  # L_I, Eq. (7)
        "rec_vi": rec(out["vi_hat"], vi),  # L_V
    }
    if cfg.fusion_loss == "ssim":
        ssim = fusion_ssim_map(
            out["fused"], ir, vi, xi=cfg.xi, window=cfg.ssim_window, sigma=cfg.ssim_sigma, k=cfg.ssim_k
        ).mean()
        t["fusion_ssim"] = 1.0 - ssim  # L_F, Eq. (12)
        fusion = t["fusion_ssim"]
    else:
        vp = vp_loss(out["fused"], ir, vi, window=cfg.ssim_window, sigma=cfg.ssim_sigma)
        t["vp_edge"], t["vp_contrast"] = vp["edge"], vp["contrast"]
        fusion = vp["edge"] + vp["contrast"]
    t["weight_map"] = (cfg.tau - out["w1"] - out["w2"]).abs().mean()  # L_M, Eq. (13)
    t["total"] = t["rec_ir"] + t["rec_vi"] + fusion + t["weight_map"]
    return t


# --------------------------------------------------------------------------------------------
# Training spec for ivfuse.train
# --------------------------------------------------------------------------------------------


def _card_notes(cfg: Config) -> dict[str, Any]:
    notes = [
        "paper: 110 TNO groups (crop size, epochs and steps not stated); here the training folder "
        "(reference run: FLIR flir_train 180 + TNO splits/tno_train16 16 pairs), "
        f"{cfg.crops_per_pair} random {cfg.crop}x{cfg.crop} crop(s) per pair and epoch"
        f"{' with horizontal flips' if cfg.flip else ''}, {cfg.epochs} epochs, batch {cfg.batch_size}",
        "reduced for a 2-core CPU (4.8 M parameters, ~9.5 MFLOP per pixel forward, every layer at "
        "full resolution): the default schedule (32 epochs x 196 crops of 128x128 = 6272 steps) "
        "took 4909 s in bf16 on 2 threads of a 2-core Intel Xeon with AMX; 64x64 crops (the former "
        "default) took 1339 s there and scored 6-20 % lower on AG, GLD, SF and VIFF",
        "paper: TensorFlow, Adam with weight decay 5e-3 (how applied not stated); here PyTorch, "
        + (
            "decoupled weight decay (AdamW): as an L2 gradient term the network collapsed to "
            "constant weight maps within 100 steps"
            if cfg.weight_decay_mode == "decoupled"
            else "weight decay as coupled L2 on the gradient"
        ),
    ]
    return {"reduced_scale": True, "recipe_notes": notes}


def training_spec(config: Config | None = None):
    """Sec. III-D / IV-A as a :class:`ivfuse.train.spec.TrainSpec`: one joint stage, Eq. (6)."""
    from torch.utils.data import ConcatDataset

    from ..data.training import RandomCropPairs
    from ..train.spec import Stage, TrainSpec

    cfg = config or Config()

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return ifesnet_loss(cfg, batch["ir"], batch["vi"], model(batch["ir"], batch["vi"]))

    def adam(params):
        kind = torch.optim.AdamW if cfg.weight_decay_mode == "decoupled" else torch.optim.Adam
        return kind(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)

    extra = _card_notes(cfg)
    return TrainSpec(
        method="ifesnet",
        config=cfg,
        default_config=Config(),
        build_model=lambda: IFESNetModel(cfg),
        # one pass = crops_per_pair random crops of every pair (each pair decoded once)
        dataset=lambda root: ConcatDataset(
            [RandomCropPairs(root, crop=cfg.crop, flip=cfg.flip)] * cfg.crops_per_pair
        ),
        stages=[Stage("joint", cfg.epochs, loss, adam)],
        batch_size=cfg.batch_size,
        shuffle=True,
        fuser=lambda model: IFESNet(model),
        test_metrics=[("vifb", ["AG", "EN", "MI", "GLD", "SF", "VIFF"])],  # Tables I-II
        paper=PAPER,
        extra_card=extra,
    )


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------

#: Gaussian smoothing of the weight maps (Discussion, Fig. 8): 5 x 5 window, variance 2
SMOOTH_SIZE = 5
SMOOTH_SIGMA = math.sqrt(2.0)


def smooth_maps(w: torch.Tensor) -> torch.Tensor:
    """Each channel of ``(N, C, H, W)`` filtered with the 5 x 5 Gaussian of variance 2 (weights sum
    to 1, reflection at the borders; replicate where the image is narrower than 3 px)."""
    k = gaussian_window(SMOOTH_SIZE, SMOOTH_SIGMA, dtype=w.dtype, device=w.device)
    c = w.shape[1]
    p = SMOOTH_SIZE // 2
    mode = "reflect" if min(w.shape[-2:]) > p else "replicate"
    return F.conv2d(F.pad(w, (p, p, p, p), mode=mode), k.expand(c, 1, SMOOTH_SIZE, SMOOTH_SIZE), groups=c)


class IFESNet(_torch.TorchFuser):
    """Fuser: ``fuse(ir, vi)`` on float32 (H, W) planes in [0, 1] -> ``W_1 I_1 + W_2 I_2`` (Eq. 4).

    Any size (at least 2 x 2): the network is fully convolutional at full resolution. Images
    larger than ``tile`` are processed in ``tile`` x ``tile`` tiles, each extended by ``margin``
    px (at least the receptive-field radius, 12 for three stages) so the stitched weight maps
    equal the untiled ones; memory is then bounded by the tile: with the default 256-px tile
    (288 x 288 with its margins) one 256-channel feature map is 85 MB in float32, and a 480 x 640
    pair peaked at 642 MB above the loaded network (1.7 GB untiled; measured on one thread: 13.5 s
    of CPU time tiled, 12.7 s untiled). The weight maps (2 floats per pixel) are assembled
    for the whole image, smoothed when ``smooth`` (the Gaussian of the Discussion, Fig. 8), and
    applied to the sources. ``side_maps()`` holds ``w_ir``, ``w_vi`` of the last call.
    """

    label = "IFESNet"

    def __init__(
        self,
        net: IFESNetModel,
        device: str | torch.device = "cpu",
        tile: int | None = 256,
        margin: int | None = None,
        smooth: bool = False,
    ):
        self.device = torch.device(device)
        # channels-last: 1.18x less CPU time than the default layout (measured on a 480x640 pair)
        self.net = net.to(self.device, memory_format=torch.channels_last).eval()
        halo = net.receptive_radius()
        margin = halo + 4 if margin is None else int(margin)
        if margin < halo:
            raise ValueError(f"margin must be >= {halo} (the receptive-field radius), got {margin}")
        if tile is not None and int(tile) < 1:
            raise ValueError(f"tile must be positive or None, got {tile}")
        self.tile = None if tile is None else int(tile)
        self.margin = margin
        self.smooth = bool(smooth)
        self._init_step(self.net.weight_maps)  # the step ivfuse.backends may replace

    def modules(self) -> tuple[nn.Module, ...]:
        return (self.net,)

    def graph(self) -> _torch.GraphSpec:
        """The weight-map network for :mod:`ivfuse.backends` (per tile)."""
        return _torch.GraphSpec(
            "weight_maps",
            _torch.StepModule(self.net.weight_maps, self.net),
            outputs=("weights",),
            note=f"tiles of {self.tile} px, the optional Gaussian smoothing of the stitched maps "
            "(whole image) and Eq. (4) (W_1 I_1 + W_2 I_2, NumPy) are outside",
        )

    def weights_tensor(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """(1, 1, H, W) pair -> (1, 2, H, W) weight maps, tiled when larger than ``tile``."""
        return _torch.tiled(self.step, ir, vi, self.tile, self.margin)

    def weight_maps(self, ir: np.ndarray, vi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(W_1, W_2)`` of Eq. (4) as float32 (H, W) arrays (smoothed when ``smooth``)."""
        ir, vi = _torch.planes(ir, vi, self.label)
        return self._weight_maps(ir, vi)

    def _weight_maps(self, ir: np.ndarray, vi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ir, vi = np.ascontiguousarray(ir), np.ascontiguousarray(vi)
        with torch.inference_mode():
            ti = torch.from_numpy(ir)[None, None].to(self.device)
            tv = torch.from_numpy(vi)[None, None].to(self.device)
            w = self.weights_tensor(ti, tv)
            if self.smooth:
                w = smooth_maps(w)
        w = w[0].float().cpu().numpy()
        return w[0].astype(np.float32), w[1].astype(np.float32)

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        w1, w2 = self._weight_maps(ir, vi)
        self._keep_maps({"w_ir": w1, "w_vi": w2})
        return np.clip(w1 * ir + w2 * vi, 0.0, 1.0).astype(np.float32)  # Eq. (4)

    def _batch_planes(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            ti = _torch._to_device(torch.from_numpy(np.ascontiguousarray(ir))[:, None], self.device)
            tv = _torch._to_device(torch.from_numpy(np.ascontiguousarray(vi))[:, None], self.device)
            w = self.weights_tensor(ti, tv)
            if self.smooth:
                w = smooth_maps(w)
        w = w.float().cpu().numpy().astype(np.float32)
        self._keep_maps({"w_ir": w[-1, 0], "w_vi": w[-1, 1]})
        return np.clip(w[:, 0] * ir + w[:, 1] * vi, 0.0, 1.0).astype(np.float32)  # Eq. (4)


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[IFESNetModel, dict]:
    """Build an :class:`IFESNetModel` from a safetensors file (no pickle). Returns (net, metadata)."""
    state, meta = _torch.read_weights(path, "ifesnet", "IFESNet")
    cfg = Config.from_dict(_torch.config_of(meta)) if "config" in meta else Config()
    net = _torch.load_state(IFESNetModel(cfg), state, path, "IFESNet")
    return net.to(device).eval(), meta


#: Tables III-VI: the paper's ablation rows (the default is three IFEM stages, MSE reconstruction,
#: the SSIM fusion loss). Table VII's VP-based loss is not implemented: no ablation for it yet.
ABLATIONS = (
    Ablation("no-ifem", "IFESNet w/o IFEM", "Tables III-IV", {"network": "no_ifem"}),
    *(Ablation(f"s{k}", f"IFESNet-S{k}", "Table V", {"stages": k}) for k in (1, 2, 4)),
    Ablation("hc", "IFESNet-HC", "Table V", {"network": "hc", "stages": 4}),
    Ablation("mae", "MAE-based loss", "Table VI", {"recon_loss": "mae"}),
    Ablation("vp", "VP-based loss", "Table VII", {"fusion_loss": "vp"}),
)


@register(
    "ifesnet",
    family="self-supervised",
    paper=PAPER,
    summary="IFESNet: interactive feature embedding between two reconstruction nets and a fusion net",
    trainable=True,
    weights=WEIGHTS_FILE,
    fuser=IFESNet,
    config=Config,
    training_spec=training_spec,
    paper_tables="ifesnet.json",
    ablations=ABLATIONS,
)
def create_ifesnet(
    device: str = "cpu",
    weights: str | Path | None = None,
    tile: int | str | None = 256,
    smooth: bool = False,
) -> IFESNet:
    """IFESNet with the shipped weights (or ``weights=``); ``smooth=True`` smooths the weight maps,
    ``tile`` (pixels, or ``None``/``"none"`` for one pass) bounds the memory."""
    if weights is None:
        weights = _torch.shipped(WEIGHTS_FILE, "ifesnet", "IFESNet")
    if not isinstance(smooth, bool):
        raise InputError(f"smooth must be true or false, got {smooth!r}")
    if isinstance(tile, str) and tile.lower() == "none":
        tile = None  # -p tile=none: one untiled pass
    if tile is not None and (not isinstance(tile, int) or isinstance(tile, bool) or tile < 1):
        raise InputError(f"tile must be a positive number of pixels or none, got {tile!r}")
    net, _ = load_weights(weights, device=device)
    return IFESNet(net, device=device, tile=tile, smooth=smooth)
