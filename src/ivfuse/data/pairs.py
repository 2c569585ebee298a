"""Pair discovery: match infrared and visible files by file stem, whatever their extensions.

``ir/FLIR_00006.jpg`` pairs with ``vi/FLIR_00006.png``. Files whose stem has no partner are
reported as unmatched, never silently dropped; a stem that appears twice in one folder (``a.png``
and ``a.jpg``) is ambiguous and reported too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class Pair:
    """One infrared/visible pair."""

    stem: str
    ir: Path
    vi: Path


@dataclass
class PairScan:
    """Result of matching two folders."""

    pairs: list[Pair] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)  # files with no partner
    ambiguous: list[Path] = field(default_factory=list)  # several files with one stem in a folder

    def problems(self) -> list[str]:
        """One human-readable line per file that is not part of a pair."""
        lines = [f"{p}: no matching file in the other folder" for p in self.unmatched]
        lines += [f"{p}: several files share the stem {p.stem!r}" for p in self.ambiguous]
        return lines


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (by extension, case-insensitive) directly inside ``folder``, sorted by name."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{d}: folder not found")
    return sorted(
        p
        for p in d.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _by_stem(files: list[Path]) -> tuple[dict[str, Path], list[Path]]:
    seen: dict[str, list[Path]] = {}
    for f in files:
        seen.setdefault(f.stem, []).append(f)
    unique = {s: fs[0] for s, fs in seen.items() if len(fs) == 1}
    ambiguous = [f for fs in seen.values() if len(fs) > 1 for f in fs]
    return unique, ambiguous


def find_pairs(ir_dir: str | os.PathLike, vi_dir: str | os.PathLike) -> PairScan:
    """Match the images of ``ir_dir`` and ``vi_dir`` by stem; pairs are sorted by stem."""
    ir, amb_ir = _by_stem(list_images(ir_dir))
    vi, amb_vi = _by_stem(list_images(vi_dir))
    stems = sorted(ir.keys() & vi.keys())
    return PairScan(
        pairs=[Pair(s, ir[s], vi[s]) for s in stems],
        unmatched=sorted([ir[s] for s in ir.keys() - vi.keys()] + [vi[s] for s in vi.keys() - ir.keys()]),
        ambiguous=amb_ir + amb_vi,
    )


#: sub-folders of a pairs folder per task: (first source, second source)
TASK_FOLDERS: dict[str, tuple[str, str]] = {"ivif": ("ir", "vi"), "mef": ("under", "over"), "mff": ("a", "b")}


def scan_pairs_root(root: str | os.PathLike, names: tuple[str, str] = ("ir", "vi")) -> PairScan:
    """Pairs of a folder that holds ``ir/`` and ``vi/`` sub-folders (any letter case), or the two
    sub-folders ``names`` (e.g. ``("under", "over")``, see :data:`TASK_FOLDERS`)."""
    r = Path(root)
    if not r.is_dir():
        raise InputError(f"{r}: folder not found")
    subs = {p.name.lower(): p for p in r.iterdir() if p.is_dir()}
    missing = [n for n in names if n not in subs]
    if missing:
        gone = " and ".join(m + "/" for m in missing)
        raise InputError(f"{r}: expected sub-folders {names[0]}/ and {names[1]}/, missing {gone}")
    return find_pairs(subs[names[0]], subs[names[1]])
