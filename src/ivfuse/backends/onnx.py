"""Export a deep fuser's tensor step (:class:`ivfuse.methods._torch.GraphSpec`) to ONNX.

The step is traced by ``torch.export`` and written by PyTorch's ONNX exporter (``dynamo=True``,
needs the ``onnx`` and ``onnxscript`` packages of ``ivfuse[fast]``), with height and width as
dynamic axes (``multiple * k`` when the step works on multiples, JCAE's even sizes). The result
is an in-memory ``onnx.ModelProto`` whose ``metadata_props`` say what it is (:func:`describe`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any

import torch

from ..errors import IvfuseError
from ..methods._torch import GraphSpec

#: smallest/largest height and width the exported graphs accept
MIN_SIDE, MAX_SIDE = 2, 16384

#: example size (before rounding up to the spec's multiple) used to trace the step
EXAMPLE_HW = (64, 96)


class ExportError(IvfuseError):
    """The step could not be exported (missing exporter packages, an op without ONNX form)."""

    exit_code = 1


def example_inputs(
    spec: GraphSpec, hw: tuple[int, int] = EXAMPLE_HW, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Random (1, C, H, W) inputs in [0, 1] of a size the spec accepts."""
    m = spec.multiple
    h, w = (-(-s // m) * m for s in hw)
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(1, spec.channels, h, w, generator=g) for _ in spec.inputs)


def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of a module's tensors: the weights half of a cache key."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _quiet():
    """The exporter logs every step and warns about optional torchvision ops: keep it to errors."""
    import warnings

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def export(spec: GraphSpec, metadata: dict[str, Any] | None = None):
    """``spec.module`` as an ``onnx.ModelProto`` (fp32, dynamic height/width), metadata attached."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ExportError(
            f"ONNX export needs the onnx and onnxscript packages ({e.name} is missing): "
            "pip install 'ivfuse[fast]'"
        ) from e
    module = spec.module.eval()
    args = example_inputs(spec)
    dims = None
    if spec.dynamic:
        dim = torch.export.Dim
        if spec.multiple > 1:
            lo, hi = -(-MIN_SIDE // spec.multiple), MAX_SIDE // spec.multiple
            h, w = spec.multiple * dim("h_k", min=lo, max=hi), spec.multiple * dim("w_k", min=lo, max=hi)
        else:
            h, w = dim("height", min=MIN_SIDE, max=MAX_SIDE), dim("width", min=MIN_SIDE, max=MAX_SIDE)
        dims = tuple({2: h, 3: w} for _ in spec.inputs)
    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                input_names=list(spec.inputs),
                output_names=list(spec.outputs),
                dynamic_shapes=dims,
                optimize=True,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many types; one line for the user
        first = _summary(e)
        raise ExportError(f"ONNX export of the {spec.name!r} graph failed: {first}") from e
    proto = program.model_proto
    # the exporter annotates intermediate tensors with sizes derived from its symbolic shapes, and
    # for networks that halve and double sizes they can be wrong away from the example's size
    # (DeFusion: an upsampled H/2 map labelled "height", i.e. H assumed a multiple of 8). ONNX
    # Runtime plans buffer reuse from these labels and failed at odd sizes; without them each
    # engine infers the shapes itself. Inputs and outputs keep their (correct) dynamic dims.
    del proto.graph.value_info[:]
    meta = {"graph": spec.name, "opset": str(opset(proto)), "multiple": str(spec.multiple)}
    meta.update({"options": spec.key, "outside_graph": spec.note})
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    set_metadata(proto, meta)
    return proto


def _summary(e: BaseException) -> str:
    """The line that says what went wrong in an exporter error (its "Exception summary")."""
    for err in (e.__cause__, e):
        lines = [ln.strip() for ln in str(err or "").splitlines() if ln.strip()]
        for ln in lines:
            if ln.startswith("<class"):
                return ln
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def opset(proto) -> int:
    """The default-domain opset of a model."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def set_metadata(proto, meta: dict[str, str]) -> None:
    """Put ``meta`` into the model's ``metadata_props`` (replacing keys already there)."""
    old = {p.key: p.value for p in proto.metadata_props}
    old.update({k: str(v) for k, v in meta.items()})
    del proto.metadata_props[:]
    for k, v in old.items():
        proto.metadata_props.add(key=k, value=v)


def describe(proto) -> dict[str, str]:
    """The ``metadata_props`` of a model as a dict."""
    return {p.key: p.value for p in proto.metadata_props}
