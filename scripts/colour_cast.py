"""Colour cast and tonal range of fused colour images against their two sources (multi-exposure,
multi-focus, or a colour visible image with its infrared partner).

    python scripts/colour_cast.py FUSED A B [FUSED A B ...] [--json out.json]
    python scripts/colour_cast.py runs/bench/fused/lytro/defusion DATA/mff_lytro/a DATA/mff_lytro/b

Images are matched by file stem. Per image, with S = (A + B) / 2 the mean of the two sources and
m(.) the per-channel mean over the image (R, G, B; 0-255):

- **cast**: ``max_c |d_c - mean(d)|`` with ``d = m(F) - m(S)``: how far one channel moved beyond
  the brightness shift common to all three (0 for a gray change of brightness, 0 for any fusion
  that keeps the sources' colour balance);
- **shift**: ``mean(d)``, that common brightness shift;
- **range**: the 1-99 % percentile span of F's channel mean minus that of S (negative: flatter
  than the sources).

None of these is a fusion-quality metric of the literature; they say whether a method changes the
colours the two sources agree on, which the no-reference metrics computed on the luma do not see.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ivfuse.data.pairs import by_stem, find_pairs, list_images
from ivfuse.io import read_image, to_unit


def _rgb(path: Path) -> np.ndarray:
    """An image file as H x W x 3 float on the 0-255 scale (gray copied to three channels; 16-bit
    files scaled by 255 / 65535, not stretched)."""
    x = to_unit(read_image(path), stretch16=False).astype(np.float64) * 255
    return x if x.ndim == 3 else np.repeat(x[..., None], 3, axis=2)


def measure(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """cast, shift and range of one fused image against its two sources (H x W x 3, 0-255)."""
    if not fused.shape == a.shape == b.shape:
        raise ValueError(f"sizes differ: fused {fused.shape}, sources {a.shape} and {b.shape}")
    src = (a + b) / 2
    d = fused.reshape(-1, 3).mean(0) - src.reshape(-1, 3).mean(0)
    shift = float(d.mean())

    def span(x: np.ndarray) -> float:
        lo, hi = np.percentile(x.mean(2), [1, 99])
        return float(hi - lo)

    return {"cast": float(np.abs(d - shift).max()), "shift": shift, "range": span(fused) - span(src)}


def study(fused_dir: Path, a_dir: Path, b_dir: Path) -> dict[str, object]:
    """Per-image values and their summary for one fused folder."""
    fused, _ = by_stem(list_images(fused_dir))
    pairs = [p for p in find_pairs(a_dir, b_dir).pairs if p.stem in fused]
    if not pairs:
        raise SystemExit(f"error: no fused image of {fused_dir} has both sources in {a_dir} and {b_dir}")
    per = {p.stem: measure(_rgb(fused[p.stem]), _rgb(p.ir), _rgb(p.vi)) for p in pairs}
    casts = [v["cast"] for v in per.values()]
    return {
        "fused": str(fused_dir),
        "images": len(per),
        "cast_mean": float(np.mean(casts)),
        "cast_max": float(np.max(casts)),
        "shift_mean": float(np.mean([v["shift"] for v in per.values()])),
        "range_mean": float(np.mean([v["range"] for v in per.values()])),
        "per_image": per,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("triples", nargs="+", type=Path, help="FUSED A B folders, repeated")
    ap.add_argument("--json", type=Path, default=None, help="write every value here")
    args = ap.parse_args(argv)
    if len(args.triples) % 3:
        ap.error("give folders in threes: FUSED A B")
    results = [study(*args.triples[i : i + 3]) for i in range(0, len(args.triples), 3)]
    print("| fused | images | cast mean (max) | brightness shift | 1-99 % range vs sources |")
    print("|---|--:|--:|--:|--:|")
    for r in results:
        print(
            f"| {r['fused']} | {r['images']} | {r['cast_mean']:.2f} ({r['cast_max']:.2f}) | "
            f"{r['shift_mean']:+.2f} | {r['range_mean']:+.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
