"""What every method's ``Config`` dataclass shares: its JSON round trip.

A deep method's configuration travels in checkpoints, in the metadata of its weights file and in
its card, all JSON. :class:`MethodConfig` gives a ``@dataclass`` both directions: ``to_dict``
(tuples become lists, so the dict equals what JSON gives back) and ``from_dict`` (keys the class
does not know, e.g. from a newer or older ivfuse, are dropped; ``__post_init__`` still checks and
normalises the values).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

__all__ = ["MethodConfig"]

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
