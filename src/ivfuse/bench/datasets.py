"""Named test sets of the seed papers, resolved under a data root.

A :class:`Dataset` says where its pairs are (a folder with two source sub-folders, or a split list of
``<set>/<stem>`` lines), its task (``ivif``, ``mef``, ``mff``), which source is *first* and how colour
is handled. :func:`resolve` turns a name (or a folder path) into the list of pairs, with one clear
:class:`~ivfuse.errors.InputError` line when the data root or the set is missing.

The data root is ``--data-root DIR`` (``data_root=`` in Python) when given, else the environment
variable ``IVFUSE_DATA``; with neither, a named set is refused with one line saying how to set it (a
folder given by path needs no data root). Under the root: ``<set>/ir|vi/<stem>.<ext>``,
``mef_<set>/under|over/``, ``mff_<set>/a|b/`` and ``splits/<name>.txt``. Pairs are found by
:mod:`ivfuse.data.pairs`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..data.pairs import TASK_FOLDERS, Pair, detect_task, scan_pairs_root, split_pairs
from ..data.root import DATA_ENV, default_data_root
from ..errors import InputError


@dataclass(frozen=True)
class Dataset:
    """One named test set.

    ``folder`` is a set folder under the data root (``tno``, ``mef_mefb``) or ``None`` when the pairs
    come from ``split`` (a file under ``splits/`` whose lines are ``<set>/<stem>``, possibly drawing on
    several set folders). ``first`` names the first source (IR for ``ivif``, the under-exposed image
    for ``mef``, image A for ``mff``); metrics get the sources in the order (first, second).
    """

    name: str
    task: str
    description: str
    folder: str | None = None
    split: str | None = None
    pairs: int | None = None  # expected count (checked, so a damaged copy is noticed)
    colour: str = ""
    paper_use: str = ""

    @property
    def sources(self) -> tuple[str, str]:
        return TASK_FOLDERS[self.task]

    @property
    def first(self) -> str:
        return self.sources[0]

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "task": self.task,
            "description": self.description,
            "sources": list(self.sources),
            "first": self.first,
            "colour": self.colour,
            "paper_use": self.paper_use,
        }


_IVIF_COLOUR = "IR gray; a colour visible image is fused on its luma and keeps its chroma"
_RGB = "RGB sources; luma fused by the method, chroma by the saturation-weighted rule (see ivfuse.api)"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("tno", "ivif", "TNO, the 40 test pairs DIDFuse ships (gray)", folder="tno", pairs=40,
                colour="gray IR and VI", paper_use="DIDFuse Table 4, JCAE Table 1"),
        Dataset("tno-test24", "ivif", "TNO pairs not in splits/tno_train16 (leak-free for TNO training)",
                split="tno_test24", pairs=24, colour="gray IR and VI",
                paper_use="SSL-WAEIE Table 1, IFESNet Tables I-II (stand-in)"),
        Dataset("tno25", "ivif", "the 25 TNO pairs CDDFuse ships (24 of tno + tno_extra/25)", split="tno25",
                pairs=25, colour="gray IR and VI"),
        Dataset("roadscene-test41", "ivif", "RoadScene pairs not in flir_train (leak-free for FLIR training)",
                split="roadscene_not_in_flir_train", pairs=41, colour=_IVIF_COLOUR,
                paper_use="SSL-WAEIE Table 2, DeFusion Table 3"),
        Dataset("roadscene50", "ivif", "the 50 RoadScene pairs CDDFuse ships (40 of them are in flir_train)",
                split="roadscene50", pairs=50, colour=_IVIF_COLOUR),
        Dataset("flir-test", "ivif", "FLIR test split of DIDFuse (gray)", folder="flir_test", pairs=40,
                colour="gray IR and VI", paper_use="DIDFuse Table 4"),
        Dataset("nir", "ivif", "RGB-NIR Scene 'country' test split of DIDFuse (near-infrared)",
                folder="nir_country", pairs=52, colour="gray NIR and VI", paper_use="DIDFuse Table 4"),
        Dataset("mefb", "mef", "MEFB multi-exposure benchmark, 100 under/over pairs", folder="mef_mefb",
                pairs=100, colour=_RGB, paper_use="DeFusion Table 1"),
        Dataset("lytro", "mff", "Lytro multi-focus pairs (no ground truth)", folder="mff_lytro", pairs=20,
                colour=_RGB, paper_use="DeFusion Table 2 (without ground truth)"),
        Dataset("mffw", "mff", "MFFW multi-focus pairs in the wild (no ground truth)", folder="mff_mffw",
                pairs=13, colour=_RGB, paper_use="DeFusion Table 2 (without ground truth)"),
        Dataset("mfiwhu", "mff", "30 MFI-WHU multi-focus pairs (no ground truth)", folder="mff_mfiwhu",
                pairs=30, colour=_RGB, paper_use="DeFusion Table 2 (without ground truth)"),
    )
}  # fmt: skip


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root to use; :class:`InputError` with one line when there is none."""
    path = Path(root) if root is not None else default_data_root()
    if path is None:
        raise InputError(
            f"no data root: pass --data-root DIR or set {DATA_ENV}=DIR "
            "(the folder holding tno/, splits/, ...)"
        )
    if not path.is_dir():
        how = "--data-root" if root is not None else f"${DATA_ENV}"
        raise InputError(f"data root {path} ({how}): folder not found")
    return path


