"""Method registry: one name -> one factory, plus the metadata users see in ``ivfuse methods``.

Modelled on timm's registry: a method module decorates its factory with :func:`register`;
:func:`create` builds a ready-to-use fuser by name. The registry imports the method modules
lazily on first use so that ``import ivfuse`` stays cheap.

A *fuser* is any object with ``fuse(ir, vi) -> fused`` that takes two float32 2-D arrays in
[0, 1] of equal shape (luma planes) and returns one float32 2-D array of that shape in [0, 1].
Colour handling, bit depths and file I/O happen outside methods (see :mod:`ivfuse.api`).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, Protocol

import numpy as np

from ..errors import MethodError

#: Modules that register methods when imported. Add a new method module here.
METHOD_MODULES: tuple[str, ...] = (
    "ivfuse.methods.classical",
    "ivfuse.methods.didfuse",
    "ivfuse.methods.jcae",
    "ivfuse.methods.sslwaeie",
    "ivfuse.methods.ifesnet",
    "ivfuse.methods.defusion",
)


#: fusion tasks: infrared-visible, multi-exposure, multi-focus
TASKS: tuple[str, ...] = ("ivif", "mef", "mff")


class Fuser(Protocol):
    """What :func:`create` returns."""

    def fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class MethodInfo:
    """Metadata of one registered method."""

    name: str
    family: str  # "classical" or "self-supervised"
    paper: str  # short citation: authors, title, venue year
    summary: str = ""
    trainable: bool = False
    weights: str | None = None  # file name under ivfuse/weights/, None for classical methods
    #: fusion tasks it supports: "ivif" (infrared-visible), "mef" (multi-exposure), "mff" (multi-focus)
    tasks: tuple[str, ...] = ("ivif",)

    @property
    def weights_shipped(self) -> bool:
        """True when the package carries trained weights for this method."""
        return self.weights is not None and weights_path(self.weights).is_file()

    @property
    def weights_card(self) -> dict[str, Any] | None:
        """The card shipped beside the weights (``<name>.json``: epochs, data, metrics), if any."""
        if not self.weights_shipped:
            return None
        card = weights_path(self.weights).with_suffix(".json")
        try:
            return json.loads(card.read_text())
        except (OSError, ValueError):
            return None

    @property
    def weights_status(self) -> str:
        """One line: ``not needed``, ``missing: train it``, ``shipped`` or the snapshot state."""
        if self.weights is None:
            return "not needed"
        if not self.weights_shipped:
            return "missing: train it"
        card = self.weights_card or {}
        if card.get("reduced_scale"):
            done, planned = card.get("epochs"), card.get("epochs_planned") or card.get("recipe_epochs")
            return f"shipped, reduced scale ({done}/{planned} epochs)"
        return "shipped"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights_shipped"] = self.weights_shipped
        d["weights_status"] = self.weights_status
        return d


_REGISTRY: dict[str, tuple[MethodInfo, Callable[..., Fuser]]] = {}
_loaded = False


def register(
    name: str,
    *,
    family: str,
    paper: str,
    summary: str = "",
    trainable: bool = False,
    weights: str | None = None,
    tasks: tuple[str, ...] = ("ivif",),
) -> Callable[[Callable[..., Fuser]], Callable[..., Fuser]]:
    """Class/function decorator registering a fuser factory under ``name`` (lowercase)."""
    if name != name.lower():
        raise ValueError(f"method names are lowercase, got {name!r}")
    if family not in ("classical", "self-supervised"):
        raise ValueError(f"unknown family {family!r}")
    if not tasks or any(t not in TASKS for t in tasks):
        raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks!r}")

    def deco(factory: Callable[..., Fuser]) -> Callable[..., Fuser]:
        if name in _REGISTRY and _REGISTRY[name][1] is not factory:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = (
            MethodInfo(
                name, family, paper, summary or _first_line(factory), trainable, weights, tuple(tasks)
            ),
            factory,
        )
        return factory

    return deco


def _first_line(obj: object) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in METHOD_MODULES:
            importlib.import_module(mod)


def available() -> list[MethodInfo]:
    """All registered methods, classical first, then by name."""
    _ensure_loaded()
    return sorted((i for i, _ in _REGISTRY.values()), key=lambda i: (i.family != "classical", i.name))


def info(name: str) -> MethodInfo:
    """Metadata of one method; :class:`MethodError` for an unknown name."""
    _ensure_loaded()
    key = name.lower()
    if key not in _REGISTRY:
        names = ", ".join(i.name for i in available())
        raise MethodError(f"unknown method {name!r}; available: {names}")
    return _REGISTRY[key][0]


def create(name: str, **kwargs: Any) -> Fuser:
    """Build the fuser registered under ``name``; ``kwargs`` go to its factory."""
    info(name)
    return _REGISTRY[name.lower()][1](**kwargs)


def is_registered(name: str) -> bool:
    _ensure_loaded()
    return name.lower() in _REGISTRY


def defaults(name: str) -> dict[str, Any]:
    """The default option values of a method's factory (its keyword parameters with defaults)."""
    import inspect

    info(name)
    factory = _REGISTRY[name.lower()][1]
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def check_task(name: str, task: str) -> MethodInfo:
    """The method's metadata if it supports ``task``; :class:`MethodError` with one line otherwise."""
    if task not in TASKS:
        raise MethodError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    mi = info(name)
    if task not in mi.tasks:
        raise MethodError(
            f"method {mi.name!r} does not support the task {task!r} (it supports: {', '.join(mi.tasks)})"
        )
    return mi


def parameter_count(fuser: object) -> int:
    """Trainable-network size of a fuser: its ``parameter_count()`` if it has one, else the parameters
    of the ``torch.nn.Module`` objects among its attributes (0 for classical methods)."""
    if callable(getattr(fuser, "parameter_count", None)):
        return int(fuser.parameter_count())
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    seen: dict[int, object] = {}
    for value in vars(fuser).values() if hasattr(fuser, "__dict__") else ():
        if isinstance(value, torch.nn.Module):
            for prm in value.parameters():
                seen[id(prm)] = prm
    return int(sum(p.numel() for p in seen.values()))


def weights_path(filename: str):
    """Path of a shipped weight file inside the installed package."""
    return resources.files("ivfuse") / "weights" / filename
