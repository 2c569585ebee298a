"""Fast inference backends for the deep methods: the fuser's tensor step on ONNX Runtime or OpenVINO.

A deep fuser names its tensor step with ``graph()`` (a :class:`ivfuse.methods._torch.GraphSpec`);
:func:`bind` exports that step to ONNX once per process (cached per method, weights and graph
options), builds an engine for it, and binds a :class:`GraphStep` to the fuser's step slot
(``fuser.bind_step``), so everything around the step (tiles, padding, NumPy fusion rules, colour)
runs unchanged::

    import ivfuse
    fuser = ivfuse.load("didfuse", backend="auto")      # what `ivfuse fuse -m didfuse` does
    fuser.backend                                       # "openvino" when installed

Backends: ``torch`` (eager PyTorch, always there), ``onnxruntime`` and ``openvino`` (the
``ivfuse[fast]`` extra). ``auto`` takes the first of :data:`engines.ENGINES` that is installed and
reproduces eager fp32 within :data:`EXACT_GRAY` gray levels on a check pair, else torch.
A backend that fails to build or to run gives one warning and the fuser goes on in torch (with
``auto``, engines that only miss the fp32 tolerance are passed over silently: torch is the choice,
and ``Binding.reason`` says why).
Half precision is opt-in: ``precision="bf16"`` is OpenVINO's bf16 inference on a CPU with
AVX512-BF16/AMX, else torch (the method's own bf16 path, or its eager step under bfloat16
autocast); ``precision="fp16"`` is torch float16 autocast on a CUDA device.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError
from . import engines

#: every value of ``--backend``
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime", "openvino")
#: every value of ``--precision``
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
#: fp32-exact: the largest difference from eager torch fp32 ``auto`` accepts, in gray levels (of 255)
EXACT_GRAY = 0.01
#: size of the random pair an engine is checked on before ``auto`` uses it
CHECK_HW = (40, 56)


class BackendWarning(RuntimeWarning):
    """A backend failed and the fuser fell back to torch."""


@dataclass
class Stats:
    """What this process has built (tests read it: a second identical load builds nothing)."""

    exports: int = 0  # graphs exported with torch.onnx
    loaded: int = 0  # graphs read from the disk cache instead (an earlier process exported them)
    engines: int = 0


STATS = Stats()
_MODELS: dict[tuple, Any] = {}  # (method, digest, graph, key) -> onnx.ModelProto bytes
_ENGINES: dict[tuple, Any] = {}  # model key + (backend, precision, threads) -> engine
_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every exported graph and built engine of this process (tests; long-lived processes);
    the graphs on disk (:func:`cache_dir`) stay."""
    with _LOCK:
        _MODELS.clear()
        _ENGINES.clear()


