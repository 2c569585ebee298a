"""Compact training checkpoints for keeping a run between sessions in git (a few tens of MB).

A checkpoint of an Adam-trained model holds three float32 tensors per parameter (weights, first and
second moment). :func:`pack` keeps the weights exactly, codes the second moment ``exp_avg_sq`` in
8 bits on a per-tensor log2 scale and drops the first moment ``exp_avg``; everything else (epoch,
scheduler, RNG states, history, step counts) is kept as is. :func:`unpack` rebuilds a checkpoint the
trainer resumes from: ``exp_avg`` restarts at zero (momentum rebuilds within about 1 / (1 - beta1)
= 10 steps, during which the steps are smaller) and ``exp_avg_sq`` is within one half code step
(``(log2 max - log2 min) / 508`` in log2, values under 1e-20 stored as 0) of the saved value: for
the DeFusion run measured, 7 % relative (median over tensors; at most 11 %), i.e. about 3.5 % on
the ``sqrt(v)`` that scales Adam's steps, an error that decays as ``v`` is updated (beta2 0.999).
So a resumed run continues closely, but not bit-identically (a resume from the full checkpoint.pt
is bit-identical). For DeFusion (7.9 M parameters): 95 MB -> 39 MB.

Development plumbing, not part of the ivfuse package: used by ``scripts/compact_checkpoint.py`` and
``scripts/ship_weights.py`` (``python scripts/<name>.py`` puts this folder on ``sys.path``; tests
import it as ``scripts.compact`` from the repository root).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ivfuse.train.checkpoint import atomic_write_bytes

COMPACT_FORMAT = "ivfuse-compact-1"
_LEVELS = 254  # codes 1..255 for v >= FLOOR; 0 below
#: second moments below this are stored as 0: their square root (< 1e-10) is under 1 % of Adam's
#: eps (1e-8), which dominates the update's denominator there
FLOOR = 1e-20


def encode_log8(v: torch.Tensor, floor: float = FLOOR) -> tuple[torch.Tensor, tuple[float, float]]:
    """uint8 codes of a non-negative tensor on a log2 scale (0 for values below ``floor``), and the
    (lo, hi) log2 range of the coded values."""
    v = v.detach().to(torch.float64)
    pos = v >= floor
    if not bool(pos.any()):
        return torch.zeros(v.shape, dtype=torch.uint8), (0.0, 0.0)
    logs = torch.log2(v[pos])
    lo, hi = float(logs.min()), float(logs.max())
    span = hi - lo
    codes = torch.zeros(v.shape, dtype=torch.uint8)
    scaled = torch.zeros_like(logs) if span == 0 else (logs - lo) / span * _LEVELS
    codes[pos] = (1 + torch.round(scaled)).to(torch.uint8)
    return codes, (lo, hi)


def decode_log8(codes: torch.Tensor, rng: tuple[float, float]) -> torch.Tensor:
    """float32 values of :func:`encode_log8`'s codes."""
    lo, hi = rng
    pos = codes > 0
    out = torch.zeros(codes.shape, dtype=torch.float64)
    out[pos] = torch.exp2(lo + (codes[pos].to(torch.float64) - 1) / _LEVELS * (hi - lo))
    return out.to(torch.float32)


def pack(ck: dict[str, Any]) -> dict[str, Any]:
    """The compact form of a trainer checkpoint (see the module docstring)."""
    packed = dict(ck)
    opt = ck.get("optimizer")
    if opt is not None:
        state = {}
        for key, st in opt["state"].items():
            st2 = {k: v for k, v in st.items() if k not in ("exp_avg", "exp_avg_sq")}
            if "exp_avg_sq" in st:
                codes, (lo, hi) = encode_log8(st["exp_avg_sq"])
                st2["exp_avg_sq_log8"] = codes
                st2["exp_avg_sq_range"] = torch.tensor([lo, hi], dtype=torch.float64)
            if "exp_avg" in st:
                st2["exp_avg_dropped"] = torch.tensor(list(st["exp_avg"].shape), dtype=torch.int64)
            state[key] = st2
        packed["optimizer"] = {"state": state, "param_groups": opt["param_groups"]}
    packed["compact"] = COMPACT_FORMAT
    return packed


