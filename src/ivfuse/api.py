"""The public Python API: ``fuse()``, ``load()`` and the batch helpers the CLI is built on.

Three lines do what ``ivfuse fuse`` does::

    import ivfuse
    fuser = ivfuse.load("gff")
    fused = fuser.fuse("ir.png", "vi.jpg")          # float32 in [0, 1], colour if vi is colour

A colour visible image is fused on its luma (Y of BT.601 YCbCr) and its chroma is put back,
so the result is colour. The result always has the visible image's size.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import io
from .data.pairs import Pair
from .errors import InputError, IvfuseError, MethodError
from .methods import registry
from .methods.base import check_pair

#: Method used when none is named (see README, "Choosing a method").
DEFAULT_METHOD = "lp"
#: what an infrared-visible pair of two sizes (two cameras, not registered) is told to do
REGISTER_HINT = (
    "; two cameras' images: register the infrared image onto the visible grid first"
    " (`ivfuse fuse --register`, `ivfuse register`, or ivfuse.register.align_pair)"
)

ImageLike = str | os.PathLike | np.ndarray


def _load(x: ImageLike, role: str) -> tuple[np.ndarray, str]:
    if isinstance(x, np.ndarray):
        return x, f"{role} array"
    return io.read_image(x), str(x)


@dataclass
class _Prepared:
    """An infrared-visible pair read and checked: the planes to fuse and the visible chroma."""

    ir: np.ndarray
    vi: np.ndarray
    ycc: np.ndarray | None  # YCbCr of a colour visible image, else None
    messages: tuple[str, ...] = ()

    def finish(self, fused: np.ndarray) -> np.ndarray:
        """The fused plane as the result image: the visible chroma put back when it had colour."""
        if self.ycc is None:
            return fused
        ycc = self.ycc.copy()
        ycc[..., 0] = fused
        return io.ycbcr_to_rgb(ycc)


class Pipeline:
    """A reusable fuser: a method plus the colour/bit-depth handling around it.

    Args:
        method: registered method name (``ivfuse methods`` lists them).
        task: ``"ivif"`` (default: infrared + visible), ``"mef"`` (under- + over-exposed) or ``"mff"``
            (two focus planes); a method that does not support the task is refused (``MethodError``).
            For ``mef``/``mff`` both sources are treated alike: when either is colour, the method
            fuses the two lumas (BT.601 Y) and the chroma planes are fused by the saturation-weighted
            rule of DeepFuse (Prabhakar et al., ICCV 2017, eq. 4): ``C = (C1 |C1 - 0.5| + C2 |C2 - 0.5|)
            / (|C1 - 0.5| + |C2 - 0.5|)`` (0.5 where both are neutral), so the more saturated source
            gives the colour.
            A method whose fuser has ``rgb = True`` (defusion) fuses the two RGB sources itself
            instead (gray sources replicated to RGB; a gray result when neither source is colour).
        stretch16: map 16-bit inputs with the percentile stretch of :func:`ivfuse.io.to_unit`
            (default) instead of a plain ``/ 65535``.
        backend: where a deep method's network runs (:mod:`ivfuse.backends`): ``"auto"`` (default:
            the fastest installed fp32-exact backend, else torch), ``"torch"``, ``"onnxruntime"``,
            ``"openvino"``. ``self.backend`` says which one runs. Classical methods run in NumPy.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` (opt-in half precision of the
            deep methods). bf16 on a CPU: OpenVINO bf16 where the CPU has AVX512-BF16/AMX, else (and
            with ``backend="torch"``) torch: the method's own bf16 path (DIDFuse) or its eager step
            under bfloat16 autocast; on a GPU torch autocast. fp16: CUDA only (torch autocast).
            Measured tolerances against fp32: docs/gpu.md.
        device: where a deep method's network runs (:func:`ivfuse.devices.parse_device`):
            ``"auto"`` (default: CUDA when torch sees a GPU, else the CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``. CUDA where there is none raises :class:`ivfuse.devices.DeviceError`
            (exit code 2). A CUDA device runs the network in eager torch (the ONNX Runtime and
            OpenVINO engines are CPU engines). Classical methods run in NumPy on the CPU: for
            them an explicit CUDA device gives a :class:`ivfuse.devices.DeviceNote` warning and
            they run on the CPU. ``self.device`` says where the method runs.
        **options: method options (e.g. ``rule="l1"`` for didfuse, ``levels=4`` for lp).
    """

    #: an :class:`ivfuse.register.Alignment` that puts every infrared image on the visible grid
    #: before fusion (``ivfuse fuse --register`` / ``--transform``); None: pairs are aligned already
    align: Any = None
    #: the :class:`ivfuse.register.Registration` of the last pair aligned with :attr:`align`
    last_registration: Any = None

    def __init__(
        self,
        method: str = DEFAULT_METHOD,
        *,
        task: str = "ivif",
        stretch16: bool = True,
        backend: str = "auto",
        precision: str = "fp32",
        device: Any = "auto",
        **options: Any,
    ):
        from . import backends
        from .devices import DeviceNote, apply_tf32, is_cuda, parse_device

        self.info = registry.check_task(method, task)
        self.task = task
        asked = str(device).strip().lower() if device is not None else "auto"
        if "device" in options:  # -p device=...: the same parser
            asked = str(options.pop("device")).strip().lower()
        classical = self.info.family == "classical"
        # a classical method runs on the CPU: "auto" needs no look for a GPU (and no torch import)
        dev = "cpu" if classical and asked == "auto" else parse_device(asked)
        if classical:
            if is_cuda(dev) and asked != "auto":
                warnings.warn(
                    f"{self.info.name} runs in NumPy on the CPU (classical method), not on {dev}",
                    DeviceNote,
                    stacklevel=2,
                )
            dev = "cpu"
        else:
            options["device"] = dev
        self.device = dev
        why = getattr(self.info.fuser, "no_half_precision", None)
        if precision != "fp32" and why:  # any engine's half precision, not only torch autocast
            raise MethodError(f"{self.info.name} runs in fp32 only: {why}")
        if options.get("precision", "fp32") != "fp32" and backend == "auto":
            backend = "torch"  # -p precision=bf16: the method's own torch path
        plan = backends.plan(
            self.info.name,
            backend,
            precision,
            deep=self.info.family != "classical",
            options=options,
            torch_precision=self.info.torch_bf16,
        )
        self.method = registry.create(method, **{**options, **plan.torch_options})
        if plan.autocast:
            self.method.autocast(plan.autocast)
        self.binding = backends.bind(self.method, self.info.name, plan)
        self.tf32 = apply_tf32(self.method, dev)
        self.stretch16 = stretch16

    @property
    def backend(self) -> str:
        """The backend the method's network runs on now (``torch`` after a fallback)."""
        return self.binding.backend

    def __repr__(self) -> str:
        return f"Pipeline({self.info.name!r})"

    def fuse(self, ir: ImageLike, vi: ImageLike) -> np.ndarray:
        """Fuse one pair (arrays of stored values or file paths).

        Returns float32 in [0, 1]: (H, W) for a gray visible image, (H, W, 3) for a colour one.
        For the ``mef``/``mff`` tasks ``ir`` and ``vi`` are the first and second source (under/over
        exposed, focus planes A/B) and the result is colour when either source is.
        """
        if self.task != "ivif":
            return self._fuse_two(ir, vi)
        prep = self._prepare(ir, vi)
        return prep.finish(self._fuse_planes(prep.ir, prep.vi))

    def _prepare(self, ir: ImageLike, vi: ImageLike, *, warn: bool = True) -> _Prepared:
        """Read and check an infrared-visible pair: the two planes the method fuses, and what puts
        the visible chroma back. ``warn=False``: a colour infrared image is noted in
        ``messages`` instead of a warning (worker threads, where warnings cannot be told apart)."""
        ir_arr, ir_name = _load(ir, "infrared")
        vi_arr, vi_name = _load(vi, "visible")
        if self.align is not None:  # registration (RegistrationError below its confidence threshold)
            ir_arr, self.last_registration = self.align.apply(ir_arr, vi_arr)
        hint = "" if self.align is not None else REGISTER_HINT
        check_pair(ir_arr, vi_arr, (ir_name, vi_name), plane=False, dtype=None, size_hint=hint)
        if ir_arr.ndim == 3 and ir_arr.shape[-1] == 1:
            ir_arr = ir_arr[..., 0]
        if vi_arr.ndim == 3 and vi_arr.shape[-1] == 1:
            vi_arr = vi_arr[..., 0]
        messages: tuple[str, ...] = ()
        if not warn and ir_arr.ndim == 3 and not io.is_gray_rgb(ir_arr):
            messages = (f"{ir_name} has colour; converted to gray (luma)",)
        ir_gray = io.to_gray(ir_arr, name=ir_name, warn=warn)
        ir_unit = io.to_unit(ir_gray, stretch16=self.stretch16)
        vi_unit = io.to_unit(vi_arr, stretch16=self.stretch16)
        if vi_unit.ndim == 3 and not io.is_gray_rgb(vi_arr):
            ycc = io.rgb_to_ycbcr(vi_unit)
            return _Prepared(
                np.ascontiguousarray(ir_unit), np.ascontiguousarray(np.clip(ycc[..., 0], 0, 1)), ycc, messages
            )
        vi_plane = vi_unit[..., 0] if vi_unit.ndim == 3 else vi_unit
        return _Prepared(np.ascontiguousarray(ir_unit), np.ascontiguousarray(vi_plane), None, messages)

    def _fuse_two(self, a: ImageLike, b: ImageLike) -> np.ndarray:
        """Multi-exposure / multi-focus: two sources of the same kind, colour kept from both."""
        (ra, na), (rb, nb) = _load(a, "first source"), _load(b, "second source")
        ra, rb = check_pair(ra, rb, (na, nb), plane=False, dtype=None)
        units = []
        names = []
        for arr, name in ((ra, na), (rb, nb)):
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            units.append(io.to_unit(arr, stretch16=self.stretch16))
            names.append((name, arr))
        colour = [u.ndim == 3 and not io.is_gray_rgb(r) for u, (_, r) in zip(units, names, strict=True)]
        if self.info.rgb:
            return self._fuse_rgb(units, any(colour))
        if not any(colour):
            planes = [u[..., 0] if u.ndim == 3 else u for u in units]
            return self._fuse_planes(planes[0], planes[1])
        yccs = []
        for u in units:
            if u.ndim == 2:
                u = np.repeat(u[..., None], 3, axis=-1)
            yccs.append(io.rgb_to_ycbcr(u))
        out = np.empty_like(yccs[0])
        out[..., 0] = self._fuse_planes(np.clip(yccs[0][..., 0], 0, 1), np.clip(yccs[1][..., 0], 0, 1))
        for c in (1, 2):
            c1, c2 = yccs[0][..., c], yccs[1][..., c]
            w1, w2 = np.abs(c1 - 0.5), np.abs(c2 - 0.5)
            den = w1 + w2
            with np.errstate(invalid="ignore", divide="ignore"):
                out[..., c] = np.where(den > 0, (c1 * w1 + c2 * w2) / den, 0.5)
        return io.ycbcr_to_rgb(out)

    def _fuse_rgb(self, units: list[np.ndarray], colour: bool) -> np.ndarray:
        """A method that fuses RGB itself (``rgb = True``: ``fuse_rgb(a, b, task=...) -> (H, W, 3)``,
        defusion) gets both sources as RGB (gray ones replicated); the result is gray when neither
        was colour."""
        rgb = [u if u.ndim == 3 else np.repeat(u[..., None], 3, axis=-1) for u in units]
        out = np.asarray(
            self.method.fuse_rgb(np.ascontiguousarray(rgb[0]), np.ascontiguousarray(rgb[1]), task=self.task),
            dtype=np.float32,
        )
        if out.shape != rgb[0].shape:
            raise RuntimeError(f"method {self.info.name} returned shape {out.shape}, expected {rgb[0].shape}")
        out = np.clip(out, 0, 1)
        return out if colour else np.clip(io.rgb_to_ycbcr(out)[..., 0], 0, 1)

    def _fuse_plane_batch(self, irs: list[np.ndarray], vis: list[np.ndarray]) -> list[np.ndarray]:
        """Many plane pairs through the method's ``fuse_batch``; each result clipped and checked."""
        outs = self.method.fuse_batch(irs, vis)
        res = []
        for ir, o in zip(irs, outs, strict=True):
            o = np.asarray(o, dtype=np.float32)
            if o.shape != ir.shape:
                raise RuntimeError(f"method {self.info.name} returned shape {o.shape}, expected {ir.shape}")
            res.append(np.clip(o, 0, 1))
        return res

    def _fuse_planes(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        out = np.asarray(
            self.method.fuse(np.ascontiguousarray(ir), np.ascontiguousarray(vi)), dtype=np.float32
        )
        if out.shape != ir.shape:
            raise RuntimeError(f"method {self.info.name} returned shape {out.shape}, expected {ir.shape}")
        return np.clip(out, 0, 1)

    def fuse_files(
        self, ir: str | os.PathLike, vi: str | os.PathLike, out: str | os.PathLike, *, bit_depth: int = 8
    ) -> Path:
        """Fuse two files and write the result atomically to ``out``; returns its path.

        The method's side maps (``fuser.side_maps()``) that have a path, set by a method option such
        as sslwaeie's ``contributions=PATH``, are written too, after the fused image; ``{stem}`` in a
        map path becomes the stem of ``out`` (one map per pair in folder mode).

        An ``out`` that is one of the inputs (same file: relative path, symlink or hard link) is
        refused with :class:`InputError` before anything runs; an existing other file is replaced
        (``ivfuse fuse`` refuses that without ``--overwrite``).
        """
        refuse_input_as_output(out, (ir, vi))
        path = io.write_image(out, self.fuse(ir, vi), bit_depth=bit_depth)
        for side in self.method.side_maps().values():
            if side.path is not None:
                io.write_image(side.path.replace("{stem}", Path(out).stem), side.image, bit_depth=bit_depth)
        return path


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """Method options from ``KEY=VALUE`` strings:
    ``["levels=4", "wavelet=db2"]`` -> ``{"levels": 4, "wavelet": "db2"}`` (ints/floats parsed)."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param expects KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                params[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            params[key] = {"true": True, "false": False}.get(value.lower(), value)
    return params


def load(
    method: str = DEFAULT_METHOD,
    *,
    task: str = "ivif",
    backend: str = "auto",
    precision: str = "fp32",
    device: Any = "auto",
    **options: Any,
) -> Pipeline:
    """A reusable :class:`Pipeline` for ``method`` and ``task`` (weights are loaded once; a deep
    method's graph is exported and compiled once per process for ``backend``) on ``device``
    (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; see :class:`Pipeline`)."""
    return Pipeline(method, task=task, backend=backend, precision=precision, device=device, **options)


def fuse(ir: ImageLike, vi: ImageLike, method: str = DEFAULT_METHOD, **options: Any) -> np.ndarray:
    """Fuse one pair with ``method``; see :meth:`Pipeline.fuse`."""
    return Pipeline(method, **options).fuse(ir, vi)


def list_methods() -> list[registry.MethodInfo]:
    """Every registered method with its metadata."""
    return registry.available()


# ---------------------------------------------------------------------------------------------
# batches


def refuse_input_as_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """:class:`InputError` when the output file ``out`` is one of ``inputs`` (resolved: the same
    file through a relative path, a symlink or a hard link): writing it would destroy an input."""
    for src in inputs:
        if io.same_file(out, src):
            raise InputError(f"output {out} is the input {src}: choose another output file")


def refuse_output_folder_in_inputs(out_dir: str | os.PathLike, folders: Iterable[str | os.PathLike]) -> None:
    """:class:`InputError` when the output folder ``out_dir`` is a source folder or lies inside one
    (fused images would be written among the sources, and taken for sources on the next run)."""
    out = Path(out_dir).resolve()
    for folder in dict.fromkeys(Path(f).resolve() for f in folders):
        if out == folder or folder in out.parents or io.same_file(out_dir, folder):
            raise InputError(
                f"output folder {out_dir} is inside the input folder {folder}: choose another output folder"
            )


@dataclass(frozen=True)
class PairResult:
    """What happened to one pair of a batch."""

    stem: str
    status: Literal["fused", "skipped", "failed"]
    output: Path | None = None
    reason: str = ""
    warnings: tuple[str, ...] = ()


def fuse_pairs(
    pipeline: Pipeline,
    pairs: Iterable[Pair],
    out_dir: str | os.PathLike,
    *,
    ext: str = ".png",
    bit_depth: int = 8,
    overwrite: bool = False,
    batch_size: int = 1,
    workers: int | None = None,
) -> Iterator[PairResult]:
    """Fuse many pairs into ``out_dir/<stem><ext>``, one :class:`PairResult` per pair.

    An existing output is skipped unless ``overwrite``. A pair that fails (bad file, sizes that
    differ, ...) is reported as failed with the reason, and the next pair goes on. An ``out_dir``
    that is (or lies inside) the folder of a source is refused at once with :class:`InputError`,
    before any pair runs.

    ``batch_size`` > 1 or ``workers`` > 0: images are decoded and results encoded and written on
    a pool of ``workers`` threads (default: up to 8, one per CPU core), reading ahead while the
    method fuses, and the method gets ``batch_size`` pairs at a time through its ``fuse_batch``
    (a deep method runs equal-sized pairs as one tensor batch: the results equal one-by-one
    ``fuse``). Only for infrared-visible fusion without side maps to write and without
    registration; otherwise (``mef``/``mff``, a method option that writes side maps,
    :attr:`Pipeline.align`) the pairs go one by one as with the defaults.
    """
    pairs = list(pairs)
    refuse_output_folder_in_inputs(
        out_dir, [p.parent for pair in pairs for p in (Path(pair.ir), Path(pair.vi))]
    )
    ext = ext if ext.startswith(".") else "." + ext
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise InputError(f"workers must be 0 or more, got {workers}")
    threaded = batch_size > 1 or bool(workers)
    maps = any(m.path is not None for m in pipeline.method.side_maps().values()) or bool(
        getattr(pipeline.method, "_map_paths", None)
    )
    if threaded and pipeline.task == "ivif" and not maps and pipeline.align is None:
        n = workers if workers else min(8, os.cpu_count() or 1)
        return _fuse_pairs_threaded(pipeline, pairs, Path(out_dir), ext, bit_depth, overwrite, batch_size, n)
    return _fuse_pairs(pipeline, pairs, Path(out_dir), ext, bit_depth, overwrite)


def _write_result(target: Path, image: np.ndarray, bit_depth: int) -> Path:
    return io.write_image(target, image, bit_depth=bit_depth)


def _fuse_pairs_threaded(
    pipeline: Pipeline,
    pairs: list[Pair],
    out_root: Path,
    ext: str,
    bit_depth: int,
    overwrite: bool,
    batch_size: int,
    workers: int,
) -> Iterator[PairResult]:
    """:func:`fuse_pairs` with decoding/encoding on ``workers`` threads and ``batch_size`` pairs
    per ``fuse_batch`` call; results in the order of ``pairs``."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    entries: list[tuple[Pair, Path, bool]] = []
    for pair in pairs:
        target = out_root / f"{pair.stem}{ext}"
        entries.append((pair, target, overwrite or not target.exists()))
    todo = [i for i, e in enumerate(entries) if e[2]]
    ahead = max(2 * batch_size, workers)  # pairs decoded ahead of the one being fused

    def prepare(pair: Pair, target: Path) -> _Prepared:
        refuse_input_as_output(target, (pair.ir, pair.vi))
        return pipeline._prepare(pair.ir, pair.vi, warn=False)

    slots: dict[int, PairResult | Future] = {}
    pending: deque[int] = deque(range(len(entries)))  # yielded in this order
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ivfuse-io") as pool:
        reads: dict[int, Future] = {}
        submitted = 0

        def read_ahead(upto: int) -> None:
            nonlocal submitted
            while submitted < min(upto, len(todo)):
                i = todo[submitted]
                reads[i] = pool.submit(prepare, entries[i][0], entries[i][1])
                submitted += 1

        def ready() -> Iterator[PairResult]:
            while pending:
                i = pending[0]
                pair, target, run = entries[i]
                if run and i not in slots:
                    return
                if not run:
                    pending.popleft()
                    yield PairResult(pair.stem, "skipped", target, "output exists (use --overwrite)")
                    continue
                got = slots[i]
                if isinstance(got, Future):
                    if not got.done():
                        return
                    pending.popleft()
                    del slots[i]
                    try:
                        msgs = got.result()
                    except IvfuseError as exc:
                        yield PairResult(pair.stem, "failed", None, str(exc))
                        continue
                    yield PairResult(pair.stem, "fused", target, "", msgs)
                else:
                    pending.popleft()
                    del slots[i]
                    yield got

        for start in range(0, len(todo), batch_size):
            read_ahead(start + batch_size + ahead)
            chunk = todo[start : start + batch_size]
            good: list[tuple[int, _Prepared]] = []
            for i in chunk:
                try:
                    good.append((i, reads.pop(i).result()))
                except IvfuseError as exc:
                    slots[i] = PairResult(entries[i][0].stem, "failed", None, str(exc))
            if good:
                try:
                    fused = pipeline._fuse_plane_batch([p.ir for _, p in good], [p.vi for _, p in good])
                except IvfuseError as exc:  # the batch failed: every pair of it, with the reason
                    for i, _ in good:
                        slots[i] = PairResult(entries[i][0].stem, "failed", None, str(exc))
                    fused = []
                for (i, prep), plane in zip(good, fused, strict=False):

                    def write(target: Path, prep: _Prepared, plane: np.ndarray) -> tuple[str, ...]:
                        _write_result(target, prep.finish(plane), bit_depth)  # chroma back, encode
                        return prep.messages

                    slots[i] = pool.submit(write, entries[i][1], prep, plane)
            yield from ready()
        for f in list(slots.values()):
            if isinstance(f, Future):
                f.exception()  # wait for every write
        yield from ready()


def _fuse_pairs(
    pipeline: Pipeline, pairs: list[Pair], out_root: Path, ext: str, bit_depth: int, overwrite: bool
) -> Iterator[PairResult]:
    for pair in pairs:
        target = out_root / f"{pair.stem}{ext}"
        if target.exists() and not overwrite:
            yield PairResult(pair.stem, "skipped", target, "output exists (use --overwrite)")
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                pipeline.fuse_files(pair.ir, pair.vi, target, bit_depth=bit_depth)
            except IvfuseError as exc:
                yield PairResult(pair.stem, "failed", None, str(exc), _messages(caught))
                continue
        yield PairResult(pair.stem, "fused", target, "", _messages(caught))


def _messages(caught: list[warnings.WarningMessage]) -> tuple[str, ...]:
    return tuple(str(w.message) for w in caught)
