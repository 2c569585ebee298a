"""Devices: the one parser of ``--device`` / ``device=`` and the TF32 policy of the deep methods.

Bottom layer of ivfuse (no imports from :mod:`ivfuse.api` or :mod:`ivfuse.cli`); torch is imported
only inside the functions that need it.

* :func:`parse_device` - ``"auto" | "cpu" | "cuda" | "cuda:N"`` -> a canonical string
  (``"cpu"``, ``"cuda:0"``, ...); ``auto`` is ``cuda:0`` when torch sees a GPU, else ``cpu``.
  Asking for CUDA where there is none raises :class:`DeviceError` (exit code 2) with one line.
* :func:`is_cuda` - whether a parsed device is a GPU.
* :func:`tf32_policy` / :func:`apply_tf32` - whether a method may use TensorFloat-32 matmuls and
  convolutions on an Ampere-or-newer GPU. Default: off (fp32-exact results); a method opts in with
  the class attribute ``tf32 = True`` on its fuser, which must be backed by a measurement on a GPU
  (``python -m benchmarks.bench_gpu``: the largest difference from the CPU stays within 0.5 gray
  levels). See docs/gpu.md.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import IvfuseError

__all__ = [
    "DEVICES_HELP",
    "DeviceError",
    "DeviceNote",
    "apply_tf32",
    "cuda_available",
    "is_cuda",
    "parse_device",
    "tf32_policy",
]

#: the help text of every ``--device`` option
DEVICES_HELP = "auto (CUDA when torch sees a GPU, else cpu), cpu, cuda or cuda:N."

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


class DeviceError(IvfuseError):
    """An unknown device, or a CUDA device asked for where torch sees none."""

    exit_code = 2


def cuda_available() -> bool:
    """True when torch is built with CUDA and sees at least one GPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def _cuda_count() -> int:
    import torch

    return int(torch.cuda.device_count())


def parse_device(value: Any = "auto") -> str:
    """The canonical device string of ``value`` (a string, a ``torch.device`` or None = auto).

    ``"auto"`` -> ``"cuda:0"`` when a GPU is visible, else ``"cpu"``; ``"cuda"`` -> ``"cuda:0"``;
    ``"cuda:N"`` is checked against the visible GPUs. Anything else raises :class:`DeviceError`.
    """
    text = "auto" if value is None else str(value).strip().lower()
    if text == "auto":
        return "cuda:0" if cuda_available() else "cpu"
    if text == "cpu":
        return "cpu"
    m = _CUDA.match(text)
    if m is None:
        raise DeviceError(f"unknown device {value!r}; use {DEVICES_HELP}")
    if not cuda_available():
        raise DeviceError(
            f"device {text} asked for, but there is no CUDA device here; use --device cpu or auto"
        )
    index = int(m.group(1) or 0)
    count = _cuda_count()
    if index >= count:
        raise DeviceError(
            f"device {text} asked for, but torch sees {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})"
        )
    return f"cuda:{index}"


def is_cuda(device: Any) -> bool:
    """True for a CUDA device (string or ``torch.device``), without parsing or checking it."""
    return str(device).strip().lower().startswith("cuda")


def tf32_policy(fuser_or_class: Any) -> bool:
    """Whether a method may use TF32 on the GPU: its class attribute ``tf32`` (default False)."""
    cls = fuser_or_class if isinstance(fuser_or_class, type) else type(fuser_or_class)
    return bool(getattr(cls, "tf32", False))


def apply_tf32(fuser_or_class: Any, device: Any = None) -> bool:
    """Set ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32`` to the
    method's :func:`tf32_policy` when ``device`` is CUDA (or None: whenever called); returns the
    policy. These switches are process-wide: the last fuser moved to a GPU sets them."""
    allow = tf32_policy(fuser_or_class)
    if device is not None and not is_cuda(device):
        return allow
    import torch

    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    return allow


class DeviceNote(UserWarning):
    """A method runs on another device than the one asked for (a classical method on the CPU)."""
