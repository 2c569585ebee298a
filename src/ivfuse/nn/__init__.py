"""Network building blocks shared by the deep methods (fusion rules, losses, ResNeSt blocks)."""

from __future__ import annotations

from typing import Any


def parameter_count(*modules: Any) -> int:
    """Number of parameters of ``modules`` (``torch.nn.Module`` objects), each counted once even when
    several modules share it; BatchNorm running statistics are buffers, not parameters. 0 for none."""
    seen: dict[int, int] = {}
    for m in modules:
        for p in m.parameters():
            seen[id(p)] = p.numel()
    return int(sum(seen.values()))


__all__ = ["parameter_count"]
