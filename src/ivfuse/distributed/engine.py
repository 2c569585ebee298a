"""The Ray engine: map a function over many items on a pool of actors, with Ray Data.

:meth:`RayEngine.map` is the one place that talks to Ray. It puts the items (pickled, one row
each) in a Ray Data dataset of ``ceil(n / batch_size)`` blocks (at most :data:`MAX_BLOCKS`) and
runs ``map_batches`` on an actor pool (:class:`ray.data.ActorPoolStrategy`): each actor runs
``setup()`` once (loads the method: the weights once per worker), then ``work(state, items)`` on
one batch per call; the items are file paths, so images are read, fused and written *inside* the
actor and only small results travel through the object store. Results stream back to the driver
as they finish, in no fixed order.
An actor works in the driver's current folder where its node has it (a shared file system mounted
at the same path), so relative paths mean the same there; on a cluster prefer absolute ones.

Faults: Ray Data restarts a dead actor and runs its unfinished block again on a live one
(``max_restarts=-1``, ``max_task_retries=-1``, its defaults for actor pools), and a block's results
reach the driver once, from the run that finished it. A worker killed half-way may so have
written some of a block's outputs before the block is run again: the writes are atomic
(temporary file + rename), so an output is whole or absent, and a second run of a pair writes the
same bytes again. An error a user can cause in ``setup`` (weights not installed, an unknown
option) comes back to the driver as that :class:`~ivfuse.errors.IvfuseError` (same exit code as
the local engine).

Ray is imported only here, inside the functions: ``import ivfuse`` and the CLI work without it.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import IvfuseError

T = TypeVar("T")
R = TypeVar("R")

#: most blocks of one :meth:`RayEngine.map` (the driver keeps a reference per block)
MAX_BLOCKS = 10_000

#: the one-line refusal when --engine ray is asked for and Ray is not installed
RAY_MISSING = 'the Ray engine needs Ray: pip install "ivfuse[distributed]" (or: pip install "ray[data]")'


class EngineError(IvfuseError):
    """The Ray engine cannot run: Ray is not installed, the cluster cannot be reached or lacks the
    resources asked for, or an engine option is out of range."""

    exit_code = 2


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or :class:`EngineError` with the install line."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError(RAY_MISSING) from None
    return ray


def connect(address: str | None = None) -> Any:
    """Connect this process to a Ray cluster once (a cluster already connected is kept).

    ``address``: ``None`` starts a one-machine cluster here (``ray.init()``), ``"auto"`` joins the
    cluster this node belongs to (``ray start``/``ray up``), ``"ray://HOST:10001"`` connects through
    Ray Client (KubeRay's head service). Ray's progress output is switched off: the CLI has its own.
    """
    ray = require_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR}
        try:
            if address in (None, "", "local"):
                ray.init(**kwargs)
            else:
                ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EngineError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}") from None
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ray


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@dataclass(frozen=True)
class RayEngine:
    """Where and how wide :meth:`map` runs.

    Args:
        address: the cluster (see :func:`connect`); ``None``: a one-machine cluster started here.
        workers: actors in the pool; ``None``: as many as the cluster's CPUs (or GPUs, with
            ``gpus_per_worker``) allow, at most one per batch.
        gpus_per_worker: GPUs each actor reserves (``num_gpus``; fractions share a GPU); Ray sets
            ``CUDA_VISIBLE_DEVICES`` so a deep method's ``device="auto"`` finds its GPU.
        cpus_per_worker: CPUs each actor reserves (``num_cpus``); its NumPy/OpenCV/torch thread
            pools are sized to it.
        batch_size: items per actor call (one Ray Data block each).
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise EngineError(f"--workers must be at least 1 with --engine ray, got {self.workers}")
        if self.gpus_per_worker < 0 or self.cpus_per_worker <= 0:
            raise EngineError("--gpus-per-worker must be 0 or more and --cpus-per-worker more than 0")
        if self.batch_size < 1:
            raise EngineError(f"--batch-size must be at least 1, got {self.batch_size}")

    @property
    def name(self) -> str:
        return "ray"

    def pool_size(self, ray: Any, batches: int) -> int:
        """Actors to start for ``batches`` blocks (:attr:`workers`, else what the cluster holds);
        :class:`EngineError` when the cluster has none of the GPUs asked for."""
        res = ray.cluster_resources()
        if self.gpus_per_worker > 0 and res.get("GPU", 0) < self.gpus_per_worker:
            have, want = res.get("GPU", 0), self.gpus_per_worker
            raise EngineError(f"--gpus-per-worker {want:g}: the Ray cluster has {have:g} GPUs")
        if self.workers is not None:
            n = self.workers
        elif self.gpus_per_worker > 0:
            n = int(res.get("GPU", 0) // self.gpus_per_worker)
        else:
            n = int(res.get("CPU", 1) // self.cpus_per_worker)
        return max(1, min(n, batches))

    def map(
        self,
        items: Sequence[T],
        work: Callable[[Any, list[T]], list[R]],
        setup: Callable[[], Any] | None = None,
    ) -> Iterator[R]:
        """``work(state, batch)`` for every batch of ``items`` on the actor pool, where ``state =
        setup()`` once per actor; yields the results as batches finish (in no fixed order).

        ``items``, ``work`` and ``setup`` are pickled (module-level functions, ``functools.partial``
        of them, dataclasses). An :class:`~ivfuse.errors.IvfuseError` of ``setup`` is raised here.
        """
        if not items:
            return
        ray = connect(self.address)  # with ray.data imported
        # one block (one task, what a dead worker's replacement runs again) per batch, at most
        # MAX_BLOCKS: 1.5 million pairs in batches of 8 are blocks of 150 pairs
        blocks = min(math.ceil(len(items) / self.batch_size), MAX_BLOCKS)
        size = self.pool_size(ray, blocks)
        rows = [{"item": pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL)} for x in items]
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        gpus = self.gpus_per_worker or None
        # the actor class carries setup and work itself (pickled by value with the class, not kept
        # in the object store as constructor arguments that a restart would need)
        blobs = (pickle.dumps(setup or _no_state), pickle.dumps(work), self.cpus_per_worker, os.getcwd())
        worker = type("IvfuseWorker", (_Worker,), {"blobs": blobs})
        out = ds.map_batches(
            worker,
            batch_size=self.batch_size,
            batch_format="numpy",
            zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=self.cpus_per_worker,
            num_gpus=gpus,
        )
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            for blob in batch["result"]:
                res = pickle.loads(blob)
                if isinstance(res, _SetupFailed):
                    raise res.error
                yield res


def _no_state() -> None:
    return None


@dataclass(frozen=True)
class _SetupFailed:
    error: IvfuseError


class _Worker:
    """The actor of :meth:`RayEngine.map`: ``setup()`` once, then ``work(state, items)`` per batch."""

    blobs: tuple[bytes, bytes, float, str]  # pickled setup and work, CPUs of the actor, driver's folder

    def __init__(self) -> None:
        setup, work, cpus, cwd = self.blobs
        if os.path.isdir(cwd):  # relative paths mean what they mean on the driver (shared file system)
            os.chdir(cwd)
        self.work = pickle.loads(work)
        self.failed: IvfuseError | None = None
        try:
            self.state = pickle.loads(setup)()
        except IvfuseError as exc:
            self.failed = exc
        limit_threads(max(1, int(cpus)))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        if self.failed is not None:
            results: list[Any] = [_SetupFailed(self.failed)]
        else:
            results = self.work(self.state, [pickle.loads(b) for b in batch["item"]])
        blobs = np.empty(len(results), dtype=object)
        blobs[:] = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in results]
        return {"result": blobs}


def limit_threads(n: int) -> None:
    """Size the thread pools of a worker process to its ``n`` CPUs: OpenCV, the metrics, and
    torch where a deep method imported it (OpenMP/BLAS pools follow ``OMP_NUM_THREADS``, which Ray
    sets from ``num_cpus``)."""
    import sys

    import cv2

    cv2.setNumThreads(n)
    from ..metrics import set_threads

    set_threads(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


def each(fn: Callable[[T], R]) -> Callable[[Any, list[T]], list[R]]:
    """``work`` for :meth:`RayEngine.map` that applies ``fn(item)`` to every item (no state)."""
    import functools

    return functools.partial(_each, fn)


def _each(fn: Callable[[T], R], state: Any, items: list[T]) -> list[R]:
    return [fn(x) for x in items]


def each_with(fn: Callable[[Any, T], R]) -> Callable[[Any, list[T]], list[R]]:
    """``work`` for :meth:`RayEngine.map` that applies ``fn(state, item)`` to every item."""
    import functools

    return functools.partial(_each_with, fn)


def _each_with(fn: Callable[[Any, T], R], state: Any, items: list[T]) -> list[R]:
    return [fn(state, x) for x in items]
