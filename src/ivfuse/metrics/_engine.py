"""Computing several metrics of one image: channel-by-channel scheduling, memory release, threads.

:func:`ivfuse.metrics.evaluate` hands its metrics here. A metric averaged over colour channels
(:class:`~ivfuse.metrics.registry.PerChannel`) is split into one part per channel, and the
parts run channel after channel: once every metric is done with a channel, the planes only that
channel uses drop their cached intermediates (Gaussian moments, gradients, FFTs, contrast maps),
which keeps the memory of a colour image near that of one channel. With more than one thread
(the default on a multi-core machine, see :func:`set_threads`) the parts run on a small thread
pool: numpy, OpenCV and scipy.fft release the GIL in their loops, and the caches compute every
shared value once (:func:`._core.memo_get`), so the results are bit-identical to a sequential run.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from ._core import POOL_THREAD, Prepared, channel_mean

__all__ = ["get_threads", "run_jobs", "set_threads"]

_MAX_DEFAULT_THREADS = 4
_threads: int | None = None  # None: the default of get_threads()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def get_threads() -> int:
    """Threads :func:`ivfuse.metrics.evaluate` uses for one image.

    The value of :func:`set_threads`, else the environment variable ``IVFUSE_METRICS_THREADS``,
    else 1 inside a worker process of a process pool (``ivfuse eval --workers N`` already keeps
    the cores busy) and otherwise the number of usable CPUs, at most 4.
    """
    if _threads is not None:
        return _threads
    env = os.environ.get("IVFUSE_METRICS_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"IVFUSE_METRICS_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"IVFUSE_METRICS_THREADS must be a positive integer, got {env!r}")
        return n
    if multiprocessing.parent_process() is not None:
        return 1
    return max(1, min(_cpu_count(), _MAX_DEFAULT_THREADS))


def set_threads(n: int | None) -> int | None:
    """Set the threads per :func:`ivfuse.metrics.evaluate` call (1: sequential; ``None``: the
    default of :func:`get_threads`). Returns the previous setting. Values do not depend on it."""
    global _threads
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"threads must be a positive integer or None, got {n!r}")
    old = _threads
    _threads = n
    return old


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != n:
            # an old pool is not shut down (a concurrent call may still be submitting to it);
            # its idle threads end when it is garbage-collected
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="ivfuse-metrics", initializer=_mark)
            _pool_size = n
        return _pool


def _mark() -> None:
    POOL_THREAD.active = True  # FFTs inside the pool run single-threaded


def _forget_pool_in_child() -> None:
    """A forked child has none of the parent's threads: start a new pool when needed."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


Compute = Callable[[Prepared], float]


def _exclusive_planes(prep: Prepared, k: int) -> list:
    """The planes of channel k that no other channel of ``prep`` uses (a gray infrared image
    is one plane shared by the three colour channels)."""
    t = prep.triples[k]
    others = {
        id(p) for j, u in enumerate(prep.triples) if j != k for p in (u.fused, u.vi, u.ir) if p is not None
    }
    return [p for p in (t.fused, t.vi, t.ir) if p is not None and id(p) not in others]


def _release_all(prep: Prepared) -> None:
    planes = {id(p): p for t in prep.triples for p in (t.fused, t.vi, t.ir) if p is not None}
    planes.update((id(p), p) for p in prep.fused_channels)
    planes.update((id(p), p) for p in prep.reference or [])
    for t in prep.triples:
        t.release()
    for p in planes.values():
        p.release()


def run_jobs(jobs: list[tuple[Compute, Prepared]], costs: list[float] | None = None) -> list[float]:
    """Values of ``compute(prep)`` for each job, in order, sharing the caches of each ``prep``.

    ``costs`` (relative run times) only decide the order in which parts start. Raises the
    exception of the first failing job (in job order) after all parts have run. Every plane of
    the inputs is released at the end (their arrays go back to the pool).
    """
    from .registry import PerChannel  # the registry imports the metric modules

    cost = costs if costs is not None else [1.0] * len(jobs)

    def by_cost(idx: list[int]) -> list[int]:
        return sorted(idx, key=lambda i: -cost[i])  # stable: ties keep the request order

    # parts: whole-image jobs first (they may read every channel), then channel by channel,
    # the longest first within each group
    parts: list[tuple[int, Prepared, int | None]] = []
    preps: list[Prepared] = []
    for _, prep in jobs:
        if not any(prep is p for p in preps):
            preps.append(prep)
    whole = [i for i, (c, _) in enumerate(jobs) if not isinstance(c, PerChannel)]
    parts.extend((i, jobs[i][1], None) for i in by_cost(whole))
    for prep in preps:
        mine = [i for i, (c, p) in enumerate(jobs) if p is prep and isinstance(c, PerChannel)]
        for k in range(len(prep.triples)):
            parts.extend((i, prep, k) for i in by_cost(mine))

    # a channel's exclusive planes are released when its parts and the whole-image jobs on the
    # same input are done (only worth it, and only safe to skip, with more than one channel)
    pending: dict[tuple[int, int], int] = {}
    for _, prep, k in parts:
        if len(prep.triples) < 2:
            continue
        keys = [(id(prep), k)] if k is not None else [(id(prep), j) for j in range(len(prep.triples))]
        for key in keys:
            pending[key] = pending.get(key, 0) + 1
    by_id = {id(p): p for p in preps}
    lock = threading.Lock()

    def done(prep: Prepared, k: int | None) -> None:
        if len(prep.triples) < 2:
            return
        keys = [(id(prep), k)] if k is not None else [(id(prep), j) for j in range(len(prep.triples))]
        for key in keys:
            with lock:
                pending[key] -= 1
                last = pending[key] == 0
            if last:
                p = by_id[key[0]]
                p.triples[key[1]].release()
                for plane in _exclusive_planes(p, key[1]):
                    plane.release()

    def run_part(i: int, prep: Prepared, k: int | None) -> float:
        compute = jobs[i][0]
        try:
            return compute(prep) if k is None else compute.one(prep, k)  # type: ignore[attr-defined]
        finally:
            done(prep, k)

    results: list[float | BaseException] = []
    n_threads = get_threads()
    futures: list[Future[float]] = []
    try:
        if n_threads <= 1 or len(parts) <= 1:
            for part in parts:
                try:
                    results.append(run_part(*part))
                except Exception as exc:  # re-raised below, in job order
                    results.append(exc)
        else:
            pool = _get_pool(n_threads)
            futures = [pool.submit(run_part, *part) for part in parts]
            for fut in futures:
                exc = fut.exception()
                results.append(exc if exc is not None else fut.result())
    finally:
        # interrupted (e.g. KeyboardInterrupt): no part may still use a plane once its arrays
        # are back in the pool
        for fut in futures:
            fut.cancel()
        wait(futures)
        for prep in preps:
            _release_all(prep)

    per_job: list[list[float | BaseException]] = [[] for _ in jobs]
    for (i, _, _), r in zip(parts, results, strict=True):
        per_job[i].append(r)
    out: list[float] = []
    for (compute, _), vals in zip(jobs, per_job, strict=True):
        for v in vals:
            if isinstance(v, BaseException):
                raise v
        nums = [float(v) for v in vals]  # type: ignore[arg-type]
        out.append(channel_mean(nums) if isinstance(compute, PerChannel) else nums[0])
    return out
