"""The benchmark runner: fuse every pair with every method (cached), then evaluate (cached).

Layout of a results folder::

    RESULTS/fused/<dataset>/<method>/<stem>.png     fused images, 8-bit (the official test pipelines
                                                   round to 8 bits before scoring)
    RESULTS/fused/<dataset>/<method>/timing.json   ms per pair of the run that fused each image
    RESULTS/fused/<dataset>/<method>/source.json   SHA-256 of the weights the images came from
                                                   (:func:`model_source`): other weights, fused again
    RESULTS/cache/metrics.json                     metric values keyed by image, profile and metric,
                                                   with the fused file's size and mtime

A rerun fuses only missing images and evaluates only missing (or stale) values; ``overwrite``
redoes both. Methods are built once per data set; one that cannot be built (weights not shipped,
task not supported) is skipped with one line, and the rest go on. One pair that fails (unreadable
file, sizes differ) is reported and skipped.

The work comes in typed units: :class:`FuseJob` -> :func:`fuse_job` -> :class:`FuseResult` and
:class:`MetricJob` -> :func:`evaluate_job` -> :class:`MetricResult`. :func:`run` runs them in this
process (metrics: ``workers`` processes), or on an ``engine`` that maps them elsewhere
(:class:`BenchEngine`, e.g. :class:`ivfuse.distributed.bench.RayBenchEngine`): the same units, so
the same files and numbers.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import io
from ..api import Pipeline
from ..errors import IvfuseError
from ..methods import registry
from .datasets import Resolved


@dataclass(frozen=True)
class MethodSpec:
    """A method with options; ``key`` names its cache folder (``didfuse`` or ``didfuse@rule=l1``)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, name: str, options: dict[str, Any] | None = None) -> MethodSpec:
        """Options equal to the method's defaults are dropped, so ``didfuse@rule=sum`` and
        ``didfuse`` are one method (one cache folder)."""
        name = name.strip().lower()
        defaults = registry.defaults(name) if registry.is_registered(name) else {}
        kept = {k: v for k, v in (options or {}).items() if not (k in defaults and defaults[k] == v)}
        return cls(name, tuple(sorted(kept.items())))

    @property
    def key(self) -> str:
        if not self.options:
            return self.name
        return self.name + "@" + ",".join(f"{k}={v}" for k, v in self.options)


@dataclass
class Task:
    """One data set: which methods to run on it and which metrics (per profile) to compute."""

    data: Resolved
    methods: list[MethodSpec]
    metrics: dict[str, list[str]]  # profile -> metric names (registry names of that profile)


@dataclass
class MethodRun:
    """What happened to one method on one data set."""

    method: MethodSpec
    status: str = "ok"  # ok | skipped
    reason: str = ""
    params: int = 0
    ms: list[float] = field(default_factory=list)  # per fused pair (this run or cached timings)
    failed: dict[str, str] = field(default_factory=dict)  # stem -> reason
    fused: dict[str, Path] = field(default_factory=dict)  # stem -> fused file


@dataclass
class Timing:
    """Where the time of a run went (seconds)."""

    total: float = 0.0
    fusion: float = 0.0  # inside the methods' fuse()
    metrics: float = 0.0  # inside evaluate() (wall time of the metric phase with workers > 1)
    fused_now: int = 0
    evaluated_now: int = 0

    @property
    def overhead(self) -> float:
        return max(0.0, self.total - self.fusion - self.metrics)


@dataclass
class Outcome:
    """Everything a report needs: per data set the method runs and the per-image values."""

    tasks: list[Task]
    runs: dict[str, dict[str, MethodRun]]  # dataset -> method key -> run
    values: dict[tuple[str, str, str, str, str], float]  # (dataset, method, stem, profile, metric)
    timing: Timing
    messages: list[str] = field(default_factory=list)


Progress = Callable[[str, int], None]  # (description, advance)


@dataclass(frozen=True)
class MetricJob:
    """One fused image to score: its sources, the metrics still missing for one profile, and the
    cache entry (key, file signature) its values go to."""

    dataset: str
    method: str  # method key (MethodSpec.key)
    stem: str
    profile: str
    metrics: tuple[str, ...]
    fused: Path
    first: Path
    second: Path
    cache_key: str
    signature: tuple[int, int]  # size and mtime of the fused file when it was scored


