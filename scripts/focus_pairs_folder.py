"""Write a folder of synthetic gray multi-focus pairs (``OUT/ir``, ``OUT/vi``) made from natural images.

    python scripts/focus_pairs_folder.py OUT --images DATA/natural/BSDS500 [--per-image 3]
        [--size 360x280] [--sigma 1 3] [--seed 0] [--splits train val test]

JCAE (Zhang et al., Sec. 1 and 3.1) trains on "more than 1400 pairs of grayscale images of the
IFCNN dataset", resized to 360 x 280. IFCNN's data set (Zhang et al., Information Fusion 2020,
Sec. 3.3) is multi-focus: each of NYU-D2's 1,449 indoor photographs blurred by Gaussian filters
in the regions its depth map puts in the foreground or the background, so that the two images of a
pair are sharp in complementary regions. We have neither NYU-D2 nor its depth maps; this script
builds the closest set we can from any natural photographs:

* each image in gray (PIL 'L'), turned to landscape when it is portrait (NYU-D2 is landscape, and
  a 360 x 280 resize of a portrait image would squash it);
* ``--per-image`` pairs per image, each with its own smooth random region mask (the depth map's
  stand-in) and Gaussian sigma drawn from ``--sigma`` at the image's own resolution
  (:func:`ivfuse.data.synthetic_pairs.focus_pair`, the pairs ivfuse's IFCNN trains on);
* both images then resized to ``--size`` (bicubic, aspect not kept, as the JCAE paper resizes)
  and written as 8-bit PNG: ``ir/<stem>_<k>.png`` is the first image of the pair, ``vi/`` the
  second (``ivfuse train jcae --data OUT`` reads the folder like any pairs folder);
* ``OUT/dataset.json`` records these settings, and the trainer copies it into the weights card
  (``data.about``).

Every random draw comes from torch's generator seeded by ``--seed``, so the folder is the same on
every run. With BSDS500's 500 images (train, val and test: JCAE is scored on TNO, so none of them
leaks) and 3 pairs each, the folder holds 1,500 pairs, the paper's "more than 1400".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ivfuse import io
from ivfuse.data.natural import natural_images
from ivfuse.data.synthetic_pairs import focus_pair
from ivfuse.train.trainer import DATASET_ABOUT


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def write_pairs(
    out: Path,
    images: Path,
    per_image: int = 3,
    size: tuple[int, int] = (360, 280),
    sigma: tuple[float, float] = (1.0, 3.0),
    seed: int = 0,
    splits: tuple[str, ...] | None = None,
) -> int:
    """Write the pairs; return how many. Refuses an ``out`` that already holds ``ir/`` or ``vi/``."""
    if (out / "ir").exists() or (out / "vi").exists():
        raise SystemExit(f"error: {out} already holds ir/ or vi/: choose an empty folder")
    files = natural_images(images, splits)
    torch.manual_seed(seed)
    w, h = size
    n = 0
    for path in files:
        with Image.open(path) as im:
            gray = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        if gray.shape[0] > gray.shape[1]:
            gray = np.ascontiguousarray(gray.T[:, ::-1])  # portrait -> landscape (90 degrees)
        x = torch.from_numpy(np.ascontiguousarray(gray))[None]
        for k in range(per_image):
            a, b = focus_pair(x, sigma)
            ab = F.interpolate(torch.stack([a, b]), size=(h, w), mode="bicubic", align_corners=False)
            ab = ab.clamp(0.0, 1.0).numpy()
            io.write_image(out / "ir" / f"{path.stem}_{k}.png", ab[0, 0])
            io.write_image(out / "vi" / f"{path.stem}_{k}.png", ab[1, 0])
            n += 1
    about = {
        "kind": "synthetic multi-focus pairs (ir/ = first image, vi/ = second)",
        "made_by": "scripts/focus_pairs_folder.py",
        "images": Path(images).name,
        "image_count": len(files),
        "per_image": per_image,
        "size": [w, h],
        "sigma": list(sigma),
        "seed": seed,
        "splits": list(splits) if splits else None,
        "pairs": n,
        "stands_in_for": "the IFCNN data set (NYU-D2 photographs blurred by depth), JCAE Sec. 1",
    }
    io.atomic_write_text(out / DATASET_ABOUT, json.dumps(about, indent=1) + "\n")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--images", type=Path, required=True, help="folder of natural images")
    ap.add_argument("--per-image", type=int, default=3)
    ap.add_argument("--size", type=_size, default=(360, 280), help="WxH of the written pairs")
    ap.add_argument("--sigma", type=float, nargs=2, default=(1.0, 3.0), metavar=("LO", "HI"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--splits",
        nargs="*",
        default=None,
        help="only these splits of a <name>_splits.csv (default: all images)",
    )
    args = ap.parse_args()
    n = write_pairs(
        args.out,
        args.images,
        args.per_image,
        args.size,
        tuple(args.sigma),
        args.seed,
        tuple(args.splits) if args.splits else None,
    )
    print(f"{n} pairs -> {args.out}/ir, {args.out}/vi")


if __name__ == "__main__":
    main()
