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
from .manifest import Fingerprint, Manifest


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

    pairs = list(pairs)
    api.refuse_output_folder_in_inputs(out_dir, [p.parent for pair in pairs for p in (pair.ir, pair.vi)])
    ext = ext if ext.startswith(".") else "." + ext
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
    for pair in pairs:
        name = f"{pair.stem}{ext}"
        rec = done.get(pair.stem)
        if rec is not None and rec.file == name:
            yield api.PairResult(pair.stem, "skipped", out / name, "done (manifest)")
        elif not resume and not overwrite and name in present:
            yield api.PairResult(pair.stem, "skipped", out / name, "output exists (use --overwrite)")
        else:
            todo.append(pair)
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


def fuse_batch(out_dir: str, ext: str, bit_depth: int, pipeline: Any, pairs: list[Pair]) -> list[Any]:
    """The work of one Ray actor call: :func:`ivfuse.api.fuse_pairs` on a batch of pairs (deep
    methods: the whole batch through ``fuse_batch`` at once; classical ones pair by pair)."""
    from .. import api

    deep = pipeline.info.family != "classical"
    return list(
        api.fuse_pairs(
            pipeline, pairs, out_dir, ext=ext, bit_depth=bit_depth, overwrite=True,
            batch_size=len(pairs) if deep else 1, workers=1 if deep else None,
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
