"""What every deep method's fuser shares: weights files, input checks, tensors and tiles.

A deep method file keeps its paper (network, losses, fusion rule); the plumbing around it lives here:

* :func:`shipped` - the path of the shipped weights, or a :class:`WeightsError` saying how to train;
* :func:`read_weights` - tensors and metadata of a safetensors file (no pickle), with one clear
  error for a missing, unreadable or foreign file, and :func:`load_state` for a strict load
  (subnormal weights flushed to zero: they make CPU inference many times slower);
* :class:`TorchFuser` - the :class:`ivfuse.methods.base.Fuser` base of the deep methods (device,
  networks, parameter count);
* :func:`planes` - the two float32 luma planes a fuser accepts, checked (by
  :func:`ivfuse.methods.base.check_pair`);
* :func:`run_planes` - numpy planes -> (1, 1, H, W) tensors -> the fused numpy plane in [0, 1];
* :func:`tiled` - a forward run over overlapping tiles whose margins exceed the receptive field,
  so that the cropped tile centres equal the untiled result while memory stays bounded;
* :func:`cpu_has_bf16` - whether bfloat16 is native on this CPU;
* :class:`GraphSpec` - the tensor step of a fuser that :mod:`ivfuse.backends` exports to ONNX and
  runs on ONNX Runtime / OpenVINO in place of eager PyTorch.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError, WeightsError
from .base import Fuser, check_pair
from .registry import weights_path


def _train_hint(method: str) -> str:
    return (
        f"train them with `ivfuse train {method} --data DIR --out RUN` "
        "and pass weights=RUN/weights.safetensors"
    )


def shipped(filename: str, method: str, label: str) -> Path:
    """Path of the weights file shipped in ``ivfuse/weights/``; WeightsError when it is absent."""
    ref = weights_path(filename)
    if not ref.is_file():
        raise WeightsError(
            f"{label} weights are not installed (ivfuse/weights/{filename}); {_train_hint(method)}"
        )
    return Path(str(ref))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file (weights, cards, VGG19 files: provenance in cards and exports)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_weights(path: str | Path, method: str, label: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file written for ``method``."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no {label} weights at {path}; {_train_hint(method)}")
    meta = weights_metadata(path, method)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises several types for corrupt files
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e
    return state, meta


def weights_metadata(path: str | Path, method: str) -> dict[str, str]:
    """The metadata of a safetensors file written for ``method``, without reading its tensors
    (:class:`WeightsError` for an unreadable file or another method's weights)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for corrupt files
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e
    if meta.get("method", method) != method:
        raise WeightsError(f"{path}: weights of method {meta.get('method')!r}, not {method}")
    return meta


def config_of(meta: dict[str, str]) -> dict[str, Any]:
    """The training config stored in a weights file's metadata (``{}`` when there is none)."""
    try:
        return dict(json.loads(meta["config"])) if "config" in meta else {}
    except ValueError:
        return {}


def flush_subnormal(t: torch.Tensor) -> torch.Tensor:
    """``t`` with its float32-subnormal values (0 < |x| < 1.2e-38) set to 0. Training with weight
    decay leaves such weights, and every multiply with one takes the CPU's slow microcode path
    (an IFESNet step went from 0.8 s to 16 s); their contribution to any output is below 1e-37."""
    if not t.is_floating_point():
        return t
    tiny = torch.finfo(torch.float32).tiny
    sub = (t.abs().float() < tiny) & (t != 0)
    return t.masked_fill(sub, 0) if bool(sub.any()) else t


def load_state(net: nn.Module, state: dict[str, torch.Tensor], path: str | Path, label: str) -> nn.Module:
    """``net`` with ``state`` loaded strictly (subnormal weights flushed to 0, see
    :func:`flush_subnormal`); WeightsError naming the first mismatch otherwise."""
    state = {k: flush_subnormal(v) for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else "key mismatch"
        raise WeightsError(f"{path}: does not match the {label} network ({first})") from e
    return net


def planes(ir: np.ndarray, vi: np.ndarray, label: str, min_size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The two sources as float32 2-D planes of one shape, at least ``min_size`` on each side."""
    return check_pair(ir, vi, label=label, min_size=min_size)


class TorchFuser(Fuser):
    """Base of the deep fusers: a network on ``self.device``, at least 2 x 2 pixels (reflection
    padding), its tensor step declared with ``_init_step`` and called through ``self.step``.

    A subclass sets ``self.device`` and lists its test-time networks in :meth:`modules` (counted by
    :meth:`parameter_count`) and every network it holds in :meth:`networks` (moved by :meth:`to`).
    """

    min_size = 2
    device: torch.device = torch.device("cpu")
    #: pairs per tensor forward in :meth:`fuse_batch` when the caller does not say
    batch_size: int = 8
    #: TF32 matmuls/convolutions allowed on the GPU (:func:`ivfuse.devices.apply_tf32`); off
    #: unless measured within 0.5 gray levels of the CPU fp32 result (docs/gpu.md)
    tf32: bool = False

    #: precision of the tensor step: ``"fp32"``, or ``"bf16"``/``"fp16"`` set by :meth:`autocast`
    step_precision: str = "fp32"
    #: None: the step may run in half precision (:meth:`autocast`); else why it may not (one line)
    no_half_precision: str | None = None

    def networks(self) -> tuple[nn.Module, ...]:
        """Every network the fuser holds (default: :meth:`modules`)."""
        return self.modules()

    def autocast(self, precision: str) -> TorchFuser:
        """Run the tensor step in half precision from now on: ``"bf16"`` or ``"fp16"`` under
        ``torch.autocast`` on the fuser's device (convolutions and matrix products in the half type,
        reductions and the rules around the step in float32), with the networks and the step's 4-D
        inputs in channels-last memory format (the layout half-precision convolution kernels are
        fastest in: tensor cores on a GPU, oneDNN's AVX512-BF16/AMX kernels on a CPU). The step's
        floating outputs come back as float32, so the code around the step is unchanged; batching
        (:meth:`fuse_batch`) is kept. ``"fp32"`` is a no-op. The tolerance against fp32 is
        per method and measured (docs/gpu.md): bfloat16 keeps 8 significant bits, float16 11.

        An exported graph (:meth:`graph`) stays the fp32 network: engines set their own precision.
        """
        if precision == "fp32":
            return self
        if self.no_half_precision:
            from ..errors import MethodError

            raise MethodError(f"{self._label()} runs in fp32 only: {self.no_half_precision}")
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
        if precision not in dtypes:
            raise InputError(f"precision must be one of fp32, bf16, fp16; got {precision!r}")
        if self.step_precision != "fp32":
            raise InputError(f"{self._label()}: the step already runs in {self.step_precision}")
        if precision == "bf16" and self.device.type == "cpu" and not cpu_has_bf16():
            warnings.warn(
                "precision='bf16': this CPU has no native bfloat16 (AVX512-BF16/AMX), so bf16 "
                "is emulated and slower than fp32",
                RuntimeWarning,
                stacklevel=2,
            )
        dtype, eager = dtypes[precision], self.eager_step
        for m in self.networks():
            m.to(memory_format=torch.channels_last)

        def step(*tensors: Any) -> Any:
            args = [_channels_last(t) for t in tensors]
            with torch.autocast(self.device.type, dtype=dtype):
                out = eager(*args)
            return _as_float32(out)

        self._init_step(step)
        self.step_precision = precision
        return self

    def to(self, device: str | torch.device) -> TorchFuser:
        """Move every network to ``device`` (a compiled step keeps its compiled code); on a GPU the
        method's TF32 policy is applied (:func:`ivfuse.devices.apply_tf32`)."""
        from ..devices import apply_tf32

        self.device = torch.device(device)
        for m in self.networks():
            m.to(self.device)
        apply_tf32(self, self.device)
        return self

    def _batch_planes(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """(N, H, W) float32 planes -> (N, H, W) fused planes in [0, 1], as one tensor batch.

        A method that can fuse a batch (every per-image rule applied per sample) overrides this;
        the side maps it keeps are those of the last pair."""
        raise NotImplementedError

    def fuse_batch(
        self, irs: Sequence[np.ndarray], vis: Sequence[np.ndarray], *, batch_size: int | None = None
    ) -> list[np.ndarray]:
        """Fuse pairs: equal-sized pairs go through the network together, ``batch_size`` (default
        :attr:`batch_size`) at a time; the results equal one-by-one :meth:`fuse` (eval-mode
        networks: no statistics across the batch). One by one when the method has no batched
        path or an engine of :mod:`ivfuse.backends` is bound to its step."""
        if len(irs) != len(vis):
            raise InputError(f"fuse_batch: {len(irs)} infrared planes but {len(vis)} visible ones")
        batched = type(self)._batch_planes is not TorchFuser._batch_planes
        if not batched or self.step is not self.eager_step:
            return super().fuse_batch(irs, vis)
        n = int(batch_size or self.batch_size)
        if n < 1:
            raise InputError(f"batch_size must be at least 1, got {n}")
        label, size = self._label(), self.min_size
        pairs = [check_pair(a, b, label=label, min_size=size) for a, b in zip(irs, vis, strict=True)]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (a, _) in enumerate(pairs):
            groups.setdefault(a.shape, []).append(i)
        out: list[np.ndarray | None] = [None] * len(pairs)
        for idx in groups.values():
            for k in range(0, len(idx), n):
                chunk = idx[k : k + n]
                res = self._batch_planes(
                    np.stack([pairs[i][0] for i in chunk]), np.stack([pairs[i][1] for i in chunk])
                )
                for i, r in zip(chunk, res, strict=True):
                    out[i] = np.ascontiguousarray(r, dtype=np.float32)
        return out  # type: ignore[return-value]


class TiledNetFuser(TorchFuser):
    """A deep fuser whose step is one network from two (N, 1, H, W) planes to the fused
    (N, 1, H, W) plane, with no whole-image rule around it: large images run in overlapping tiles
    whose margin exceeds the receptive-field radius :attr:`halo` (the cropped tile centres equal the
    untiled result), and equal-sized pairs go through the network together in :meth:`fuse_batch`.
    A subclass calls :meth:`_setup` from its ``__init__`` and may override :meth:`graph`."""

    #: receptive-field radius of the step in pixels: the smallest allowed tile margin
    halo: int = 0

    def _setup(
        self,
        net: nn.Module,
        device: str | torch.device,
        tile: int | None,
        margin: int,
        step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if margin < self.halo:
            raise ValueError(f"margin must be >= {self.halo}, got {margin}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.tile, self.margin = tile, margin
        self._init_step(step if step is not None else self.net)

    def modules(self) -> tuple[nn.Module, ...]:
        return (self.net,)

    def graph(self) -> GraphSpec:
        return GraphSpec("fuse", self.net, note="tiles (if any) are cut outside the graph")

    def _tiled(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return tiled(self.step, a, b, self.tile, self.margin)

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        return run_planes(self._tiled, ir, vi, self.device)

    def _batch_planes(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            ti = torch.from_numpy(np.ascontiguousarray(ir))[:, None].to(self.device)
            tv = torch.from_numpy(np.ascontiguousarray(vi))[:, None].to(self.device)
            out = self._tiled(ti, tv)
        return np.clip(out[:, 0].float().cpu().numpy(), 0.0, 1.0).astype(np.float32)


def _channels_last(t: Any) -> Any:
    """A 4-D tensor in channels-last memory format (anything else unchanged)."""
    if isinstance(t, torch.Tensor) and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    return t


def _as_float32(out: Any) -> Any:
    """The floating tensors of a step's output (a tensor, a tuple/list or a dict of them) as
    float32 in the default (contiguous) layout."""
    if isinstance(out, torch.Tensor):
        return out.float().contiguous() if out.is_floating_point() else out
    if isinstance(out, dict):
        return {k: _as_float32(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(_as_float32(v) for v in out)
    return out


def run_planes(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ir: np.ndarray,
    vi: np.ndarray,
    device: torch.device,
) -> np.ndarray:
    """``forward`` on (1, 1, H, W) tensors of two checked planes, under inference mode; the result
    as a float32 (H, W) plane clipped to [0, 1]."""
    with torch.inference_mode():
        ti = torch.from_numpy(ir)[None, None].to(device)
        tv = torch.from_numpy(vi)[None, None].to(device)
        out = forward(ti, tv)
    return np.clip(out[0, 0].float().cpu().numpy(), 0.0, 1.0).astype(np.float32)


def run_batch(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ir: np.ndarray,
    vi: np.ndarray,
    device: torch.device,
) -> np.ndarray:
    """:func:`run_planes` on a batch: (N, H, W) planes -> ``forward`` on (N, 1, H, W) tensors ->
    float32 (N, H, W) clipped to [0, 1] (pinned host memory for a GPU)."""
    with torch.inference_mode():
        ti = _to_device(torch.from_numpy(np.ascontiguousarray(ir))[:, None], device)
        tv = _to_device(torch.from_numpy(np.ascontiguousarray(vi))[:, None], device)
        out = forward(ti, tv)
    return np.clip(out[:, 0].float().cpu().numpy(), 0.0, 1.0).astype(np.float32)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; through pinned memory (asynchronous copy) to a GPU."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def tiled(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ir: torch.Tensor,
    vi: torch.Tensor,
    tile: int | None,
    margin: int,
) -> torch.Tensor:
    """``forward(ir, vi)`` on (N, C, H, W) tensors, in ``tile``-sized pieces each extended by
    ``margin`` pixels of context (cropped off again) when the image is larger than one tile."""
    h, w = ir.shape[-2:]
    if tile is None or (h <= tile and w <= tile):
        return forward(ir, vi)
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(y0 - margin, 0), max(x0 - margin, 0)
            yb, xb = min(y1 + margin, h), min(x1 + margin, w)
            r = forward(ir[..., ya:yb, xa:xb], vi[..., ya:yb, xa:xb])
            if out is None:
                out = r.new_empty((*r.shape[:-2], h, w))
            out[..., y0:y1, x0:x1] = r[..., y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    return out


def cpu_has_bf16() -> bool:
    """True when this CPU runs bfloat16 natively (AVX512-BF16 or AMX), as oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass
class GraphSpec:
    """The exportable tensor step of a deep fuser, as :mod:`ivfuse.backends` sees it.

    A fuser's ``graph()`` returns one. The fuser calls the step through its slot ``fuser.step``;
    a backend binds a callable of the same signature that runs the exported graph there
    (``fuser.bind_step``), so tiling, padding and the NumPy rules around the step stay where they
    are. ``note`` says what of the fusion step stays outside the graph and why.

    Fields:
        name: graph name (``"fuse"``, ``"tau"``, ``"weight_maps"``).
        module: ``nn.Module`` whose ``forward`` is the step in eager fp32 (what is exported).
        inputs / outputs: graph input and output names; outputs beyond one come back as a dict
            when ``as_dict`` (DeFusion's four projections), else as one tensor.
        channels: channels of each (1, C, H, W) input.
        dynamic: height and width are dynamic axes of the graph (else one graph per size).
        multiple: the step reflect-pads its input at the bottom/right to this multiple itself, so
            a backend may pad before the graph and crop after (same function; JCAE: 2).
        key: the fuser options baked into the graph (rule, ...): part of the build cache key.
        tolerance: largest difference of the outputs, in gray levels, that still counts as the eager
            fp32 result (0.01; more only where eager fp32 itself is that far from fp64).
        note: what is outside the graph (tiles, a whole-image rule) and why.
        auto: the engines ``--backend auto`` tries for this step, in order (None: every installed
            one in :data:`ivfuse.backends.engines.ENGINES` order); one that is not listed is still
            used when asked for by name. For steps where an engine is measured slower than torch.
    """

    name: str
    module: nn.Module
    inputs: tuple[str, ...] = ("ir", "vi")
    outputs: tuple[str, ...] = ("fused",)
    channels: int = 1
    dynamic: bool = True
    multiple: int = 1
    as_dict: bool = False
    key: str = ""
    tolerance: float = 0.01
    note: str = ""
    auto: tuple[str, ...] | None = None


class StepModule(nn.Module):
    """``nn.Module`` around a plain function of two tensors (``modules`` keeps its weights visible)."""

    def __init__(self, fn: Callable[..., Any], *modules: nn.Module):
        super().__init__()
        self.fn = fn
        self.parts = nn.ModuleList(modules)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> Any:
        return self.fn(a, b)
