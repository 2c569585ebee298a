"""Method registry: one name -> one factory, plus everything a method offers.

Modelled on timm's registry: a method module decorates its factory with :func:`register` (one
decorator per method, in the method's own file); :func:`create` builds a ready-to-use fuser by name.
The registry finds the method modules itself (every public module and package under
``ivfuse.methods``, imported lazily on first use so that ``import ivfuse`` stays cheap), so a new
method is its file plus its ``@register`` line.

A *fuser* is an instance of :class:`ivfuse.methods.base.Fuser`: ``fuse(ir, vi) -> fused`` on two
float32 2-D arrays in [0, 1] of equal shape (luma planes) returns one float32 2-D array of that shape
in [0, 1]; see :mod:`ivfuse.methods.base` for the whole contract. Colour handling, bit depths and
file I/O happen outside methods (see :mod:`ivfuse.api`).

What the registry knows of a method (:class:`MethodInfo`): its family, paper and tasks, its fuser
class (and so its capabilities), its weights file and card, and for trainable methods the
``Config`` class and ``training_spec`` function ``ivfuse train`` uses, and the paper's results
tables ``ivfuse bench --paper`` rebuilds (``ivfuse/bench/papers/<file>``).

A deep method lives in its own module ``ivfuse/methods/<name>.py`` and registers ``<name>``; so the
deep methods' names are known without importing torch (:func:`module_methods`, for help texts).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..errors import MethodError, did_you_mean
from .base import Fuser

#: modules of ``ivfuse.methods`` that hold no method (public names; ``_private`` ones are skipped too)
NOT_METHODS: frozenset[str] = frozenset({"base", "registry"})


#: how a method learns: no training ("classical"), from the sources themselves ("self-supervised":
#: auto-encoders, pretext tasks), with a no-reference fusion loss ("unsupervised": MEF-SSIM, GAN,
#: information-weighted losses) or from synthetic ground truth ("supervised")
FAMILIES: tuple[str, ...] = ("classical", "self-supervised", "unsupervised", "supervised")

#: fusion tasks: infrared-visible, multi-exposure, multi-focus
TASKS: tuple[str, ...] = ("ivif", "mef", "mff")


@dataclass(frozen=True)
class MethodInfo:
    """Metadata of one registered method."""

    name: str
    family: str  # one of FAMILIES
    paper: str  # short citation: authors, title, venue year
    summary: str = ""
    trainable: bool = False
    weights: str | None = None  # file name under ivfuse/weights/, None for classical methods
    #: fusion tasks it supports: "ivif" (infrared-visible), "mef" (multi-exposure), "mff" (multi-focus)
    tasks: tuple[str, ...] = ("ivif",)
    #: the :class:`Fuser` subclass the factory returns (capabilities: ``rgb``, ``torch_bf16``)
    fuser: type[Fuser] | None = field(default=None, compare=False, repr=False)
    #: the method's training ``Config`` dataclass (trainable methods)
    config: type | None = field(default=None, compare=False, repr=False)
    #: ``training_spec(config) -> TrainSpec`` (trainable methods)
    training_spec: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    #: file of the paper's results tables under ``ivfuse/bench/papers/`` (``ivfuse bench --paper``)
    paper_tables: str | None = None
    #: the paper's ablation / parameter rows as training variants (:class:`ivfuse.methods._config.Ablation`)
    ablations: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def ablation(self, name: str) -> Any:
        """The :class:`~ivfuse.methods._config.Ablation` called ``name`` (MethodError listing the
        method's ablations otherwise)."""
        for a in self.ablations:
            if a.name == name:
                return a
        known = ", ".join(a.name for a in self.ablations) or "none"
        raise MethodError(f"method {self.name!r} has no ablation {name!r} (its ablations: {known})")

    @property
    def torch_bf16(self) -> bool:
        """The method has a bfloat16 torch path of its own (its factory takes ``precision=``)."""
        return bool(self.fuser is not None and self.fuser.torch_bf16)

    @property
    def rgb(self) -> bool:
        """The method fuses two RGB sources itself (``fuse_rgb``) for mef/mff."""
        return bool(self.fuser is not None and self.fuser.rgb)

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

    @property
    def options(self) -> dict[str, Any]:
        """The method's options (its factory's keyword parameters) and their defaults."""
        return defaults(self.name)

    @property
    def weights_training(self) -> dict[str, Any] | None:
        """How the shipped weights were trained, from their card: data set and size, epochs of the
        recipe's, precision, seed, reduced scale and each deviation from the recipe (``None``
        without a card)."""
        card = self.weights_card
        if card is None:
            return None
        data = card.get("data") or {}
        keys = ("epochs", "recipe_epochs", "iterations", "iterations_all_stages", "precision", "seed",
                "reduced_scale", "stored_dtype")  # fmt: skip
        out = {"data": data.get("name"), "pairs": data.get("pairs")}
        out.update({k: card.get(k) for k in keys if card.get(k) is not None})
        out["deviations_from_recipe"] = card.get("deviations_from_recipe") or {}
        return out

    def as_dict(self) -> dict[str, Any]:
        """The JSON-able metadata (``ivfuse methods --json``)."""
        d: dict[str, Any] = {
            k: getattr(self, k)
            for k in ("name", "family", "paper", "summary", "trainable", "weights", "tasks", "paper_tables")
        }
        d["tasks"] = list(self.tasks)
        d["options"] = {k: v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
                        for k, v in self.options.items()}  # fmt: skip
        d["weights_shipped"] = self.weights_shipped
        d["weights_status"] = self.weights_status
        d["weights_training"] = self.weights_training
        d["ablations"] = [
            {"name": a.name, "row": a.row, "table": a.table, "overrides": dict(a.overrides)}
            for a in self.ablations
        ]
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
    fuser: type[Fuser] | None = None,
    config: type | None = None,
    training_spec: Callable[..., Any] | None = None,
    paper_tables: str | None = None,
    ablations: tuple[Any, ...] = (),
) -> Callable[[Callable[..., Fuser]], Callable[..., Fuser]]:
    """Class/function decorator registering a fuser factory under ``name`` (lowercase).

    ``fuser``: the :class:`Fuser` subclass the factory returns (default: the factory itself when it
    is such a class). A trainable method names its ``config`` class and ``training_spec`` function;
    ``paper_tables``: its paper's results tables, a file under ``ivfuse/bench/papers/``. A method of
    a non-classical family lives in its own module ``ivfuse.methods.<name>``. ``ablations``: the
    paper's ablation rows as :class:`~ivfuse.methods._config.Ablation` variants of ``config``."""
    if name != name.lower():
        raise ValueError(f"method names are lowercase, got {name!r}")
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    if not tasks or any(t not in TASKS for t in tasks):
        raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks!r}")
    if trainable and (config is None or training_spec is None):
        raise ValueError(f"trainable method {name!r} needs config= and training_spec=")
    if ablations:
        if config is None:
            raise ValueError(f"method {name!r}: ablations need config=")
        known = {f.name for f in dataclasses.fields(config)}
        for a in ablations:
            bad = sorted(set(a.overrides) - known)
            if bad:
                raise ValueError(f"method {name!r}: ablation {a.name!r} sets unknown Config fields {bad}")
        if len({a.name for a in ablations}) != len(ablations):
            raise ValueError(f"method {name!r}: ablation names repeat")

    def deco(factory: Callable[..., Fuser]) -> Callable[..., Fuser]:
        if name in _REGISTRY and _REGISTRY[name][1] is not factory:
            raise ValueError(f"method {name!r} registered twice")
        cls = fuser if fuser is not None else factory if isinstance(factory, type) else None
        if cls is None or not issubclass(cls, Fuser):
            raise ValueError(f"method {name!r}: fuser= must name its Fuser subclass, got {cls!r}")
        module, own = getattr(factory, "__module__", ""), f"{__package__}.{name}"
        if family != "classical" and module.startswith(f"{__package__}.") and module != own:
            raise ValueError(f"method {name!r} belongs in {__package__}.{name}, not {module}")
        _REGISTRY[name] = (
            MethodInfo(
                name,
                family,
                paper,
                summary or _first_line(factory),
                trainable,
                weights,
                tuple(tasks),
                cls,
                config,
                training_spec,
                paper_tables,
                tuple(ablations),
            ),
            factory,
        )
        return factory

    return deco


