"""The installed version of ivfuse, read once from the package metadata (``importlib.metadata``).

A bottom module: every part of the package that records its version (reports, exported graphs,
backend caches) imports it from here, never from the package root.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ivfuse")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
