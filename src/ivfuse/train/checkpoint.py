"""Atomic checkpoints, RNG state capture/restore and safetensors export.

Checkpoints are written with ``torch.save`` to a temporary file in the same folder, flushed to
disk and renamed over the previous one (:func:`ivfuse.io.atomic_write`), so a run killed at any
moment leaves either the old or the new checkpoint, never half of one. They are read back with
``torch.load(weights_only=True)`` (the restricted unpickler: tensors and plain containers only, no
code). Exported weights, the files users load, are safetensors.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import io
from ..errors import TrainingError

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


def atomic_write_bytes(path: Path, write: Callable[..., object]) -> None:
    """Call ``write(file_object)`` on a temp file next to ``path``, flush it to disk and rename it
    into place (:func:`ivfuse.io.atomic_write_bytes` with ``durable=True``)."""
    io.atomic_write_bytes(path, write, durable=True)


def atomic_write_text(path: Path, text: str) -> None:
    """``text`` (UTF-8) to ``path``, atomically and flushed to disk (run cards, loss history)."""
    io.atomic_write_text(path, text, durable=True)


def rng_state() -> dict[str, Any]:
    """The state of every random generator the training loop may touch."""
    np_state = np.random.get_state()  # noqa: NPY002 (global legacy RNG, captured on purpose)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT_VERSION, **payload}
    atomic_write_bytes(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: Path, method: str) -> dict[str, Any]:
    """Read a checkpoint; refuse one that is corrupt or belongs to another method."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainingError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT_VERSION or "method" not in ck:
        raise TrainingError(f"{path}: not an ivfuse training checkpoint")
    if ck["method"] != method:
        raise TrainingError(f"{path}: checkpoint of method {ck['method']!r}, cannot resume it as {method!r}")
    return ck


def export_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write ``tensors`` (contiguous CPU copies) with string ``metadata`` atomically."""
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    blob = save(clean, metadata=meta)
    atomic_write_bytes(path, lambda f: f.write(blob))
