"""ivfuse: infrared-visible image fusion - methods, metrics, training and a CLI.

>>> import ivfuse
>>> fused = ivfuse.fuse("ir.png", "vi.png", method="gff")     # doctest: +SKIP
>>> fuser = ivfuse.load("didfuse"); fuser.fuse(ir, vi)          # doctest: +SKIP
>>> ivfuse.evaluate(fused, ir, vi, metrics=["EN", "MI"])        # doctest: +SKIP
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import methods  # the subpackage: ivfuse.methods.didfuse, ivfuse.methods.registry, ...
from .api import DEFAULT_METHOD, Pipeline, fuse, list_methods, load
from .errors import InputError, IvfuseError, MethodError, TrainingError, WeightsError
from .metrics import evaluate

try:
    __version__ = version("ivfuse")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"


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
