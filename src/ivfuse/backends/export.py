"""``ivfuse export``: a deep method's fusion step as an ONNX or OpenVINO file, checked and labelled.

The file holds the step of :meth:`graph` (see :class:`ivfuse.methods._torch.GraphSpec`), fp32,
dynamic height and width, and its metadata: method, graph, the SHA-256 of the weights file and of
its model card, the opset, the options baked into the graph, what stays outside the graph, and
the checks: the largest difference in gray levels between the method fused eagerly and fused
through the written file, on a random pair and on a real (or the synthetic demo) pair.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, InputError
from ..io import atomic_write_bytes
from ..methods import registry
from ..methods._torch import sha256_file
from . import GraphStep, engines

FORMATS: tuple[str, ...] = ("onnx", "openvino")


@dataclass
class ExportReport:
    """What :func:`export_method` wrote and how close the file is to eager torch."""

    path: Path
    format: str
    metadata: dict[str, str]
    checks: dict[str, float] = field(default_factory=dict)  # pair name -> max |diff| in gray levels


def _weights_file(method: str, weights: str | os.PathLike | None) -> Path:
    if weights is not None:
        return Path(weights)
    from ..methods._torch import shipped

    mi = registry.info(method)
    if mi.weights is None:
        raise BackendError(f"method {method!r} has no network to export")
    return shipped(mi.weights, method, method)


def _pairs(pair: tuple[Any, Any] | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = {"random": (rng.random((67, 91), dtype=np.float32), rng.random((67, 91), dtype=np.float32))}
    if pair is not None:
        from .. import io

        ir, vi = (io.read_image(p) if not isinstance(p, np.ndarray) else p for p in pair)
        ir = io.to_unit(io.to_gray(ir))
        vi = io.to_unit(vi)
        vi = io.rgb_to_ycbcr(vi)[..., 0] if vi.ndim == 3 else vi
        out["real"] = (ir.astype(np.float32), np.clip(vi, 0, 1).astype(np.float32))
    else:
        from ..data.synthetic import night_scene

        s = night_scene(240, 320, seed=0)
        vi = s.vi.mean(axis=2) if s.vi.ndim == 3 else s.vi
        out["synthetic"] = (np.asarray(s.ir, np.float32), np.asarray(vi, np.float32))
    return out


def export_method(
    method: str,
    out: str | os.PathLike,
    *,
    fmt: str = "onnx",
    weights: str | os.PathLike | None = None,
    check_pair: tuple[Any, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> ExportReport:
    """Export ``method``'s fusion step to ``out`` (``.onnx``, or OpenVINO ``.xml`` + ``.bin``)."""
    from .._version import __version__
    from . import onnx as onnx_export
    from .onnx import state_digest

    if fmt not in FORMATS:
        raise BackendError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    mi = registry.info(method)
    if mi.family == "classical":
        raise BackendError(f"method {mi.name!r} has no exportable graph (it runs in NumPy)")
    wfile = _weights_file(mi.name, weights)
    opts = {**(options or {}), "weights": wfile}
    fuser = registry.create(mi.name, **opts)
    spec = fuser.graph()
    card = wfile.with_suffix(".json")
    meta = {
        "method": mi.name,
        "weights_file": wfile.name,
        "weights_sha256": sha256_file(wfile),
        "card_sha256": sha256_file(card) if card.is_file() else "none",
        "weights_digest": state_digest(spec.module),
        "ivfuse_version": __version__,
        "inputs": ",".join(spec.inputs),
        "outputs": ",".join(spec.outputs),
        "channels": str(spec.channels),
    }
    proto = onnx_export.export(spec, meta)
    meta = onnx_export.describe(proto)
    runtime = "openvino" if fmt == "openvino" else "onnxruntime"
    if not engines.installed(runtime):
        runtime = next((n for n in engines.ENGINES if engines.installed(n)), None)
        if runtime is None or fmt == "openvino":
            raise BackendError(
                f"checking the exported graph needs {runtime or 'onnxruntime'}: pip install 'ivfuse[fast]'"
            )
    import torch

    threads = torch.get_num_threads()
    model: Any = proto.SerializeToString()
    if fmt == "openvino":
        import openvino as ov

        model = ov.convert_model(__import__("io").BytesIO(model))
    engine = engines.build(runtime, model, threads)
    bound = registry.create(mi.name, **opts)
    bound.bind_step(GraphStep(engine, spec, bound, bound.eager_step, _raise))
    checks = {}
    for name, (ir, vi) in _pairs(check_pair).items():
        if ir.shape != vi.shape:
            raise InputError(f"check pair: sizes differ, {ir.shape} vs {vi.shape}")
        ref, got = fuser.fuse(ir, vi), bound.fuse(ir, vi)
        checks[name] = float(np.abs(np.asarray(ref) - np.asarray(got)).max()) * 255
    meta.update({f"check_{k}_max_gray": f"{v:.6f}" for k, v in checks.items()})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        onnx_export.set_metadata(proto, meta)
        atomic_write_bytes(out, proto.SerializeToString())
    else:
        import openvino as ov

        out = out if out.suffix == ".xml" else out.with_suffix(".xml")
        for k, v in meta.items():
            model.set_rt_info(v, ["ivfuse", k])
        ov.save_model(model, str(out), compress_to_fp16=False)
    return ExportReport(out, fmt, meta, checks)


def _raise(message: str) -> None:
    raise BackendError(message)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ivfuse metadata of an exported ``.onnx`` or OpenVINO ``.xml`` file."""
    path = Path(path)
    if path.suffix == ".xml":
        import openvino as ov

        model = ov.Core().read_model(str(path))
        if not model.has_rt_info(["ivfuse"]):
            return {}
        keys = list(model.get_rt_info()["ivfuse"].keys())
        return {k: model.get_rt_info(["ivfuse", k]).astype(str) for k in keys}
    import onnx

    from .onnx import describe

    return describe(onnx.load(str(path), load_external_data=False))
