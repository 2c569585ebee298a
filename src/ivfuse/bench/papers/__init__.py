"""The seed papers' printed results tables, as data: one JSON file per paper (``<paper>.json``).

Each file holds the paper's tables with their number, caption, the bench data set we use for them,
the metric profile, per column the ivfuse metric and the factor (``scale``) that puts ivfuse's value
on the paper's scale, and per row the printed values and the ivfuse method (null for methods ivfuse
does not implement). ``ivfuse bench --paper NAME`` reads them through :func:`load_paper`, which finds
the file through the method registry: a method registered with ``paper_tables="<file>.json"`` has
its paper's tables here, and ``PAPERS`` lists those methods.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from ...errors import InputError


def papers() -> tuple[str, ...]:
    """Names of the methods whose paper's tables are here (from the registry), by name."""
    from ...methods import registry

    return tuple(m.name for m in sorted(registry.with_paper_tables(), key=lambda m: m.name))


def __getattr__(name: str) -> Any:
    if name == "PAPERS":  # computed on use: the registry imports the method modules (torch)
        return papers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_paper(name: str) -> dict[str, Any]:
    """The transcribed tables of paper ``name`` (case, '-' and '_' ignored: ``SSL-WAEIE`` works)."""
    from ...methods import registry

    key = name.strip().lower().replace("-", "").replace("_", "")
    known = papers()
    if key not in known:
        raise InputError(f"unknown paper {name!r}; choose one of: {', '.join(known)}")
    text = resources.files(__package__).joinpath(registry.info(key).paper_tables).read_text(encoding="utf-8")
    return json.loads(text)


__all__ = ["PAPERS", "load_paper"]