def get(name: str) -> Dataset:
    """The registered data set ``name``; :class:`InputError` listing the choices otherwise."""
    key = name.strip().lower()
    if key not in DATASETS:
        choices = ", ".join(DATASETS)
        raise InputError(f"unknown data set {name!r}; choose one of: {choices} (or a folder path)")
    return DATASETS[key]


def _folder_pairs(folder: Path, task: str) -> list[Pair]:
    scan = scan_pairs_root(folder, TASK_FOLDERS[task])
    if scan.ambiguous:
        raise InputError(f"{scan.ambiguous[0]}: several files share the stem {scan.ambiguous[0].stem!r}")
    return scan.pairs


@dataclass(frozen=True)
class Resolved:
    """A data set with its pairs (``Pair.ir`` is the first source, ``Pair.vi`` the second)."""

    dataset: Dataset
    pairs: list[Pair]
    location: Path


def resolve(name_or_path: str, root: str | os.PathLike | None = None) -> Resolved:
    """Pairs of a registered data set under the data root, or of a folder given by path.

    A path (anything that is an existing folder, or contains a path separator) is a user's own set
    with ``ir/`` + ``vi/`` (or ``under/`` + ``over/``, ``a/`` + ``b/``); its name is the folder name.
    """
    p = Path(name_or_path).expanduser()
    if p.is_dir() or os.sep in name_or_path or name_or_path.startswith("."):
        if not p.is_dir():
            raise InputError(f"data set folder {p} not found")
        task = detect_task(p)
        ds = Dataset(p.resolve().name, task, f"user folder {p}", folder=str(p), colour="as stored")
        pairs = _folder_pairs(p, task)
        location = p
    else:
        ds = get(name_or_path)
        base = data_root(root)
        if ds.split is not None:
            location = base / "splits" / f"{ds.split}.txt"
            pairs = split_pairs(base, location, TASK_FOLDERS[ds.task])
        else:
            location = base / str(ds.folder)
            if not location.is_dir():
                raise InputError(f"data set {ds.name!r}: folder {location} not found under the data root")
            pairs = _folder_pairs(location, ds.task)
        if ds.pairs is not None and len(pairs) != ds.pairs:
            raise InputError(
                f"data set {ds.name!r} at {location}: {len(pairs)} pairs found, {ds.pairs} expected"
            )
    if not pairs:
        raise InputError(f"data set {ds.name!r} at {location}: no pairs found")
    return Resolved(ds, pairs, location)
