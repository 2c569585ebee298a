"""Natural (single, unpaired) images for self-supervised pretext training, and their augmentations.

:func:`natural_images` lists a flat folder of images, optionally restricted to some splits of a
``<folder>_splits.csv`` beside it (``file,split`` rows, e.g. ``bsds500_splits.csv`` beside the 500
images of BSDS500, the Berkeley Segmentation Data Set; see docs/methods/defusion.md).
:func:`color_jitter` and :func:`random_resized_crop` are torchvision's ``ColorJitter`` and
``RandomResizedCrop`` re-implemented on tensors (torchvision is not a dependency), drawing from
torch's global generator so that a seeded trainer reproduces them and a resumed run continues them.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import TrainingError
from ..io import IMAGE_EXTENSIONS

#: ITU-R 601-2 luma, as torchvision's ``rgb_to_grayscale``
_GRAY = (0.2989, 0.587, 0.114)


def natural_images(root: str | Path, splits: tuple[str, ...] | None = None) -> list[Path]:
    """Images of a natural-image folder, sorted by path.

    With ``splits`` (e.g. ``("train", "test")`` of BSDS500): when
    ``<root.parent>/<root.name lower-case>_splits.csv`` exists (``file,split`` rows, ``file``
    relative to ``root.parent``), only the files it assigns to those splits; else, when ``root``
    has sub-folders of those names, their images. Otherwise (and without ``splits``) every image
    directly inside ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise TrainingError(f"data folder {root} does not exist or is not a folder")
    table = root.parent / f"{root.name.lower()}_splits.csv"
    if splits and table.is_file():
        wanted = set(splits)
        with table.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("split") in wanted]
        files = sorted(root.parent / r["file"] for r in rows)
        missing = [p for p in files if not p.is_file()]
        if missing:
            raise TrainingError(f"{table} lists {missing[0]}, which does not exist")
    elif splits and all((root / s).is_dir() for s in splits):
        files = sorted(p for s in splits for p in _images_in(root / s))
    else:
        files = _images_in(root)
    if not files:
        raise TrainingError(f"data folder {root} holds no images")
    return files


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_rgb_uint8(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 tensor of an image converted to RGB by PIL."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise TrainingError(f"{path}: cannot read image ({e})") from e
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _gray(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(-3)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(-3)


def _uniform(lo: float, hi: float) -> float:
    return float(torch.empty(1).uniform_(lo, hi))


def color_jitter(
    img: torch.Tensor,
    brightness: tuple[float, float] = (0.1, 1.0),
    contrast: tuple[float, float] = (0.1, 1.0),
    saturation: tuple[float, float] = (0.1, 1.0),
) -> torch.Tensor:
    """torchvision ``ColorJitter(brightness, contrast, saturation, hue=0)`` on a (3, H, W) float image
    in [0, 1]: the order of the ops is ``torch.randperm(4)`` (hue skipped), then one factor per op
    drawn uniformly from its range, then each op blends with its reference and clamps to [0, 1]:
    brightness with black, contrast with the mean gray level of the image, saturation with the
    gray image (ITU-R 601-2 luma)."""
    order = torch.randperm(4).tolist()
    b = _uniform(*brightness)
    c = _uniform(*contrast)
    s = _uniform(*saturation)
    for op in order:
        if op == 0:
            img = (img * b).clamp(0, 1)
        elif op == 1:
            mean = _gray(img).mean(dim=(-3, -2, -1), keepdim=True)
            img = (c * img + (1 - c) * mean).clamp(0, 1)
        elif op == 2:
            img = (s * img + (1 - s) * _gray(img)).clamp(0, 1)
    return img


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(top, left, h, w) as torchvision's ``RandomResizedCrop.get_params``: up to 10 draws of an area
    fraction in ``scale`` and a log-uniform aspect ratio in ``ratio``; else a centre crop with the
    aspect ratio clamped to ``ratio``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(*scale)
        aspect = math.exp(_uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,)))
            left = int(torch.randint(0, width - w + 1, (1,)))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """A random crop (:func:`random_resized_crop_box`) of a (3, H, W) float image resized to
    ``size x size`` (bilinear, antialiased, as torchvision's tensor default)."""
    top, left, h, w = random_resized_crop_box(img.shape[-2], img.shape[-1])
    crop = img[None, :, top : top + h, left : left + w]
    out = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out[0].clamp(0, 1)
