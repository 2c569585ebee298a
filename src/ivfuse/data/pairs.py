"""Pair discovery, the one place that finds image pairs: match two source folders by file stem.

``ir/FLIR_00006.jpg`` pairs with ``vi/FLIR_00006.png``. Files whose stem has no partner are
reported as unmatched, never silently dropped; a stem that appears twice in one folder (``a.png``
and ``a.jpg``) is ambiguous and reported too. A folder is never paired with itself.

Layouts (every reader of pairs in ivfuse goes through this module: ``ivfuse fuse``, ``ivfuse eval``,
``ivfuse bench``, training and the benchmark scripts):

* two folders (``--ir DIR --vi DIR``): :func:`find_pairs`;
* a pairs folder with two source sub-folders, any letter case: ``ir/`` + ``vi/`` (infrared-visible),
  ``under/`` + ``over/`` (multi-exposure), ``a/`` + ``b/`` (multi-focus), see :data:`TASK_FOLDERS`:
  :func:`scan_pairs_root` (the layout named, or found with :func:`detect_task`);
* a split list of ``<set>/<stem>`` lines drawing on set folders of a data root: :func:`split_pairs`;
* whichever of the first two a command line gives: :func:`discover`.

For the ``mef``/``mff`` tasks :attr:`Pair.ir` is the first source and :attr:`Pair.vi` the second.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io import IMAGE_EXTENSIONS, same_file


@dataclass(frozen=True)
class Pair:
    """One infrared/visible pair (first/second source for multi-exposure and multi-focus)."""

    stem: str
    ir: Path
    vi: Path


@dataclass
class PairScan:
    """Result of matching two folders."""

    pairs: list[Pair] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)  # files with no partner
    ambiguous: list[Path] = field(default_factory=list)  # several files with one stem in a folder
    folders: tuple[Path, Path] | None = None  # the two source folders matched

    def problems(self) -> list[str]:
        """One human-readable line per file that is not part of a pair."""
        lines = [f"{p}: no matching file in the other folder" for p in self.unmatched]
        lines += [f"{p}: several files share the stem {p.stem!r}" for p in self.ambiguous]
        return lines


#: sub-folders of a pairs folder per task: (first source, second source)
TASK_FOLDERS: dict[str, tuple[str, str]] = {"ivif": ("ir", "vi"), "mef": ("under", "over"), "mff": ("a", "b")}


def list_images(folder: str | os.PathLike, label: str = "") -> list[Path]:
    """Image files (by extension, case-insensitive) directly inside ``folder``, sorted by name;
    hidden files are left out. ``label`` (``"--ir"``) starts the folder-not-found message."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{label + ' ' if label else ''}{d}: folder not found")
    return sorted(
        p
        for p in d.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def by_stem(files: list[Path]) -> tuple[dict[str, Path], list[Path]]:
    """(stem -> file for the stems that occur once, the files whose stem occurs several times)."""
    seen: dict[str, list[Path]] = {}
    for f in files:
        seen.setdefault(f.stem, []).append(f)
    unique = {s: fs[0] for s, fs in seen.items() if len(fs) == 1}
    ambiguous = [f for fs in seen.values() if len(fs) > 1 for f in fs]
    return unique, ambiguous


def find_pairs(
    ir_dir: str | os.PathLike, vi_dir: str | os.PathLike, labels: tuple[str, str] = ("", "")
) -> PairScan:
    """Match the images of ``ir_dir`` and ``vi_dir`` by stem; pairs are sorted by stem.

    Refuses (:class:`InputError`) two names of one folder (``--ir . --vi .``, a symlink to it): every
    file would be paired with itself. ``labels`` (``("--ir", "--vi")``) name the folders in messages.
    """
    ir_files = list_images(ir_dir, labels[0])
    vi_files = list_images(vi_dir, labels[1])
    if same_file(ir_dir, vi_dir):
        a, b = (f"{lab} {d}" if lab else str(d) for lab, d in zip(labels, (ir_dir, vi_dir), strict=True))
        raise InputError(f"{a} and {b} are the same folder: the two sources must be in two folders")
    return match_by_stem(ir_files, vi_files, (Path(ir_dir), Path(vi_dir)))


def match_by_stem(ir_files: list, vi_files: list, folders: tuple, key: Callable | None = None) -> PairScan:
    """The :class:`PairScan` of two listed folders: files matched by stem, pairs sorted by stem; the
    files are paths or anything with ``.stem`` (:class:`ivfuse.distributed.fs.Location`), ``key``
    sorts the unmatched ones where the files do not compare."""
    ir, amb_ir = by_stem(ir_files)
    vi, amb_vi = by_stem(vi_files)
    stems = sorted(ir.keys() & vi.keys())
    unmatched = [ir[s] for s in ir.keys() - vi.keys()] + [vi[s] for s in vi.keys() - ir.keys()]
    return PairScan(
        pairs=[Pair(s, ir[s], vi[s]) for s in stems],
        unmatched=sorted(unmatched, key=key),
        ambiguous=amb_ir + amb_vi,
        folders=folders,
    )


def subfolder(root: str | os.PathLike, name: str) -> Path | None:
    """The sub-folder ``name`` of ``root`` in any letter case (``IR/`` for ``ir``), or ``None``."""
    for p in sorted(Path(root).iterdir()):
        if p.is_dir() and p.name.lower() == name:
            return p
    return None


def detect_task(root: str | os.PathLike) -> str:
    """The task of a pairs folder from its sub-folders: ``ivif`` (``ir/`` + ``vi/``), ``mef``
    (``under/`` + ``over/``) or ``mff`` (``a/`` + ``b/``); :class:`InputError` for none."""
    r = Path(root)
    if not r.is_dir():
        raise InputError(f"{r}: folder not found")
    for task, (a, b) in TASK_FOLDERS.items():
        if subfolder(r, a) is not None and subfolder(r, b) is not None:
            return task
    raise InputError(f"{r}: expected sub-folders ir/ + vi/ (or under/ + over/, or a/ + b/)")


def source_folders(root: str | os.PathLike, names: tuple[str, str] | None = None) -> tuple[Path, Path]:
    """The two source sub-folders of a pairs folder: ``names`` (e.g. ``("under", "over")``), or
    the layout :func:`detect_task` finds when ``names`` is ``None``."""
    r = Path(root)
    if not r.is_dir():
        raise InputError(f"{r}: folder not found")
    names = names or TASK_FOLDERS[detect_task(r)]
    found = [subfolder(r, n) for n in names]
    missing = [n for n, f in zip(names, found, strict=True) if f is None]
    if missing:
        gone = " and ".join(m + "/" for m in missing)
        raise InputError(f"{r}: expected sub-folders {names[0]}/ and {names[1]}/, missing {gone}")
    return found[0], found[1]  # type: ignore[return-value]


def scan_pairs_root(root: str | os.PathLike, names: tuple[str, str] | None = ("ir", "vi")) -> PairScan:
    """Pairs of a folder that holds ``ir/`` and ``vi/`` sub-folders (any letter case), or the two
    sub-folders ``names`` (e.g. ``("under", "over")``, see :data:`TASK_FOLDERS`; ``None``: the
    layout the folder has)."""
    first, second = source_folders(root, names)
    return find_pairs(first, second)


def discover(
    ir_dir: str | os.PathLike | None = None,
    vi_dir: str | os.PathLike | None = None,
    pairs_dir: str | os.PathLike | None = None,
    *,
    task: str = "ivif",
) -> PairScan:
    """The pairs a command line names: ``--pairs DIR`` (the sub-folders of ``task``) or
    ``--ir DIR --vi DIR``; one :class:`InputError` line for a wrong combination."""
    if task not in TASK_FOLDERS:
        raise InputError(f"unknown task {task!r}; choose one of: {', '.join(TASK_FOLDERS)}")
    if pairs_dir is not None:
        if ir_dir is not None or vi_dir is not None:
            raise InputError("use either --pairs or --ir/--vi, not both")
        return find_pairs(*source_folders(pairs_dir, TASK_FOLDERS[task]))
    if ir_dir is None or vi_dir is None:
        raise InputError("folder mode needs both --ir and --vi (or --pairs)")
    return find_pairs(ir_dir, vi_dir, labels=("--ir", "--vi"))


def split_pairs(root: str | os.PathLike, split_file: str | os.PathLike, names: tuple[str, str]) -> list[Pair]:
    """Pairs listed in ``split_file`` (one ``<set>/<stem>`` per line; blank lines and ``#``
    comments skipped), each found as ``root/<set>/<names[0]>/<stem>.*`` + ``.../<names[1]>/...`` (any
    letter case of the sub-folders), in the list's order. A line without exactly one image per source
    is an :class:`InputError`."""
    root, path = Path(root), Path(split_file)
    if not path.is_file():
        raise InputError(f"split list {path} not found under the data root {root}")
    listed: dict[Path, dict[str, Path]] = {}  # folder -> stem -> file (stems that occur once)
    pairs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        set_name, _, stem = line.partition("/")
        found = []
        for sub in names:
            base = root / set_name
            d = (subfolder(base, sub) if base.is_dir() else None) or base / sub
            if d not in listed:
                listed[d] = by_stem(list_images(d))[0] if d.is_dir() else {}
            hit = listed[d].get(stem)
            if hit is None:
                raise InputError(f"{path}: {line}: no single {sub} image {d}/{stem}.*")
            found.append(hit)
        pairs.append(Pair(stem, found[0], found[1]))
    return pairs
