"""Convert an official PyTorch checkpoint of DenseFuse or IFCNN to an ivfuse safetensors file.

Usage::

    python scripts/convert_official.py densefuse densefuse_gray_1e2.model densefuse.safetensors
    python scripts/convert_official.py ifcnn IFCNN-MAX.pth ifcnn-max.safetensors

then ``ivfuse fuse -m densefuse --weights densefuse.safetensors ...``. The input is read with
``torch.load(weights_only=True)`` (no arbitrary pickle code runs: only tensors and plain
containers are accepted), its keys are mapped onto ivfuse's layer names by the method's
``convert_official`` (a key the map does not know is refused), the network is built and loaded
strictly, and the tensors are written as safetensors with ``{"method": ..., "source": ...}``
metadata. Official code: hli1221/densefuse-pytorch (``DenseFuse_net``, 1-channel models) and
uzeful/IFCNN (``IFCNN`` with ResNet101's conv1).
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import torch

METHODS = ("densefuse", "ifcnn")


def read_official(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint (a state dict, or a dict holding one under
    ``state_dict``/``model``), loaded without unpickling code."""
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return dict(obj)


def convert(method: str, src: str | Path, dst: str | Path) -> dict[str, torch.Tensor]:
    """Convert ``src`` (official checkpoint of ``method``) to ``dst`` (safetensors); returns the
    tensors written. Raises KeyError for a foreign checkpoint, RuntimeError for a shape mismatch."""
    from ivfuse.train.checkpoint import export_safetensors

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    mod = importlib.import_module(f"ivfuse.methods.{method}")
    state = mod.convert_official(read_official(src))
    net = {"densefuse": "DenseFuseNet", "ifcnn": "IFCNNNet"}[method]
    getattr(mod, net)().load_state_dict(state, strict=True)  # the shapes fit the network
    export_safetensors(
        Path(dst), state, {"method": method, "source": f"official checkpoint {Path(src).name}"}
    )
    return state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method", choices=METHODS)
    ap.add_argument("src", type=Path, help="official .pth / .model file")
    ap.add_argument("dst", type=Path, help="output .safetensors file")
    a = ap.parse_args(argv)
    state = convert(a.method, a.src, a.dst)
    print(json.dumps({"written": str(a.dst), "tensors": len(state)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
