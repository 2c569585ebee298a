"""The seed papers' printed results tables, as data: one JSON file per paper (``<paper>.json``).

Each file holds the paper's tables with their number, caption, the bench data set we use for them,
the metric profile, per column the ivfuse metric and the factor (``scale``) that puts ivfuse's value
on the paper's scale, and per row the printed values and the ivfuse method (null for methods ivfuse
does not implement). ``ivfuse bench --paper NAME`` reads them through :func:`load_paper`.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from ...errors import InputError

PAPERS = ("didfuse", "sslwaeie", "ifesnet", "jcae", "defusion")


def load_paper(name: str) -> dict[str, Any]:
    """The transcribed tables of paper ``name`` (case, '-' and '_' ignored: ``SSL-WAEIE`` works)."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in PAPERS:
        raise InputError(f"unknown paper {name!r}; choose one of: {', '.join(PAPERS)}")
    text = resources.files(__package__).joinpath(f"{key}.json").read_text(encoding="utf-8")
    return json.loads(text)


__all__ = ["PAPERS", "load_paper"]
