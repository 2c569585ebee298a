"""Training data sets built from a pairs folder (``ROOT/ir/<stem>.*`` + ``ROOT/vi/<stem>.*``).

Everything here is deterministic: no random crops unless a method asks for them with a seed.
Problems with the folder raise :class:`ivfuse.errors.TrainingError` with one clear line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import InputError, TrainingError
from .pairs import Pair, scan_pairs_root


def training_pairs(root: str | Path) -> list[Pair]:
    """All pairs of a training folder (``ir/`` + ``vi/``, matched by stem), sorted by stem.

    Refuses a missing, empty or unpaired folder: an image without a partner is an error here,
    because silently training on part of a data set makes results irreproducible.
    """
    root = Path(root)
    if not root.is_dir():
        raise TrainingError(f"data folder {root} does not exist or is not a folder")
    try:
        scan = scan_pairs_root(root)
    except InputError as e:
        raise TrainingError(f"data folder {e}") from e
    problems = scan.problems()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TrainingError(f"data folder {root} is not cleanly paired: {problems[0]}{more}")
    if not scan.pairs:
        raise TrainingError(f"data folder {root} holds no image pairs (ir/ and vi/ are empty)")
    return sorted(scan.pairs, key=lambda p: p.stem)


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a centred ``size x size`` crop (torchvision's rounding)."""
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return left, top, left + size, top + size


def load_gray_crop(path: Path, crop: int | None) -> np.ndarray:
    """Centre-crop (no resize) then convert to 8-bit luma with PIL 'L'; float32 in [0, 1]."""
    try:
        with Image.open(path) as im:
            im.load()
            if crop is not None:
                if im.width < crop or im.height < crop:
                    raise TrainingError(
                        f"{path}: image is {im.width}x{im.height}, smaller than the {crop}x{crop} crop"
                    )
                im = im.crop(center_crop_box(im.width, im.height, crop))
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
            else:
                arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except TrainingError:
        raise
    except (OSError, ValueError) as e:
        raise TrainingError(f"{path}: cannot read image ({e})") from e
    return np.ascontiguousarray(arr, dtype=np.float32)


def _decoded_pairs(pairs: list[Pair]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each pair's infrared and visible image as full-size 8-bit luma (PIL 'L'); sizes must match."""
    irs, vis = [], []
    for p in pairs:
        ir = np.round(load_gray_crop(p.ir, None) * 255).astype(np.uint8)
        vi = np.round(load_gray_crop(p.vi, None) * 255).astype(np.uint8)
        if ir.shape != vi.shape:
            raise TrainingError(f"pair {p.stem}: infrared {ir.shape} and visible {vi.shape} sizes differ")
        irs.append(ir)
        vis.append(vi)
    return irs, vis


class CenterCropPairs(Dataset):
    """Pairs as ``{"ir": (1, c, c), "vi": (1, c, c)}`` float tensors in [0, 1].

    Each image is centre-cropped to ``crop x crop`` from its original size (no resize), turned
    to gray with PIL's 'L' luma and scaled to [0, 1]; no normalisation, no augmentation. This is
    DIDFuse's training pipeline (official code: CenterCrop -> Grayscale -> ToTensor). The whole
    set is decoded once at construction (180 crops of 128 x 128 are 12 MB).
    """

    def __init__(self, root: str | Path, crop: int = 128):
        self.root = Path(root)
        self.crop = int(crop)
        self.pairs = training_pairs(self.root)
        self.ir = torch.from_numpy(np.stack([load_gray_crop(p.ir, self.crop) for p in self.pairs]))
        self.vi = torch.from_numpy(np.stack([load_gray_crop(p.vi, self.crop) for p in self.pairs]))
        self.ir = self.ir.unsqueeze(1)
        self.vi = self.vi.unsqueeze(1)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"ir": self.ir[i], "vi": self.vi[i]}


class RandomCropPairs(Dataset):
    """Pairs as ``{"ir": (1, c, c), "vi": (1, c, c)}``: a random aligned crop, optionally flipped.

    Each pair is decoded once at construction (full size, PIL 'L' luma, kept as 8-bit). Every
    ``__getitem__`` draws the crop's top-left corner (uniform over the valid positions) and a
    horizontal flip (probability 1/2) from torch's global generator, the same for infrared and
    visible, so the pair stays registered. The trainer seeds that generator and stores its state
    in every checkpoint: a run resumed from a checkpoint draws the same crops as an unbroken run.
    """

    def __init__(self, root: str | Path, crop: int = 128, flip: bool = True):
        self.root = Path(root)
        self.crop = int(crop)
        self.flip = bool(flip)
        self.pairs = training_pairs(self.root)
        irs, vis = _decoded_pairs(self.pairs)
        for p, ir in zip(self.pairs, irs, strict=True):
            if min(ir.shape) < self.crop:
                raise TrainingError(
                    f"{p.ir}: image is {ir.shape[1]}x{ir.shape[0]}, smaller than the {crop}x{crop} crop"
                )
        self.ir = [torch.from_numpy(x) for x in irs]
        self.vi = [torch.from_numpy(x) for x in vis]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        h, w = self.ir[i].shape
        c = self.crop
        top = int(torch.randint(0, h - c + 1, (1,)))
        left = int(torch.randint(0, w - c + 1, (1,)))
        flip = self.flip and bool(torch.randint(0, 2, (1,)))
        out = {}
        for k, img in (("ir", self.ir[i]), ("vi", self.vi[i])):
            x = img[top : top + c, left : left + c]
            if flip:
                x = x.flip(-1)
            out[k] = x.to(torch.float32).div(255.0).unsqueeze(0).contiguous()
        return out


class ResizedPairs(Dataset):
    """Whole pairs resized to one size, as ``{"ir": (1, h, w), "vi": (1, h, w)}``, optionally flipped.

    Each pair is decoded once at construction (PIL 'L' luma), resized to ``size`` = (width, height)
    with PIL's bicubic filter (the aspect ratio is not kept: papers that train on a fixed size, e.g.
    JCAE's 360 x 280, resize so) and kept as 8-bit. Every ``__getitem__`` draws a horizontal flip
    (probability 1/2) from torch's global generator, the same for infrared and visible.
    """

    def __init__(self, root: str | Path, size: tuple[int, int] | list[int], flip: bool = True):
        self.root = Path(root)
        w, h = (int(v) for v in size)
        if w < 1 or h < 1:
            raise TrainingError(f"resize must be two positive sizes (width, height), got {list(size)}")
        self.size = (w, h)
        self.flip = bool(flip)
        self.pairs = training_pairs(self.root)
        irs, vis = _decoded_pairs(self.pairs)

        def resized(img: np.ndarray) -> torch.Tensor:
            out = Image.fromarray(img).resize(self.size, Image.Resampling.BICUBIC)
            return torch.from_numpy(np.asarray(out, dtype=np.uint8).copy())

        self.ir = [resized(x) for x in irs]
        self.vi = [resized(x) for x in vis]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        flip = self.flip and bool(torch.randint(0, 2, (1,)))
        out = {}
        for k, img in (("ir", self.ir[i]), ("vi", self.vi[i])):
            x = img.flip(-1) if flip else img
            out[k] = x.to(torch.float32).div(255.0).unsqueeze(0).contiguous()
        return out