def unpack(packed: dict[str, Any]) -> dict[str, Any]:
    """A trainer checkpoint rebuilt from :func:`pack`'s output."""
    if packed.get("compact") != COMPACT_FORMAT:
        raise ValueError("not a compact ivfuse checkpoint")
    ck = {k: v for k, v in packed.items() if k != "compact"}
    opt = packed.get("optimizer")
    if opt is not None:
        state = {}
        for key, st in opt["state"].items():
            st2 = {k: v for k, v in st.items() if not k.startswith(("exp_avg_sq_", "exp_avg_dropped"))}
            if "exp_avg_dropped" in st:
                st2["exp_avg"] = torch.zeros(tuple(st["exp_avg_dropped"].tolist()), dtype=torch.float32)
            if "exp_avg_sq_log8" in st:
                lo, hi = (float(x) for x in st["exp_avg_sq_range"])
                st2["exp_avg_sq"] = decode_log8(st["exp_avg_sq_log8"], (lo, hi))
            state[key] = st2
        ck["optimizer"] = {"state": state, "param_groups": opt["param_groups"]}
    return ck


def pack_file(src: str | Path, dst: str | Path) -> int:
    """Write the compact form of checkpoint ``src`` to ``dst`` (atomically); returns its size."""
    ck = torch.load(src, map_location="cpu", weights_only=True)
    packed = pack(ck)
    atomic_write_bytes(Path(dst), lambda f: torch.save(packed, f))
    return Path(dst).stat().st_size


def unpack_file(src: str | Path, dst: str | Path) -> None:
    """Rebuild a resumable checkpoint ``dst`` from the compact file ``src`` (atomically)."""
    ck = unpack(torch.load(src, map_location="cpu", weights_only=True))
    atomic_write_bytes(Path(dst), lambda f: torch.save(ck, f))


def max_relative_error(rng: tuple[float, float]) -> float:
    """Largest relative error of a decoded value for a tensor of log2 range ``rng``."""
    lo, hi = rng
    return math.exp2((hi - lo) / (2 * _LEVELS)) - 1.0


# --------------------------------------------------------------------------------------------
# half-precision weights files


def halve_weights(
    method: str, path: str | Path, *, limit_gray: float = 1.0, size: tuple[int, int] = (240, 320)
) -> float:
    """Rewrite the weights file ``path`` of ``method`` with float16 tensors (half the size) if the
    result stays within ``limit_gray`` gray levels of the float32 one; returns that difference.

    The check fuses the synthetic night scene (``size``, seed 0: infrared + colour visible) with
    both files through :class:`ivfuse.api.Pipeline` on the torch backend (the float32 reference:
    the exported backends stay within 0.01 gray levels of it, tests/test_backends.py, and exporting
    the graph twice would cost a minute for DeFusion), rounds both to 8 bits as written to disk and
    takes the largest absolute difference. Over the limit the file is left as it was and
    ``ValueError`` says by how much. Loaders convert the float16 tensors back to float32.
    """
    import os

    import numpy as np
    from safetensors import safe_open
    from safetensors.torch import load_file

    from ivfuse.api import Pipeline
    from ivfuse.data.synthetic import night_scene
    from ivfuse.train.checkpoint import export_safetensors

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    state = load_file(str(path))
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    tmp = path.with_name(f".{path.stem}.fp16.safetensors")
    export_safetensors(tmp, half, {**meta, "dtype": "float16"})
    try:
        scene = night_scene(*size, seed=0)
        pipes = [Pipeline(method, weights=str(p), backend="torch") for p in (path, tmp)]
        out = [np.round(pipe.fuse(scene.ir, scene.vi) * 255) for pipe in pipes]
        diff = float(np.abs(out[0] - out[1]).max())
        if diff > limit_gray:
            raise ValueError(
                f"float16 weights change the fused night scene by {diff:g} gray levels (limit {limit_gray:g})"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return diff