@dataclass(frozen=True)
class MetricResult:
    """What :func:`evaluate_job` found: the values, or the error a user can cause."""

    job: MetricJob
    values: dict[str, float] | None
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class FuseJob:
    """One pair to fuse with one method into its cache file."""

    dataset: str
    method: str  # method key (MethodSpec.key)
    stem: str
    first: Path
    second: Path
    target: Path


@dataclass(frozen=True)
class FuseResult:
    """What :func:`fuse_job` did: ``ms`` inside the method's ``fuse``, or the error a user can cause."""

    job: FuseJob
    ms: float | None
    error: str = ""


def fuse_job(pipeline: Pipeline, job: FuseJob) -> FuseResult:
    """Read, fuse (timed) and write (8-bit PNG, zlib level 1, atomically) one pair."""
    try:
        a, b = io.read_image(job.first), io.read_image(job.second)
        t0 = time.perf_counter()
        fused = pipeline.fuse(a, b)
        dt = time.perf_counter() - t0
        io.write_image(job.target, fused, png_level=1)
    except IvfuseError as exc:
        return FuseResult(job, None, str(exc))
    return FuseResult(job, dt * 1000.0)


class BenchEngine(Protocol):
    """Runs the units of :func:`run` somewhere else (results in any order)."""

    def fuse(self, method: MethodSpec, task: str, device: str, jobs: list[FuseJob]) -> Iterator[FuseResult]:
        """:func:`fuse_job` for every job, with ``Pipeline(method.name, task=task, device=device,
        **options)`` built once per worker."""
        ...

    def evaluate(self, jobs: list[MetricJob]) -> Iterator[MetricResult]:
        """:func:`evaluate_job` for every job."""
        ...


def folder_name(key: str) -> str:
    """A method key as one safe folder name: characters other than letters, digits and ``._=,@-``
    become ``_`` (a weights path option has slashes); long keys keep a hash of the full key."""
    safe = "".join(c if c.isalnum() or c in "._=,@-" else "_" for c in key)
    if len(safe) > 80:
        import hashlib

        safe = safe[:60] + "-" + hashlib.sha1(key.encode()).hexdigest()[:12]
    return safe


def _fused_dir(out: Path, dataset: str, method: MethodSpec) -> Path:
    return out / "fused" / dataset / folder_name(method.key)


def model_source(spec: MethodSpec) -> dict[str, str]:
    """What a method's fused images depend on besides its code and options: the SHA-256 of every
    file it reads its network from (a file-valued option such as ``weights=RUN/weights.safetensors``,
    else the weights shipped in the package). A retrained model at the same path changes it, so
    the cached images of the old model are not reused. ``{}`` for a method without files."""
    options = dict(spec.options)
    paths = {k: Path(v) for k, v in options.items() if isinstance(v, (str, os.PathLike))}
    files = {k: p for k, p in paths.items() if p.suffix and p.is_file()}
    if "weights" not in options and registry.is_registered(spec.name):  # the shipped weights
        entry = registry.info(spec.name)
        if entry.weights_shipped and entry.weights:
            files["weights"] = Path(str(registry.weights_path(entry.weights)))
    from ..methods._torch import sha256_file

    return {k: sha256_file(p) for k, p in sorted(files.items())}


