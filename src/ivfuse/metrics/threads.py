"""Threads of the metrics: how many :func:`ivfuse.metrics.evaluate` uses, and its thread pool.

numpy, OpenCV and scipy.fft release the GIL in their loops, so the parts of one evaluation run
in parallel on a small thread pool (:mod:`.scheduler`); values never depend on the thread count.
The state (the setting of :func:`set_threads`, the pool) is private to this module; use the
functions.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["executor", "fft_workers", "get_threads", "in_pool_thread", "set_threads"]

_MAX_DEFAULT_THREADS = 4


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _ThreadSettings:
    """The thread count setting and the shared pool of the metrics."""

    def __init__(self) -> None:
        self.threads: int | None = None  # None: the default of get_threads()
        self.reset_pool()

    def reset_pool(self) -> None:
        """Forget the pool (a forked child has none of the parent's threads)."""
        self.pool: ThreadPoolExecutor | None = None
        self.pool_size = 0
        self.lock = threading.Lock()

    def executor(self, n: int) -> ThreadPoolExecutor:
        with self.lock:
            if self.pool is None or self.pool_size != n:
                # an old pool is not shut down (a concurrent call may still be submitting to
                # it); its idle threads end when it is garbage-collected
                self.pool = ThreadPoolExecutor(
                    max_workers=n, thread_name_prefix="ivfuse-metrics", initializer=_mark
                )
                self.pool_size = n
            return self.pool


_SETTINGS = _ThreadSettings()
_POOL_THREAD = threading.local()  # .active is true in the threads of the pool


def _mark() -> None:
    _POOL_THREAD.active = True  # FFTs inside the pool run single-threaded


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_SETTINGS.reset_pool)


def get_threads() -> int:
    """Threads :func:`ivfuse.metrics.evaluate` uses for one image.

    The value of :func:`set_threads`, else the environment variable ``IVFUSE_METRICS_THREADS``,
    else 1 inside a worker process of a process pool (``ivfuse eval --workers N`` already keeps
    the cores busy) and otherwise the number of usable CPUs, at most 4.
    """
    if _SETTINGS.threads is not None:
        return _SETTINGS.threads
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
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"threads must be a positive integer or None, got {n!r}")
    old = _SETTINGS.threads
    _SETTINGS.threads = n
    return old


def executor(n: int) -> ThreadPoolExecutor:
    """The shared pool of ``n`` metric threads (a new one when ``n`` changes)."""
    return _SETTINGS.executor(n)


def in_pool_thread() -> bool:
    """Whether the calling thread is one of the metric pool's."""
    return getattr(_POOL_THREAD, "active", False)


def fft_workers() -> int:
    """scipy.fft ``workers``: 1 inside the metric thread pool (already parallel), else the
    metric thread count (:func:`get_threads`)."""
    return 1 if in_pool_thread() else get_threads()
