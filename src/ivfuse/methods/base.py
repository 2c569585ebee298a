"""The fuser contract: what every method in :mod:`ivfuse.methods` implements, and the input checks.

A *fuser* is an instance of :class:`Fuser`. Its public interface:

* ``fuse(ir, vi)``: two float 2-D planes of one shape in [0, 1] (the infrared plane and the visible
  luma; for ``mef``/``mff`` the two sources' lumas) -> one float32 plane of that shape in [0, 1].
  The base class checks the inputs (:func:`check_pair`) and calls the method's ``_fuse``.
* ``fuse_batch(irs, vis)``: many pairs -> a list of fused planes (default: one ``fuse`` per pair).
* ``fuse_rgb(a, b, task=...)``: two (H, W, 3) sources -> (H, W, 3), only where the class sets
  ``rgb = True`` (DeFusion); :class:`ivfuse.api.Pipeline` then hands RGB sources to it.
* ``side_maps()``: the extra maps of the last fusion (contribution maps, weight maps, ...), name ->
  :class:`SideMap`; a map with a ``path`` is written by :meth:`ivfuse.api.Pipeline.fuse_files`.
* ``parameter_count()``: parameters of the networks used at test time (0 for classical methods).
* ``graph()``: the exportable tensor step (a :class:`ivfuse.methods._torch.GraphSpec`), or None.
* ``step`` / ``bind_step(fn)`` / ``unbind_step()``: the slot through which a deep fuser calls its
  tensor step; :mod:`ivfuse.backends` binds an engine there (same signature) and unbinds it on
  failure. ``step`` is None for fusers without a graph.
* ``to(device)``: move the networks (classical methods run in NumPy on the CPU).

Capabilities are class attributes, read by the registry and the API without building a fuser:
``rgb`` (has ``fuse_rgb``), ``torch_bf16`` (its factory takes ``precision="bf16"``: its own torch
bfloat16 path). Deep methods derive from :class:`ivfuse.methods._torch.TorchFuser`.

This module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError, MethodError

__all__ = ["Fuser", "SideMap", "check_image", "check_pair"]


def check_image(arr: np.ndarray, name: str, *, plane: bool = False, label: str = "fusion") -> np.ndarray:
    """``arr`` if it is an image a fuser or the API accepts, else one-line :class:`InputError`.

    ``plane``: a 2-D luma plane only (what ``fuse`` takes); else (H, W), (H, W, 1) or (H, W, 3)
    (what :class:`ivfuse.api.Pipeline` reads). ``name`` names the image in the message."""
    arr = np.asarray(arr)
    if plane:
        if arr.ndim != 2:
            raise InputError(f"{label} fuses 2-D luma planes, got {name} of shape {arr.shape}")
    elif arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3)):
        raise InputError(f"{name}: expected an HxW or HxWx3 image, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name}: empty image of shape {arr.shape}")
    return arr


def check_pair(
    a: np.ndarray,
    b: np.ndarray,
    names: tuple[str, str] = ("infrared", "visible"),
    *,
    plane: bool = True,
    label: str = "fusion",
    min_size: int = 1,
    dtype: Any = np.float32,
    size_hint: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """The one input check of ivfuse: two images (:func:`check_image` each) of one height and width,
    at least ``min_size`` pixels on each side; returned as ``dtype`` (None: unchanged, no copy when
    possible). Raises :class:`InputError` with one line naming the images by ``names``;
    ``size_hint`` is appended to the message of two sizes that differ (what to do about it)."""
    a = check_image(a, names[0], plane=plane, label=label)
    b = check_image(b, names[1], plane=plane, label=label)
    if a.shape[:2] != b.shape[:2]:
        (ha, wa), (hb, wb) = a.shape[:2], b.shape[:2]
        raise InputError(f"{names[0]} is {wa}x{ha} but {names[1]} is {wb}x{hb}: sizes differ{size_hint}")
    if min(a.shape[:2]) < min_size:
        raise InputError(f"image too small for {label}: {a.shape[:2]} (at least {min_size} px a side)")
    if dtype is not None:
        a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    return a, b


@dataclass(frozen=True)
class SideMap:
    """One extra map of the last fusion: ``image`` (float32 (H, W) or (H, W, 3) in [0, 1]) and
    ``path``, where :meth:`ivfuse.api.Pipeline.fuse_files` writes it (``{stem}`` becomes the stem of
    the fused output), or None when the user did not ask for it."""

    image: np.ndarray
    path: str | None = None


_NO_MAPS: Mapping[str, SideMap] = MappingProxyType({})


class Fuser:
    """Base class of every fuser (see the module docstring for the contract).

    A subclass implements ``_fuse(ir, vi)`` on planes already checked and converted to ``dtype``;
    a deep one also ``graph()`` and ``modules()`` and calls its tensor step through ``self.step``.
    """

    #: name of the method in messages (default: the class name)
    label: ClassVar[str] = ""
    #: smallest height/width accepted (reflection padding of deep methods needs 2)
    min_size: ClassVar[int] = 1
    #: dtype the planes are handed to ``_fuse`` in
    dtype: ClassVar[Any] = np.float32
    #: implements ``fuse_rgb(a, b, task=...)``: fuses two RGB sources itself (mef/mff)
    rgb: ClassVar[bool] = False
    #: the factory takes ``precision="bf16"``: a bfloat16 path of the method's own in torch
    torch_bf16: ClassVar[bool] = False

    _side: Mapping[str, SideMap] = _NO_MAPS
    _map_paths: Mapping[str, str] = _NO_MAPS
    _step: Callable[..., Any] | None = None
    _eager_step: Callable[..., Any] | None = None

    # -- fusion --------------------------------------------------------------------------------

    def fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """Fuse two planes of one shape in [0, 1] -> float32 plane of that shape in [0, 1]."""
        ir, vi = check_pair(ir, vi, label=self._label(), min_size=self.min_size, dtype=self.dtype)
        return self._fuse(ir, vi)

    def _fuse(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement _fuse")

    def fuse_batch(self, irs: Sequence[np.ndarray], vis: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Fuse pairs ``(irs[i], vis[i])`` (lists of planes, or (N, H, W) arrays) -> list of planes.
        The default fuses them one by one; the side maps are those of the last pair."""
        if len(irs) != len(vis):
            raise InputError(f"fuse_batch: {len(irs)} infrared planes but {len(vis)} visible ones")
        return [self.fuse(a, b) for a, b in zip(irs, vis, strict=True)]

    def fuse_rgb(self, a: np.ndarray, b: np.ndarray, *, task: str = "mef") -> np.ndarray:
        """Two (H, W, 3) sources -> (H, W, 3); only for classes with ``rgb = True``."""
        raise MethodError(f"{self._label()} does not fuse RGB sources itself (it fuses luma planes)")

    # -- side maps -----------------------------------------------------------------------------

    def side_maps(self) -> dict[str, SideMap]:
        """The extra maps of the last fusion, name -> :class:`SideMap` (``{}`` when the method has
        none or has not fused yet)."""
        return dict(self._side)

    def _keep_maps(self, maps: Mapping[str, np.ndarray]) -> None:
        """Remember ``maps`` of this fusion, with the paths the user asked them written to."""
        self._side = MappingProxyType({k: SideMap(v, self._map_paths.get(k)) for k, v in maps.items()})

    def _write_maps(self, paths: Mapping[str, str]) -> None:
        """Set where :meth:`ivfuse.api.Pipeline.fuse_files` writes side maps (from a method option)."""
        self._map_paths = MappingProxyType({k: str(v) for k, v in paths.items()})

    # -- networks ------------------------------------------------------------------------------

    def modules(self) -> tuple[Any, ...]:
        """The ``torch.nn.Module`` objects whose parameters run at test time (none: classical)."""
        return ()

    def parameter_count(self) -> int:
        """Number of parameters of :meth:`modules` (0 for classical methods)."""
        mods = self.modules()
        if not mods:
            return 0
        from ..nn import parameter_count

        return parameter_count(*mods)

    def graph(self) -> Any:
        """The exportable tensor step (``GraphSpec``), or None for a fuser without one."""
        return None

    def to(self, device: Any) -> Fuser:
        """Move the fuser to ``device``; a NumPy fuser runs on the CPU only."""
        if str(device) != "cpu":
            raise MethodError(f"{self._label()} runs in NumPy on the CPU, not on {device}")
        return self

    # -- the tensor step a backend binds to ------------------------------------------------------

    def _init_step(self, eager: Callable[..., Any]) -> None:
        """Declare the fuser's tensor step (called from a deep fuser's ``__init__``)."""
        self._eager_step = self._step = eager

    @property
    def step(self) -> Callable[..., Any] | None:
        """The callable the fuser runs its tensor step through (eager torch, or a bound engine)."""
        return self._step

    @property
    def eager_step(self) -> Callable[..., Any] | None:
        """The fuser's own (torch) step, whatever is bound."""
        return self._eager_step

    def bind_step(self, fn: Callable[..., Any]) -> None:
        """Run the tensor step through ``fn`` (same signature as :attr:`eager_step`) from now on."""
        if self._eager_step is None:
            raise MethodError(f"{self._label()} has no tensor step to bind")
        self._step = fn

    def unbind_step(self) -> None:
        """Back to the eager step."""
        self._step = self._eager_step

    def _label(self) -> str:
        return self.label or type(self).__name__
