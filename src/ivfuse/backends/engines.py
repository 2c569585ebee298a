"""Inference engines that run an exported ONNX graph: ONNX Runtime and OpenVINO (CPU).

An engine is built once from the model (bytes or a file) and then called with NumPy arrays in
graph-input order; it returns the outputs in graph-output order as float32 arrays it no longer
references. Both accept any height and width of the dynamic graphs ivfuse exports. ONNX Runtime
runs the dynamic graph; OpenVINO compiles a static copy per input size (see
:class:`OpenVINOEngine`), so a new size costs one compilation there and equal sizes none.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError

#: backends that run exported graphs, in the order ``auto`` tries them (fastest first, as
#: measured by benchmarks/bench_deep.py; see README "Fast inference")
ENGINES: tuple[str, ...] = ("openvino", "onnxruntime")

_MODULES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}


def installed(name: str) -> bool:
    """True when the backend's package can be imported (checked without importing it)."""
    return importlib.util.find_spec(_MODULES[name]) is not None


def cpu_bf16(name: str) -> bool:
    """True when the backend runs bfloat16 natively on this CPU (OpenVINO: AVX512-BF16 / AMX)."""
    if name != "openvino" or not installed(name):
        return False
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in caps


class OnnxRuntimeEngine:
    """ONNX Runtime, CPU execution provider, all graph optimisations, ``threads`` intra-op threads."""

    name = "onnxruntime"

    def __init__(self, model: bytes | str | Path, threads: int, precision: str = "fp32"):
        if precision != "fp32":
            raise BackendError("onnxruntime runs these graphs in fp32 only; use --backend openvino for bf16")
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # the dynamic-shape buffer-reuse notices are not errors
        src = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.inputs, arrays, strict=True)))


class OpenVINOEngine:
    """OpenVINO on the CPU: LATENCY hint, one stream, ``threads`` threads, f32 or bf16 inference.

    ``static`` (default): the graph is compiled for each input shape it meets (a copy reshaped to
    that shape), and the last ``keep`` compiled shapes are kept. With static shapes OpenVINO fuses
    chains of element-wise operations into generated kernels ("Subgraph" nodes), which it does not
    do for the dynamic graph: DeFusion's 480x640 pair took 0.69 s instead of 0.80 s in OpenVINO's
    own timing (benchmarks/profile_openvino.py). The price is one compilation per new size
    (about a second; OpenVINO's ``CACHE_DIR`` keeps it between processes); a folder of
    equal-sized images compiles once. ``static=False`` compiles the dynamic graph once.
    """

    name = "openvino"

    def __init__(
        self,
        model: Any,
        threads: int,
        precision: str = "fp32",
        cache: Path | None = None,
        *,
        static: bool = True,
        keep: int = 4,
        perf_count: bool = False,
    ):
        import openvino as ov

        if precision not in ("fp32", "bf16"):
            raise BackendError(f"openvino: unknown precision {precision!r}")
        self.core = ov.Core()
        if isinstance(model, bytes):
            model = ov.convert_model(io.BytesIO(model))
        elif isinstance(model, (str, Path)):
            model = self.core.read_model(str(model))
        self.model = model
        self.config = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(int(threads)),
            "INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "bf16",
        }
        if perf_count:
            self.config["PERF_COUNT"] = "YES"
        if cache is not None:  # OpenVINO's own cache of compiled kernels (keyed by model + config)
            self.config["CACHE_DIR"] = str(cache)
        self.static, self.keep = static, max(1, int(keep))
        self.inputs = [p.get_any_name() for p in model.inputs]
        self._compiled: dict[tuple, tuple[Any, Any]] = {}  # shapes -> (compiled model, request)
        self.compilations = 0
        self.request = None  # the last call's infer request (its perf counters, when enabled)
        if not static:
            self._compile(None)

    def _compile(self, shapes: tuple | None):
        model = self.model
        if shapes is not None:
            model = model.clone()
            model.reshape({n: list(s) for n, s in zip(self.inputs, shapes, strict=True)})
        compiled = self.core.compile_model(model, "CPU", self.config)
        self.compilations += 1
        hit = (compiled, compiled.create_infer_request())
        self._compiled[shapes] = hit
        while len(self._compiled) > self.keep:  # oldest first (dicts keep insertion order)
            self._compiled.pop(next(iter(self._compiled)))
        return hit

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        key = tuple(tuple(a.shape) for a in arrays) if self.static else None
        hit = self._compiled.get(key)
        if hit is None:
            hit = self._compile(key)
        elif self.static:  # most recently used last
            self._compiled[key] = self._compiled.pop(key)
        self.request = hit[1]
        res = self.request.infer(dict(zip(self.inputs, arrays, strict=True)))
        return [np.array(v, dtype=np.float32, copy=True) for v in res.values()]


def build(name: str, model: Any, threads: int, precision: str = "fp32", cache: Path | None = None):
    """An engine of backend ``name`` for ``model`` (ONNX bytes, a model file, an ``ov.Model``);
    ``cache``: a folder where OpenVINO keeps compiled models between processes."""
    if name == "onnxruntime":
        return OnnxRuntimeEngine(model, threads, precision)
    if name == "openvino":
        return OpenVINOEngine(model, threads, precision, cache)
    raise BackendError(f"no engine {name!r}")