def _signature(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


class _MetricCache:
    def __init__(self, path: Path, overwrite: bool):
        self.path = path
        self.data: dict[str, dict[str, Any]] = {}
        if path.is_file() and not overwrite:
            try:
                self.data = json.loads(path.read_text())
            except ValueError:
                self.data = {}

    @staticmethod
    def key(dataset: str, method: str, stem: str, profile: str) -> str:
        return f"{dataset}|{method}|{stem}|{profile}"

    def get(self, key: str, sig: tuple[int, int], metric: str) -> float | None:
        entry = self.data.get(key)
        if not entry or entry.get("sig") != list(sig) or metric not in entry["values"]:
            return None
        v = entry["values"][metric]
        return math.nan if v is None else float(v)

    def put(self, key: str, sig: tuple[int, int], values: dict[str, float]) -> None:
        entry = self.data.get(key)
        if not entry or entry.get("sig") != list(sig):
            entry = self.data[key] = {"sig": list(sig), "values": {}}
        entry["values"].update({k: (None if not math.isfinite(v) else v) for k, v in values.items()})

    def save(self) -> None:
        io.atomic_write_text(self.path, json.dumps(self.data, separators=(",", ":")))


def evaluate_job(job: MetricJob) -> MetricResult:
    """Score one job (in this process or a worker); an error a user can cause comes back as text."""
    from ..metrics import evaluate

    t0 = time.perf_counter()
    try:
        vals = evaluate(job.fused, job.first, job.second, metrics=list(job.metrics), profile=job.profile)
        return MetricResult(job, vals, "", time.perf_counter() - t0)
    except IvfuseError as exc:
        return MetricResult(job, None, str(exc), time.perf_counter() - t0)


def _worker_init() -> None:
    from ..metrics import set_threads

    set_threads(1)


def fuse_phase(
    task: Task,
    out: Path,
    overwrite: bool,
    timing: Timing,
    progress: Progress,
    messages: list[str],
    device: str = "auto",
    engine: BenchEngine | None = None,
) -> dict[str, MethodRun]:
    """Fuse the pairs of one data set with each of its methods (missing images only), here or on
    ``engine`` (the method is still built here once: its parameter count, and a method that
    cannot be built is skipped)."""
    runs: dict[str, MethodRun] = {}
    ds = task.data.dataset
    for spec in task.methods:
        run = runs[spec.key] = MethodRun(spec)
        folder = _fused_dir(out, ds.name, spec)
        try:
            options = dict(spec.options)
            options.setdefault("device", device if engine is None else "cpu")  # the engine's workers: device
            pipeline = Pipeline(spec.name, task=ds.task, **options)
        except (IvfuseError, TypeError) as exc:
            run.status, run.reason = "skipped", str(exc)
            messages.append(f"{spec.key} on {ds.name}: skipped ({exc})")
            progress(f"{ds.name}: {spec.key} skipped", len(task.data.pairs))
            continue
        run.params = registry.parameter_count(pipeline.method)
        source, source_file = model_source(spec), folder / "source.json"
        refuse = overwrite
        if source and not overwrite and folder.is_dir():
            try:
                cached_source = json.loads(source_file.read_text())
            except (OSError, ValueError):
                cached_source = None
            if cached_source != source and any(folder.glob("*.png")):
                refuse = True  # these images came from another model (retrained at the same path)
                messages.append(
                    f"{spec.key} on {ds.name}: its weights differ from the cached fusions'; fusing again"
                )
        timing_file = folder / "timing.json"
        times: dict[str, float] = {}
        if timing_file.is_file() and not refuse:
            try:
                times = json.loads(timing_file.read_text())
            except ValueError:
                times = {}
        changed = False
        jobs = []
        fused: dict[str, Path] = {}
        for pair in task.data.pairs:
            target = folder / f"{pair.stem}.png"
            if target.is_file() and not refuse:
                fused[pair.stem] = target
                progress(f"{ds.name}: {spec.key}", 1)
                continue
            jobs.append(FuseJob(ds.name, spec.key, pair.stem, pair.ir, pair.vi, target))
        if engine is None:
            results: Iterator[FuseResult] = (fuse_job(pipeline, job) for job in jobs)
        else:
            results = engine.fuse(spec, ds.task, device, jobs)
        done: dict[str, FuseResult] = {}
        for res in results:
            done[res.job.stem] = res
            progress(f"{ds.name}: {spec.key}", 1)
        for job in jobs:
            res = done[job.stem]
            if res.ms is None:
                if refuse and job.target.is_file():
                    job.target.unlink()  # an earlier model's image must not pass for this one's
                run.failed[job.stem] = res.error
                messages.append(f"{spec.key} on {ds.name}/{job.stem}: failed ({res.error})")
                continue
            timing.fusion += res.ms / 1000.0
            timing.fused_now += 1
            times[job.stem] = res.ms
            changed = True
            fused[job.stem] = job.target
        # in pair order, cached or not, whatever order the engine finished them in
        run.fused = {p.stem: fused[p.stem] for p in task.data.pairs if p.stem in fused}
        if changed:
            io.atomic_write_text(timing_file, json.dumps(times, indent=0, sort_keys=True) + "\n")
            if source:
                io.atomic_write_text(source_file, json.dumps(source, indent=1, sort_keys=True) + "\n")
        run.ms = [times[s] for s in run.fused if s in times]
    return runs


def run(
    tasks: list[Task],
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
    device: str = "auto",
    engine: BenchEngine | None = None,
) -> Outcome:
    """Fuse and evaluate every task; values come from the cache where they are current. Deep
    methods run on ``device`` (``auto``: CUDA when torch sees a GPU); classical ones on the CPU.
    ``engine``: fuse and score there instead of in this process (``workers`` is then unused)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    progress = progress or (lambda desc, n: None)
    timing = Timing()
    messages: list[str] = []
    t_start = time.perf_counter()
    runs: dict[str, dict[str, MethodRun]] = {}
    for task in tasks:
        name = task.data.dataset.name
        runs[name] = fuse_phase(task, out, overwrite, timing, progress, messages, device, engine)

    cache = _MetricCache(out / "cache" / "metrics.json", overwrite)
    values: dict[tuple[str, str, str, str, str], float] = {}
    todo: list[MetricJob] = []
    for task in tasks:
        ds = task.data.dataset.name
        by_stem = {p.stem: p for p in task.data.pairs}
        for key, mrun in runs[ds].items():
            unscored = len(task.data.pairs) - len(mrun.fused)  # skipped method, failed pairs
            if unscored:
                progress(f"{ds}: metrics", unscored * len(task.metrics))
            for stem, fused in mrun.fused.items():
                sig = _signature(fused)
                for profile, names in task.metrics.items():
                    ck = cache.key(ds, key, stem, profile)
                    missing = []
                    for m in names:
                        v = cache.get(ck, sig, m)
                        if v is None:
                            missing.append(m)
                        else:
                            values[(ds, key, stem, profile, m)] = v
                    if missing:
                        p = by_stem[stem]
                        todo.append(
                            MetricJob(ds, key, stem, profile, tuple(missing), fused, p.ir, p.vi, ck, sig)
                        )
                    else:
                        progress(f"{ds}: metrics", 1)

    def record(res: MetricResult) -> None:
        job = res.job
        if res.values is None:
            messages.append(f"{job.method} on {job.dataset}/{job.stem}: metrics failed ({res.error})")
            runs[job.dataset][job.method].failed[job.stem] = res.error
        else:
            cache.put(job.cache_key, job.signature, res.values)
            for m, v in res.values.items():
                values[(job.dataset, job.method, job.stem, job.profile, m)] = v
            timing.evaluated_now += 1
        progress(f"{job.dataset}: metrics", 1)

    t_metrics = time.perf_counter()
    n_workers = min(max(1, workers), len(todo), os.cpu_count() or 1)
    if engine is not None:
        for res in engine.evaluate(todo):
            timing.metrics += res.seconds
            record(res)
    elif n_workers <= 1:
        for job in todo:
            res = evaluate_job(job)
            timing.metrics += res.seconds
            record(res)
    elif todo:
        with ProcessPoolExecutor(max_workers=n_workers, initializer=_worker_init) as pool:
            for fut in as_completed([pool.submit(evaluate_job, job) for job in todo]):
                record(fut.result())
        timing.metrics += time.perf_counter() - t_metrics
    if todo:
        cache.save()
    timing.total = time.perf_counter() - t_start
    return Outcome(tasks, runs, values, timing, messages)


def total_steps(tasks: list[Task]) -> int:
    """Progress units of :func:`run`: one per pair and method (fusing) plus one per pair, method
    and profile (metrics)."""
    n = 0
    for t in tasks:
        n += len(t.data.pairs) * len(t.methods) * (1 + len(t.metrics))
    return n
