"""Training data sets built from a pairs folder (``ROOT/ir/<stem>.*`` + ``ROOT/vi/<stem>.*``).

Everything here is deterministic: no random crops unless a method asks for them with a seed.
Problems with the folder raise :class:`ivfuse.errors.TrainingError` with one clear line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import InputError, TrainingError
from .pairs import scan_pairs_root


@dataclass(frozen=True)
class TrainPair:
    stem: str
    ir: Path
    vi: Path


def training_pairs(root: str | Path) -> list[TrainPair]:
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
    return sorted((TrainPair(p.stem, Path(p.ir), Path(p.vi)) for p in scan.pairs), key=lambda p: p.stem)


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