def check_choice(backend: str, precision: str) -> None:
    """One-line :class:`BackendError` for an unknown backend or precision."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")


def available() -> list[str]:
    """The backends usable here: ``torch`` plus the installed engines."""
    return ["torch", *(n for n in engines.ENGINES if engines.installed(n))]


@dataclass
class Plan:
    """Which backend a pipeline tries, and the torch options it needs (``precision`` for a
    method's own bf16 path; ``autocast``: the half type :meth:`ivfuse.methods._torch.TorchFuser.autocast`
    runs the eager step in, for a method without one)."""

    backend: str  # "torch", "onnxruntime", "openvino", or "auto" (try the engines in order)
    precision: str
    torch_options: dict[str, Any] = field(default_factory=dict)
    candidates: tuple[str, ...] = ()
    autocast: str | None = None


def plan(
    method: str, backend: str, precision: str, *, deep: bool, options: dict[str, Any], torch_precision: bool
) -> Plan:
    """Decide before the fuser is built. ``deep``: the method has a graph; ``torch_precision``: it
    has a bf16 torch path of its own (``MethodInfo.torch_bf16``: its factory takes ``precision=``)."""
    check_choice(backend, precision)
    if not deep:
        if backend in engines.ENGINES:
            raise BackendError(
                f"method {method!r} has no exportable graph (it runs in NumPy); use --backend torch"
            )
        if precision != "fp32":
            raise BackendError(f"--precision {precision} is for the deep methods, not {method!r}")
        return Plan("torch", "fp32")
    on_gpu = str(options.get("device", "cpu")).startswith("cuda")
    if on_gpu and backend in engines.ENGINES:
        # the engines here are ONNX Runtime's and OpenVINO's CPU engines: never for a CUDA fuser
        raise BackendError(
            f"backend {backend!r} runs on the CPU; with a CUDA device use --backend torch (or auto)"
        )
    if backend in engines.ENGINES and not engines.installed(backend):
        raise BackendError(f"backend {backend!r} is not installed: pip install 'ivfuse[fast]'")
    # a device other than the CPU, or torch.compile asked for, is a torch request
    if backend == "auto" and (str(options.get("device", "cpu")) != "cpu" or options.get("compile")):
        backend = "torch"
    torch_bf16 = {"precision": "bf16"} if precision == "bf16" else {}
    if precision == "fp16":
        if not on_gpu:
            raise BackendError(
                "--precision fp16 is for CUDA devices (a CPU has no fast float16 convolutions); "
                "on a CPU use --precision bf16"
            )
        if backend not in ("auto", "torch"):
            raise BackendError(f"--precision fp16 runs in torch on the GPU, not on {backend!r}")
        return Plan("torch", "fp16", autocast="fp16")
    if precision == "bf16":
        if backend in ("auto", "openvino") and not on_gpu and engines.cpu_bf16("openvino"):
            return Plan("openvino", "bf16")
        if backend == "openvino":
            raise BackendError(
                "--precision bf16: this CPU has no native bfloat16 (AVX512-BF16/AMX) for OpenVINO"
            )
        if backend == "onnxruntime":
            raise BackendError("onnxruntime runs these graphs in fp32 only; use --backend openvino for bf16")
        if not torch_precision:  # the eager step under bfloat16 autocast
            return Plan("torch", "bf16", autocast="bf16")
        return Plan("torch", "bf16", torch_bf16)
    if backend == "auto":
        cands = tuple(n for n in engines.ENGINES if engines.installed(n))
        return Plan("auto" if cands else "torch", "fp32", candidates=cands)
    return Plan(backend, "fp32", candidates=(backend,) if backend != "torch" else ())


class GraphStep:
    """Stands in for a fuser's tensor step: torch tensors -> NumPy -> engine -> torch tensors.

    Pads by reflection to the spec's multiple (the step would do so itself) and crops back. If the
    engine raises, warns once, unbinds itself from the fuser (back to its eager step) and returns
    the eager result.
    """

    def __init__(self, engine, spec, fuser: Any, eager: Callable, on_fallback: Callable[[str], None]):
        self.engine, self.spec, self.fuser, self.eager = engine, spec, fuser, eager
        self.on_fallback = on_fallback

    def __call__(self, *tensors):
        import torch
        import torch.nn.functional as F

        h, w = tensors[0].shape[-2:]
        m = self.spec.multiple
        ph, pw = (-h) % m, (-w) % m
        xs = tensors
        if ph or pw:
            xs = tuple(F.pad(t, (0, pw, 0, ph), mode="reflect") for t in tensors)
        arrays = [np.ascontiguousarray(t.detach().float().cpu().numpy()) for t in xs]
        try:
            outs = self.engine(arrays)
        except Exception as e:
            self.fuser.unbind_step()
            self.on_fallback(
                f"{self.engine.name} failed while fusing ({_line(e)}); running in torch from now on"
            )
            return self.eager(*tensors)
        device = tensors[0].device
        res = [torch.from_numpy(o)[..., :h, :w].to(device) for o in outs]
        if self.spec.as_dict:
            return dict(zip(self.spec.outputs, res, strict=True))
        return res[0]


def _line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _outputs(out: Any, spec) -> list[np.ndarray]:
    if isinstance(out, dict):
        return [out[k].float().numpy() for k in spec.outputs]
    if isinstance(out, (tuple, list)):
        return [o.float().numpy() for o in out]
    return [out.float().numpy()]


def max_gray_diff(engine, spec, hw: tuple[int, int] = CHECK_HW, seed: int = 1) -> float:
    """Largest |engine - eager fp32| over all outputs on a random pair, in gray levels, where the
    outputs are clamped to [0, 1] as every fuser clamps its result."""
    import torch

    from .onnx import example_inputs

    xs = example_inputs(spec, hw, seed=seed)
    with torch.inference_mode():
        ref = _outputs(spec.module(*xs), spec)
    got = engine([x.numpy() for x in xs])
    return max(
        float(np.abs(np.clip(a, 0, 1) - np.clip(b, 0, 1)).max()) * 255 for a, b in zip(got, ref, strict=True)
    )


def cache_dir() -> Path | None:
    """Where exported graphs are kept between processes: ``$IVFUSE_CACHE`` (``off`` disables it),
    else ``$XDG_CACHE_HOME/ivfuse`` or ``~/.cache/ivfuse``."""
    v = os.environ.get("IVFUSE_CACHE")
    if v is not None:
        return None if v.strip().lower() in ("", "0", "off", "none") else Path(v)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ivfuse"


@functools.cache
def _code_digest() -> str:
    """A hash of ivfuse's own source files: an edited network (same version number) exports a new
    graph instead of reusing a cached one traced from the old code."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _cache_file(key: tuple) -> Path | None:
    """The graph file of ``key`` under :func:`cache_dir`: named by a hash of the key (weights
    digest included), of the torch and ivfuse versions that export it and of ivfuse's source."""
    import torch

    from .._version import __version__

    root = cache_dir()
    if root is None:
        return None
    h = hashlib.sha256(repr((key, torch.__version__, __version__, _code_digest())).encode())
    h = h.hexdigest()[:32]
    return root / "graphs" / f"{key[0]}-{h}.onnx"


