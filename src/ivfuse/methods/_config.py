"""What every method's ``Config`` dataclass shares: its JSON round trip.

A deep method's configuration travels in checkpoints, in the metadata of its weights file and in
its card, all JSON. :class:`MethodConfig` gives a ``@dataclass`` both directions: ``to_dict``
(tuples become lists, so the dict equals what JSON gives back) and ``from_dict`` (keys the class
does not know, e.g. from a newer or older ivfuse, are dropped; ``__post_init__`` still checks and
normalises the values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = ["Ablation", "MethodConfig"]

C = TypeVar("C", bound="MethodConfig")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


class MethodConfig:
    """Mixin for a method's ``@dataclass Config``: ``to_dict`` / ``from_dict`` for JSON."""

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Ablation:
    """One ablation or parameter row of a paper's table: the variant of the method it measures, as
    overrides of the method's ``Config`` (``ivfuse train METHOD --ablation NAME``).

    Fields:
        name: short name, used as ``--ablation NAME`` and as the run folder (``mu-9``).
        row: the row as the paper's table prints it (``"µ = 9"``).
        table: where the paper prints it (``"Table 3"``).
        overrides: ``Config`` fields and their values for this variant; everything else is the
            method's default training (same data and scale), so the rows compare like with like.
    """

    name: str
    row: str
    table: str
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(f"ablation names are [A-Za-z0-9._-]+, got {self.name!r}")
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))