def _first_line(obj: object) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _method_modules() -> list[tuple[str, bool]]:
    """(name, is_package) of the method modules under ``ivfuse.methods``, found without importing."""
    pkg = importlib.import_module(__package__)
    return sorted(
        (m.name, m.ispkg)
        for m in pkgutil.iter_modules(pkg.__path__)
        if not m.name.startswith("_") and m.name not in NOT_METHODS
    )


def module_methods() -> list[str]:
    """Names of the methods with a module of their own (the deep methods: ``ivfuse/methods/<name>.py``
    registers ``<name>``), without importing them (no torch): for help texts."""
    return [name for name, ispkg in _method_modules() if not ispkg]


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod, _ in _method_modules():
            importlib.import_module(f"{__package__}.{mod}")


def _find(key: str) -> None:
    """Import what registers method ``key``, and no more: its own module (a deep method), else the
    classical packages (NumPy only), else everything. A process that fuses with one classical
    method never imports torch (a Ray worker starts ~1.5 s faster)."""
    if key in _REGISTRY or _loaded:
        return
    modules = _method_modules()
    if (key, False) in modules:
        importlib.import_module(f"{__package__}.{key}")
    if key not in _REGISTRY:
        for mod, ispkg in modules:
            if ispkg:
                importlib.import_module(f"{__package__}.{mod}")
    if key not in _REGISTRY:
        _ensure_loaded()


