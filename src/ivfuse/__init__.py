"""ivfuse: infrared-visible image fusion - methods, metrics, training and a CLI.

>>> import ivfuse
>>> fused = ivfuse.fuse("ir.png", "vi.png", method="gff")     # doctest: +SKIP
>>> fuser = ivfuse.load("didfuse"); fuser.fuse(ir, vi)          # doctest: +SKIP
>>> ivfuse.evaluate(fused, ir, vi, metrics=["EN", "MI"])        # doctest: +SKIP
"""

from __future__ import annotations

from . import methods  # the subpackage: ivfuse.methods.didfuse, ivfuse.methods.registry, ...
from ._version import __version__
from .api import DEFAULT_METHOD, Pipeline, fuse, list_methods, load
from .errors import InputError, IvfuseError, MethodError, TrainingError, WeightsError
from .metrics import evaluate

__all__ = [
    "DEFAULT_METHOD",
    "InputError",
    "IvfuseError",
    "MethodError",
    "Pipeline",
    "TrainingError",
    "WeightsError",
    "__version__",
    "evaluate",
    "fuse",
    "list_methods",
    "load",
    "methods",
]
