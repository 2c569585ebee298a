"""Build a training/test pairs folder (``OUT/ir``, ``OUT/vi``) of symlinks from sets and split lists.

    python scripts/pairs_folder.py OUT SOURCE [SOURCE ...] [--data-root DIR]

A SOURCE is a set folder of the data root (``flir_train``: every pair of ``flir_train/ir`` +
``flir_train/vi``) or a split list (``splits/tno_train16.txt``: one ``<set>/<stem>`` per line).
Links are named ``<set>-<stem>.<ext>`` so that sets with the same stems (``flir_train/001`` and
``tno/001``) do not collide. Nothing is copied; ``ivfuse train --data OUT`` reads the folder.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ivfuse.data.pairs import scan_pairs_root

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def _pairs_of(root: Path, source: str) -> list[tuple[str, Path, Path]]:
    """(link stem, ir path, vi path) of every pair a SOURCE names."""
    if source.endswith(".txt"):
        wanted: dict[str, set[str]] = {}
        for line in (root / source).read_text().splitlines():
            if line.strip():
                s, _, stem = line.strip().partition("/")
                wanted.setdefault(s, set()).add(stem)
        out = []
        for s, stems in wanted.items():
            found = {p.stem: p for p in scan_pairs_root(root / s).pairs if p.stem in stems}
            missing = sorted(stems - set(found))
            if missing:
                raise SystemExit(f"error: {source}: {s}/{missing[0]} not found under {root}")
            out += [(f"{s}-{st}", Path(found[st].ir), Path(found[st].vi)) for st in sorted(found)]
        return out
    return [(f"{source}-{p.stem}", Path(p.ir), Path(p.vi)) for p in scan_pairs_root(root / source).pairs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to create (ir/ and vi/ of symlinks)")
    ap.add_argument("sources", nargs="+", help="set folders (flir_train) or split lists (splits/x.txt)")
    ap.add_argument("--data-root", default=str(DEFAULT_ROOT), help="folder holding the sets and splits/")
    args = ap.parse_args()
    root, out = Path(args.data_root), Path(args.out)
    pairs = [p for src in args.sources for p in _pairs_of(root, src)]
    for sub in ("ir", "vi"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for stem, ir, vi in pairs:
        for sub, src in (("ir", ir), ("vi", vi)):
            link = out / sub / f"{stem}{src.suffix.lower()}"
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(src.resolve(), link)
    print(f"{out}: {len(pairs)} pairs from {', '.join(args.sources)}")


if __name__ == "__main__":
    main()
