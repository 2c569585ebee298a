"""Computing several metrics of one image: channel-by-channel scheduling, memory release, threads.

:func:`ivfuse.metrics.evaluate` hands its metrics here. A metric averaged over colour channels
(:class:`~ivfuse.metrics.definition.PerChannel`) is split into one part per channel, and the
parts run channel after channel: once every metric is done with a channel, the planes only that
channel uses drop their cached intermediates (Gaussian moments, gradients, FFTs, contrast maps),
which keeps the memory of a colour image near that of one channel. With more than one thread
(the default on a multi-core machine, see :func:`ivfuse.metrics.set_threads`) the parts run on a
small thread pool: numpy, OpenCV and scipy.fft release the GIL in their loops, and the caches
compute every shared value once (:func:`ivfuse.metrics.planes.memo_get`), so the results are
bit-identical to a sequential run.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, wait

from .definition import Compute, PerChannel
from .planes import Prepared, channel_mean
from .threads import executor, get_threads

__all__ = ["run_jobs"]


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
            pool = executor(n_threads)
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
