"""The data root: the folder of the named data sets, ``$IVFUSE_DATA`` (``--data-root`` on the
command line), and how a path under it is written in a weights card."""

from __future__ import annotations

import os
from pathlib import Path

#: the environment variable naming the data root when ``--data-root`` is not given
DATA_ENV = "IVFUSE_DATA"


def default_data_root() -> Path | None:
    """``$IVFUSE_DATA`` when set, else ``None`` (no guess from the current or the install folder)."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else None


def portable_path(path: str | os.PathLike) -> str:
    """``path`` as a card records it: ``$IVFUSE_DATA/<rest>`` when it lies under the data root
    (so the card reads the same on every machine and says which named set was used), else as given.

    With ``IVFUSE_DATA=/data``: ``/data/flir_train`` → ``$IVFUSE_DATA/flir_train``;
    ``runs/tno24`` → ``runs/tno24``.
    """
    root = default_data_root()
    if root is None:
        return str(path)
    try:
        rest = Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return str(path)
    return f"${DATA_ENV}/{rest.as_posix()}" if rest.parts else f"${DATA_ENV}"
