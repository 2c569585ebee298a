"""Fuse a folder of pairs with either engine, exactly once and resumable.

:func:`fuse_folder` is what ``ivfuse fuse --pairs DIR -o OUT`` runs. The local engine is
:func:`ivfuse.api.fuse_pairs` in this process; the Ray engine (:class:`~.engine.RayEngine`) runs
the same function on batches of pairs inside actors that load the method once each
(:class:`FuseSpec`), so both engines write the same bytes and report the same
:class:`~ivfuse.api.PairResult` per pair (bad pairs: failed with the reason, the others go on).

Which pairs run:

* default: an existing output is skipped unless ``overwrite`` (as the local engine always did);
* ``resume``: the pairs the folder's :class:`~.manifest.Manifest` records as fused with the same
  method, weights, options and output format (and whose file is still whole) are skipped; every
  other pair is fused, replacing what is there (the output of another method, or of a run whose
  driver died before recording it).

The Ray engine always keeps the manifest (one line per fused pair, written by the driver after the
worker's atomic write); the local engine keeps it with ``resume``. Temporary files of writers that
were killed half-way (``.<name>.<random>.tmp``, :func:`ivfuse.io.atomic_write`) are removed at the
end of such a run, so the folder holds whole outputs only.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.pairs import Pair
from .engine import RayEngine
from .manifest import Fingerprint, Manifest, UrlManifest


@dataclass(frozen=True)
class FuseSpec:
    """What a worker needs to build the fuser once: the arguments of :func:`ivfuse.api.load`
    (and the :class:`ivfuse.register.Alignment`, if any)."""

    method: str
    task: str = "ivif"
    stretch16: bool = True
    backend: str = "auto"
    precision: str = "fp32"
    device: str = "auto"
    options: tuple[tuple[str, Any], ...] = ()
    align: Any = None

    def load(self) -> Any:
        """The :class:`ivfuse.api.Pipeline` (weights loaded, backend compiled)."""
        from .. import api

        pipeline = api.load(
            self.method, task=self.task, stretch16=self.stretch16, backend=self.backend,
            precision=self.precision, device=self.device, **dict(self.options),
        )  # fmt: skip
        pipeline.align = self.align
        return pipeline

    def fingerprint(self, *, bit_depth: int, ext: str) -> Fingerprint:
        return Fingerprint.make(
            self.method, dict(self.options), task=self.task, stretch16=self.stretch16, backend=self.backend,
            precision=self.precision, bit_depth=bit_depth, ext=ext, align=self.align,
        )  # fmt: skip


def _skipped(pairs, ext, done, target, exists, rewrite, todo) -> Iterator[Any]:
    """The skip rules of both paths: a pair the manifest records as done with this file is skipped;
    an existing output is skipped unless ``rewrite`` (--resume or --overwrite); the rest go to
    ``todo``. ``target(name)`` names the output, ``exists(name)`` says whether it is there."""
    from .. import api

    for pair in pairs:
        name = f"{pair.stem}{ext}"
        rec = done.get(pair.stem)
        if rec is not None and rec.file == name:
            yield api.PairResult(pair.stem, "skipped", target(name), "done (manifest)")
        elif not rewrite and exists(name):
            yield api.PairResult(pair.stem, "skipped", target(name), "output exists (use --overwrite)")
        else:
            todo.append(pair)


def fuse_folder(
    spec: FuseSpec,
    pairs: Iterable[Pair],
    out_dir: str | os.PathLike,
    *,
    ext: str = ".png",
    bit_depth: int = 8,
    overwrite: bool = False,
    resume: bool = False,
    engine: RayEngine | None = None,
    pipeline: Any = None,
    batch_size: int = 1,
    workers: int | None = None,
) -> Iterator[Any]:
    """Fuse ``pairs`` into ``out_dir/<stem><ext>``; one :class:`ivfuse.api.PairResult` per pair
    (skipped ones first, then the others as they finish: in pair order locally, in no fixed order
    on Ray).

    ``engine`` ``None`` runs here with ``pipeline`` (else ``spec.load()``), ``batch_size`` and
    ``workers`` as in :func:`ivfuse.api.fuse_pairs`; a :class:`RayEngine` runs on its actor pool.
    An output folder inside an input folder is refused (:class:`~ivfuse.errors.InputError`)
    before anything runs.
    """
    from .. import api
    from . import fs

    pairs = list(pairs)
    ext = ext if ext.startswith(".") else "." + ext
    if isinstance(out_dir, fs.Location) or fs.is_url(out_dir) or any(_located(p) for p in pairs):
        yield from _fuse_folder_at(
            spec, pairs, fs.Location.of(out_dir), ext=ext, bit_depth=bit_depth, overwrite=overwrite,
            resume=resume, engine=engine, pipeline=pipeline,
        )  # fmt: skip
        return
    api.refuse_output_folder_in_inputs(out_dir, [p.parent for pair in pairs for p in (pair.ir, pair.vi)])
    out = Path(out_dir)
    if engine is None and not resume:  # the local engine as it always was
        yield from api.fuse_pairs(
            pipeline if pipeline is not None else spec.load(), pairs, out, ext=ext, bit_depth=bit_depth,
            overwrite=overwrite, batch_size=batch_size, workers=workers,
        )  # fmt: skip
        return
    manifest = Manifest(out)
    fingerprint = spec.fingerprint(bit_depth=bit_depth, ext=ext)
    done = manifest.done(fingerprint) if resume else {}
    present = _names(out)
    todo: list[Pair] = []
    rewrite = resume or overwrite
    yield from _skipped(pairs, ext, done, lambda n: out / n, lambda n: n in present, rewrite, todo)
    if not todo:
        return
    manifest.start(fingerprint, engine.name if engine is not None else "local")
    try:
        if engine is None:
            results: Iterable[Any] = api.fuse_pairs(
                pipeline if pipeline is not None else spec.load(), todo, out, ext=ext, bit_depth=bit_depth,
                overwrite=True, batch_size=batch_size, workers=workers,
            )  # fmt: skip
        else:
            work = functools.partial(fuse_batch, str(out), ext, bit_depth)
            results = engine.map(todo, work, setup=spec.load)
        for res in results:
            if res.status == "fused" and res.output is not None:
                manifest.record(res.stem, res.output)
            yield res
    finally:
        manifest.close()
        remove_orphans(out, {f"{p.stem}{ext}" for p in todo})


def _located(pair: Pair) -> bool:
    from .fs import Location

    return isinstance(pair.ir, Location) or isinstance(pair.vi, Location)


#: pairs per call of :func:`fuse_batch_at` when the local engine works on URLs
LOCAL_URL_BATCH = 8


def _fuse_folder_at(
    spec: FuseSpec,
    pairs: list[Pair],
    out: Any,
    *,
    ext: str,
    bit_depth: int,
    overwrite: bool,
    resume: bool,
    engine: RayEngine | None,
    pipeline: Any,
) -> Iterator[Any]:
    """:func:`fuse_folder` where the pairs or the output folder are URLs
    (:class:`~ivfuse.distributed.fs.Location`): the same rules, with the listing of ``out`` in place
    of file checks, :class:`~.manifest.UrlManifest` (kept by both engines), and
    :func:`fuse_batch_at` as the unit (the local engine runs it here, :data:`LOCAL_URL_BATCH` pairs
    at a time)."""
    from . import fs

    pairs = [_as_located(p) for p in pairs]
    fs.refuse_output_folder_in_inputs(
        out, {str(f): f for p in pairs for f in (p.ir.parent, p.vi.parent)}.values()
    )
    manifest = UrlManifest(out)
    fingerprint = spec.fingerprint(bit_depth=bit_depth, ext=ext)
    entries = out.entries()
    done = manifest.done(fingerprint, entries) if resume else {}
    todo: list[Pair] = []
    exists = lambda n: entries.get(n, ("", 0))[0] == "file"  # noqa: E731
    yield from _skipped(pairs, ext, done, out.child, exists, resume or overwrite, todo)
    if not todo:
        return
    manifest.start(fingerprint, engine.name if engine is not None else "local")
    try:
        work = functools.partial(fuse_batch_at, out, ext, bit_depth)
        if engine is None:
            here = pipeline if pipeline is not None else spec.load()
            step = LOCAL_URL_BATCH
            results: Iterable[Any] = (
                r for i in range(0, len(todo), step) for r in work(here, todo[i : i + step])
            )
        else:
            results = engine.map(todo, work, setup=spec.load)
        for res, nbytes in results:
            if res.status == "fused" and res.output is not None:
                manifest.record(res.stem, res.output.name, nbytes)
            yield res
    finally:
        manifest.close()
        fs.remove_orphans(out, {f"{p.stem}{ext}" for p in todo})


def _as_located(pair: Pair) -> Pair:
    from .fs import Location

    return Pair(pair.stem, Location.of(pair.ir), Location.of(pair.vi))  # type: ignore[arg-type]


def fuse_batch_at(
    out: Any, ext: str, bit_depth: int, pipeline: Any, pairs: list[Pair]
) -> list[tuple[Any, int]]:
    """The unit of a run on URLs (in a Ray actor, or here): :func:`fuse_batch` on local copies.

    The sources of the batch are read into a temporary local folder, :func:`fuse_batch` fuses them
    into another (so the bytes are the local engine's), and each output is written to ``out`` whole
    or not at all (:func:`ivfuse.distributed.fs.put`). Returns (:class:`ivfuse.api.PairResult`,
    bytes written) per pair, in batch order; messages name the URLs, not the local copies. A source
    that cannot be read, or an output that cannot be written, fails its pair (the others go on).
    """
    import tempfile

    from .. import api
    from .fs import put

    results: dict[str, tuple[Any, int]] = {}
    with tempfile.TemporaryDirectory(prefix="ivfuse-") as tmp:
        root = Path(tmp)
        names: dict[str, str] = {}  # local copy -> URL, for the messages
        staged: list[Pair] = []
        for pair in pairs:
            local: list[Path] = []
            for role, src in (("a", pair.ir), ("b", pair.vi)):
                dst = root / role / src.name
                dst.parent.mkdir(exist_ok=True)
                try:
                    dst.write_bytes(src.read_bytes())
                except (OSError, ValueError) as exc:
                    reason = f"{src}: cannot read ({_first_line(exc)})"
                    results[pair.stem] = (api.PairResult(pair.stem, "failed", None, reason), 0)
                    break
                names[str(dst)] = str(src)
                local.append(dst)
            else:
                staged.append(Pair(pair.stem, local[0], local[1]))
        out_local = root / "out"
        names[str(out_local)] = str(out)
        fused = fuse_batch(str(out_local), ext, bit_depth, pipeline, staged) if staged else []

        def named(text: str) -> str:
            for local_name, url in names.items():
                text = text.replace(local_name, url)
            return text

        for res in fused:
            msgs = tuple(named(w) for w in res.warnings)
            if res.status != "fused" or res.output is None:
                results[res.stem] = (api.PairResult(res.stem, res.status, None, named(res.reason), msgs), 0)
                continue
            target = out.child(Path(res.output).name)
            data = Path(res.output).read_bytes()
            try:
                put(target, data)
            except (OSError, ValueError) as exc:  # pyarrow's errors are OSError or ValueError
                reason = f"{target}: cannot write ({_first_line(exc)})"
                results[res.stem] = (api.PairResult(res.stem, "failed", None, reason, msgs), 0)
                continue
            results[res.stem] = (api.PairResult(res.stem, "fused", target, "", msgs), len(data))
    return [results[p.stem] for p in pairs]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def fuse_batch(out_dir: str, ext: str, bit_depth: int, pipeline: Any, pairs: list[Pair]) -> list[Any]:
    """The work of one Ray actor call: :func:`ivfuse.api.fuse_pairs` on a batch of pairs, the
    whole batch through the method's ``fuse_batch`` at once (a deep method: one tensor batch), with
    one decode/encode thread beside the fusing one (the worker's one CPU: the thread mostly runs
    while the other waits, about 10 % less CPU per pair than pair by pair on a classical method)."""
    from .. import api

    return list(
        api.fuse_pairs(
            pipeline, pairs, out_dir, ext=ext, bit_depth=bit_depth, overwrite=True,
            batch_size=len(pairs), workers=1,
        )
    )  # fmt: skip


def _names(folder: Path) -> set[str]:
    try:
        with os.scandir(folder) as it:
            return {e.name for e in it}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def remove_orphans(folder: str | os.PathLike, names: set[str]) -> list[Path]:
    """Remove the temporary files :func:`ivfuse.io.atomic_write` leaves when its process is killed
    (``.<name>.<random>.tmp``) for the outputs ``names`` of ``folder``; returns them. Call when no
    writer of those outputs runs any more (the end of a run)."""
    removed = []
    for entry in _names(Path(folder)):
        if entry.startswith(".") and entry.endswith(".tmp"):
            base = entry[1:].rsplit(".", 2)[0]  # .<name>.<random>.tmp -> <name>
            if base in names:
                path = Path(folder) / entry
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