def available() -> list[MethodInfo]:
    """All registered methods, classical first, then by name."""
    _ensure_loaded()
    return sorted((i for i, _ in _REGISTRY.values()), key=lambda i: (i.family != "classical", i.name))


def info(name: str) -> MethodInfo:
    """Metadata of one method; :class:`MethodError` for an unknown name."""
    key = name.lower()
    _find(key)
    if key not in _REGISTRY:
        names = ", ".join(i.name for i in available())
        raise MethodError(f"unknown method {name!r}; available: {names}")
    return _REGISTRY[key][0]


def create(name: str, **kwargs: Any) -> Fuser:
    """Build the fuser registered under ``name``; ``kwargs`` go to its factory. An option the
    factory does not take is a :class:`MethodError` naming the method's options (and the closest
    one, for a typo), not a ``TypeError`` from inside the factory."""
    check_options(name, kwargs)
    return _REGISTRY[name.lower()][1](**kwargs)


def _parameters(name: str) -> list[Any] | None:
    """The parameters of method ``name``'s factory (``inspect.Parameter``), or ``None`` where its
    signature cannot be read."""
    import inspect

    info(name)
    try:
        return list(inspect.signature(_REGISTRY[name.lower()][1]).parameters.values())
    except (TypeError, ValueError):
        return None


def check_options(name: str, options: dict[str, Any]) -> None:
    """:class:`MethodError` unless method ``name`` takes every key of ``options`` (the values are
    the factory's to check): one line with the method's options and the closest one to a typo.
    A factory with ``**options`` (or no readable signature) checks its own."""
    params = _parameters(name)
    if params is None or any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in options if k not in known]
    if unknown:
        hint = did_you_mean(unknown[0], known)
        raise MethodError(
            f"method {name!r} has no option {unknown[0]!r}{hint}; its options: {', '.join(known) or 'none'}"
        )


def is_registered(name: str) -> bool:
    _find(name.lower())
    return name.lower() in _REGISTRY


def defaults(name: str) -> dict[str, Any]:
    """The default option values of a method's factory (its keyword parameters with defaults)."""
    return {p.name: p.default for p in _parameters(name) or () if p.default is not p.empty}


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


def parameter_count(fuser: Fuser) -> int:
    """Size of a fuser's test-time networks (:meth:`Fuser.parameter_count`; 0 for classical methods)."""
    return int(fuser.parameter_count())


def training(name: str) -> tuple[type, Callable[..., Any]]:
    """``(Config class, training_spec function)`` of a trainable method; :class:`MethodError` else."""
    mi = info(name)
    if not mi.trainable or mi.config is None or mi.training_spec is None:
        raise MethodError(f"method {mi.name!r} is not trainable")
    return mi.config, mi.training_spec


def with_paper_tables() -> list[MethodInfo]:
    """The methods whose paper's results tables ivfuse carries (``ivfuse bench --paper``)."""
    return [m for m in available() if m.paper_tables]


def weights_path(filename: str):
    """Path of a shipped weight file inside the installed package."""
    return resources.files("ivfuse") / "weights" / filename
