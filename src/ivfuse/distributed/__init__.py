"""Fuse, evaluate and benchmark data sets of any size on a Ray cluster (``--engine ray``).

``pip install "ivfuse[distributed]"`` adds Ray Data. The same commands as on one machine::

    ivfuse fuse --pairs DIR -o OUT --engine ray [--address auto|ray://HOST:10001] [--workers N]
                [--gpus-per-worker 1] [--resume]
    ivfuse eval --pairs DIR --fused OUT --engine ray
    ivfuse bench --methods lp,gff --dataset DIR --out RESULTS --engine ray

Without ``--address`` a one-machine Ray cluster starts in the process (``ray.init()``), so a
command that runs on a laptop runs unchanged on a cluster. Paths must be ones every worker sees
(a shared file system mounted at the same path on every node), or URLs (``s3://``, ``gs://``,
``hdfs://``, ``file://``) that ``fuse`` and ``eval`` read and write through pyarrow's file systems,
with either engine (:mod:`.fs`).

Modules, one concern each:

* :mod:`.engine` - :class:`RayEngine`: map a function over items on a Ray Data actor pool (the only
  module that imports Ray, lazily), faults and retries, :class:`EngineError`;
* :mod:`.fs` - folders given as URLs: :class:`~.fs.Location`, listing and pair discovery through
  :mod:`pyarrow.fs`, the whole-or-nothing write of each file system (:func:`~.fs.put`);
* :mod:`.manifest` - the run manifest of an output folder (:class:`Manifest`, :class:`Fingerprint`;
  :class:`~.manifest.UrlManifest` on a URL);
* :mod:`.folders` - :func:`fuse_folder`: a folder of pairs with either engine, exactly once,
  ``resume``;
* :mod:`.bench` - :class:`RayBenchEngine`: ``ivfuse bench``'s units on the cluster.

``ivfuse eval --engine ray`` maps the local engine's per-image unit with :meth:`RayEngine.map`.
Results (fused bytes, metric values, summaries, exit codes) are the local engine's.
"""

from __future__ import annotations

from .engine import RAY_MISSING, EngineError, RayEngine, connect, each, each_with, require_ray
from .folders import FuseSpec, fuse_folder, remove_orphans
from .manifest import MANIFEST_NAME, Fingerprint, Manifest

__all__ = [
    "MANIFEST_NAME",
    "RAY_MISSING",
    "EngineError",
    "Fingerprint",
    "FuseSpec",
    "Manifest",
    "RayEngine",
    "connect",
    "each",
    "each_with",
    "fuse_folder",
    "make_engine",
    "remove_orphans",
    "require_ray",
]

#: the engines ``--engine`` takes
ENGINES = ("local", "ray")


def make_engine(
    engine: str,
    *,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float | None = None,
    batch_size: int | None = None,
) -> RayEngine | None:
    """The engine ``--engine`` names: ``None`` for ``local`` (Ray options refused with it), a
    :class:`RayEngine` for ``ray`` (:class:`EngineError`, exit 2, when Ray is not installed)."""
    name = engine.strip().lower()
    if name not in ENGINES:
        raise EngineError(f"--engine must be local or ray, got {engine!r}")
    if name == "local":
        given = [
            flag
            for flag, v in (
                ("--address", address), ("--gpus-per-worker", gpus_per_worker),
                ("--cpus-per-worker", cpus_per_worker),
            )
            if v is not None
        ]  # fmt: skip
        if given:
            raise EngineError(f"{', '.join(given)} go with --engine ray")
        return None
    require_ray()
    return RayEngine(
        address=address,
        workers=workers or None,
        gpus_per_worker=gpus_per_worker or 0.0,
        cpus_per_worker=cpus_per_worker or 1.0,
        batch_size=batch_size or 8,
    )
