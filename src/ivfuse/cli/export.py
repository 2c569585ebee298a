"""``ivfuse export``: a deep method's fusion step as an ONNX or OpenVINO file (see ivfuse.backends)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..api import parse_params
from ..errors import InputError
from ..methods.registry import module_methods

out = Console()


def export_command(
    method: Annotated[str, typer.Argument(help=f"Deep method: {', '.join(module_methods())}.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output file (.onnx, or .xml for openvino).")
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx or openvino.")] = "onnx",
    weights: Annotated[
        Path | None, typer.Option("--weights", help="safetensors weights (default: the shipped ones).")
    ] = None,
    check_ir: Annotated[
        Path | None, typer.Option("--check-ir", help="Infrared image of a real pair to check the file on.")
    ] = None,
    check_vi: Annotated[Path | None, typer.Option("--check-vi", help="Visible image of that pair.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Method option KEY=VALUE (e.g. rule=l1).")
    ] = None,
) -> None:
    """Export METHOD's fusion step (fp32, dynamic height/width) and check it against eager torch."""
    from ..backends.export import export_method

    if (check_ir is None) != (check_vi is None):
        raise InputError("--check-ir and --check-vi go together")
    pair = (check_ir, check_vi) if check_ir is not None else None
    rep = export_method(
        method, output, fmt=fmt, weights=weights, check_pair=pair, options=parse_params(param)
    )
    m = rep.metadata
    out.print(
        f"exported {m['method']} ({m['graph']} graph, opset {m['opset']}) -> {rep.path}", highlight=False
    )
    for name, diff in rep.checks.items():
        out.print(f"  check {name} pair: max |exported - eager| = {diff:.5f} gray levels", highlight=False)
    if m.get("outside_graph"):
        out.print(f"  outside the graph: {m['outside_graph']}", highlight=False)
