"""Inference engines that run an exported ONNX graph: ONNX Runtime and OpenVINO (CPU).

An engine is built once from the model (bytes or a file) and then called with NumPy arrays in
graph-input order; it returns the outputs in graph-output order as float32 arrays it no longer
references. Both accept any height and width of the dynamic graphs ivfuse exports, so a new
image size needs no rebuild on our side (OpenVINO compiles shape-specific kernels internally
and keeps them).
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
    """OpenVINO on the CPU: LATENCY hint, one stream, ``threads`` threads, f32 or bf16 inference."""

    name = "openvino"

    def __init__(self, model: Any, threads: int, precision: str = "fp32", cache: Path | None = None):
        import openvino as ov

        if precision not in ("fp32", "bf16"):
            raise BackendError(f"openvino: unknown precision {precision!r}")
        core = ov.Core()
        if isinstance(model, bytes):
            model = ov.convert_model(io.BytesIO(model))
        elif isinstance(model, (str, Path)):
            model = core.read_model(str(model))
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(int(threads)),
            "INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "bf16",
        }
        if cache is not None:  # OpenVINO's own cache of compiled kernels (keyed by model + config)
            config["CACHE_DIR"] = str(cache)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.inputs = [p.get_any_name() for p in self.compiled.inputs]

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
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