def model_bytes(method: str, spec, digest: str) -> bytes:
    """The exported ONNX model of ``spec``: exported once per process and cache key, and kept on
    disk (:func:`cache_dir`), so that a later process skips the export (seconds per graph)."""
    from . import onnx as onnx_export

    key = (method, digest, spec.name, spec.key)
    with _LOCK:
        if key not in _MODELS:
            path = _cache_file(key)
            if path is not None and path.is_file():
                STATS.loaded += 1
                _MODELS[key] = path.read_bytes()
            else:
                STATS.exports += 1
                try:
                    proto = onnx_export.export(spec, {"method": method, "weights_digest": digest})
                    _MODELS[key] = proto.SerializeToString()
                except Exception as e:  # remembered: the next backend does not export again
                    _MODELS[key] = e
                else:
                    _store(path, _MODELS[key])
        got = _MODELS[key]
    if isinstance(got, Exception):
        raise got
    return got


def _store(path: Path | None, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; a cache that cannot be written is skipped."""
    if path is None:
        return
    from ..io import atomic_write_bytes

    try:
        atomic_write_bytes(path, data)
    except OSError:
        pass


def engine_for(method: str, spec, backend: str, precision: str, threads: int | None = None):
    """The engine of ``backend`` for ``spec`` (built once per process and cache key)."""
    import torch

    from .onnx import state_digest

    threads = int(threads or torch.get_num_threads())
    digest = state_digest(spec.module)
    key = (method, digest, spec.name, spec.key, backend, precision, threads)
    with _LOCK:
        hit = _ENGINES.get(key)
    if hit is not None:
        return hit
    model = model_bytes(method, spec, digest)
    root = cache_dir()
    eng = engines.build(backend, model, threads, precision, None if root is None else root / backend)
    with _LOCK:
        _ENGINES[key] = eng
        STATS.engines += 1
    return eng


@dataclass
class Binding:
    """What a pipeline runs on: ``backend`` and ``precision`` actually in use, and why."""

    backend: str
    precision: str
    reason: str = ""
    check_gray: float | None = None  # the engine's difference from eager fp32 on the check pair
    warned: bool = False

    def fallback(self, message: str) -> None:
        self.backend, self.precision = "torch", "fp32"
        if not self.warned:
            self.warned = True
            warnings.warn(f"{message}; using torch", BackendWarning, stacklevel=3)


def bind(fuser: Any, method: str, p: Plan) -> Binding:
    """Attach the planned backend to ``fuser`` (see the module docstring); never raises for a
    backend that fails to build: warns once and leaves the fuser on torch."""
    if p.backend == "torch":
        if p.precision == "fp32":
            return Binding("torch", "fp32", "requested")
        how = "autocast" if p.autocast else "the method's own path"
        return Binding("torch", p.precision, f"torch {p.precision} ({how})")
    binding = Binding("torch", "fp32")
    cands = p.candidates or (p.backend,)
    failures = []
    crashed = False  # an engine raised (a warning), rather than only missing the fp32 tolerance
    try:
        spec = fuser.graph()
    except Exception as e:
        binding.fallback(f"{method}: no exportable graph ({_line(e)})")
        return binding
    if spec is None:
        return binding
    if p.backend == "auto" and spec.auto is not None:  # the method's own order (measured)
        cands = tuple(n for n in spec.auto if n in cands)
        if not cands:
            listed = ", ".join(spec.auto) or "none"
            binding.reason = f"auto: this method's engines ({listed}) are not installed"
            return binding
    for name in cands:
        try:
            eng = engine_for(method, spec, name, p.precision)
            diff = max_gray_diff(eng, spec)
        except Exception as e:
            failures.append(f"{name}: {_line(e)}")
            crashed = True
            continue
        limit = max(EXACT_GRAY, spec.tolerance)
        if p.precision == "fp32" and diff > limit:
            failures.append(f"{name}: {diff:.4f} gray levels off eager fp32 (limit {limit})")
            continue
        fuser.bind_step(GraphStep(eng, spec, fuser, fuser.eager_step, binding.fallback))
        binding.backend, binding.precision, binding.check_gray = name, p.precision, diff
        binding.reason = "auto" if p.backend == "auto" else "requested"
        if failures:
            binding.warned = True
            warnings.warn(f"{method}: {'; '.join(failures)}; using {name}", BackendWarning, stacklevel=2)
        return binding
    if p.backend == "auto" and not crashed:
        # auto takes only fp32-exact engines: torch is then the choice, not a failure to report
        binding.reason = f"auto: no engine within the fp32 tolerance ({'; '.join(failures)})"
        return binding
    binding.fallback(f"{method}: backend failed ({'; '.join(failures)})")
    return binding
