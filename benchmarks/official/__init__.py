"""The official networks' eager forward passes, one module per method that has one
(``benchmarks/official/<method>.py``), as the methods' official test scripts run them:
``bench_deep`` compares ivfuse's paths with them.

Each module defines ``fuse(fuser) -> callable(ir, vi) -> fused plane`` on float32 (H, W) planes in
[0, 1], built from the trained network the ivfuse fuser holds.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

import numpy as np


def methods() -> list[str]:
    """The methods with an official forward here."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def forward(method: str, fuser) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The official forward of ``method`` on ``fuser``'s network, or None where there is none."""
    if method not in methods():
        return None
    return importlib.import_module(f"{__name__}.{method}").fuse(fuser)
