"""``ivfuse bench --engine ray``: the benchmark runner's units on a Ray actor pool.

:func:`ivfuse.bench.runner.run` plans what is missing (fused images, metric values) and assembles
the results; :class:`RayBenchEngine` runs its units, :func:`~ivfuse.bench.runner.fuse_job` (one
actor pool per method, the method built once per actor) and
:func:`~ivfuse.bench.runner.evaluate_job`, on the cluster. The units are the local engine's, so the
cached images and metric values are the same bytes and numbers; the runner writes the caches and
reports from the driver, as it does locally.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .engine import RayEngine, each, each_with
from .folders import remove_orphans


@dataclasses.dataclass(frozen=True)
class RayBenchEngine:
    """A :class:`ivfuse.bench.runner.BenchEngine` on a :class:`RayEngine`."""

    ray: RayEngine

    def fuse(self, method: Any, task: str, device: str, jobs: list[Any]) -> Iterator[Any]:
        from ..bench.runner import fuse_job

        if not jobs:
            return
        setup = functools.partial(_bench_pipeline, method.name, task, device, tuple(method.options))
        try:
            yield from self.ray.map(jobs, each_with(fuse_job), setup=setup)
        finally:
            for folder in {Path(j.target).parent for j in jobs}:
                remove_orphans(folder, {Path(j.target).name for j in jobs})

    def evaluate(self, jobs: list[Any]) -> Iterator[Any]:
        from ..bench.runner import evaluate_job

        yield from self.ray.map(jobs, each(evaluate_job))


def _bench_pipeline(name: str, task: str, device: str, options: tuple[tuple[str, Any], ...]) -> Any:
    from ..api import Pipeline

    opts = dict(options)
    opts.setdefault("device", device)
    return Pipeline(name, task=task, **opts)
