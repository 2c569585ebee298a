"""Image input/output: decode, validate, map to the working range, YCbCr split/merge, atomic writes.

Working range
    Methods see float32 arrays in [0, 1]. :func:`to_unit` maps stored values there:

    * ``uint8`` -> ``value / 255``.
    * ``uint16`` -> a **percentile stretch** by default: the 0.5th and 99.5th percentiles of the
      image (all channels together, so colours keep their balance) go to 0 and 1, values outside
      are clipped. Raw thermal counts typically fill only a narrow band of the 16-bit range
      (e.g. 7,200-8,400 of 65,535); a plain ``/ 65535`` would give an almost black, flat image.
      The percentiles ignore hot/cold outlier pixels, which a min-max stretch would not.
      ``stretch16=False`` switches this off and uses ``value / 65535``.
    * float arrays are taken as already in [0, 1] (clipped).

Colour
    A colour visible image is fused on its luma: :func:`rgb_to_ycbcr` gives Y, Cb, Cr
    (ITU-R BT.601 full range, as JPEG uses), the method fuses Y with the infrared image, and
    :func:`ycbcr_to_rgb` puts the visible chroma back.

Writing
    :func:`write_image` writes 8-bit (default) or 16-bit PNG/TIFF, gray or RGB. Every file ivfuse
    writes (images, JSON, CSV, HTML, figures, checkpoints, safetensors) goes through
    :func:`atomic_write`: a temporary file in the target folder and an atomic ``os.replace``, so a
    reader never sees a half-written file and a failure leaves nothing behind.
    :func:`same_file` tells whether two paths name one file (symlinks and relative paths resolved),
    which the CLI uses to refuse an output that is one of its inputs.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InputError

#: File extensions ivfuse reads (lowercase).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# ITU-R BT.601 full-range (JFIF) RGB -> YCbCr, rows Y, Cb, Cr; offsets 0, 0.5, 0.5.
_RGB2YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ],
    dtype=np.float64,
)
_YCBCR2RGB = np.linalg.inv(_RGB2YCBCR)
_OFFSET = np.array([0.0, 0.5, 0.5])


class ColourInfraredWarning(UserWarning):
    """An infrared image had colour; it was converted to gray."""


# --------------------------------------------------------------------------------------------
# reading


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to an array of its stored values.

    Returns ``uint8`` or ``uint16`` (or float32 for float TIFFs), shaped (H, W) for gray and
    (H, W, 3) for colour. Alpha channels are dropped; palette images are expanded; 1-bit images
    become 0/255. Raises :class:`InputError` naming the file for a missing, empty, unreadable
    or unsupported file.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not an image file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file (0 bytes)")
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            arr = _read_tiff(p)
        else:
            arr = _read_pil(p)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{p}: cannot decode image ({_short(exc)})") from None
    if arr.size == 0 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{p}: empty image ({arr.shape[1] if arr.ndim > 1 else 0}x{arr.shape[0]})")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{p}: image contains NaN or infinite values")
    return arr


def _short(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


def _is_png16_colour(p: Path) -> bool:
    with open(p, "rb") as f:
        head = f.read(26)
    # PNG signature (8) + IHDR length/tag (8) + width, height (8) + bit depth, colour type
    return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[24] == 16 and head[25] in (2, 6)


def _read_pil(p: Path) -> np.ndarray:
    if _is_png16_colour(p):  # Pillow would truncate 16-bit colour PNG to 8 bits
        import imagecodecs

        arr = imagecodecs.png_decode(p.read_bytes())
        return np.ascontiguousarray(arr[..., :3])
    with Image.open(p) as im:
        im.load()  # force full decode: truncated files fail here, not later
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            mode = im.mode
        if mode in ("1", "L"):
            arr = np.asarray(im.convert("L"), dtype=np.uint8)
        elif mode == "LA":
            arr = np.asarray(im.getchannel("L"), dtype=np.uint8)
        elif mode in ("RGB", "RGBA", "CMYK", "YCbCr"):
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        elif mode.startswith("I;16") or mode == "I":
            arr = np.asarray(im)
            if arr.min() < 0 or arr.max() > 65535:
                raise InputError(f"{p}: 32-bit integer image outside the 16-bit range")
            arr = arr.astype(np.uint16)
        elif mode == "F":
            arr = np.asarray(im, dtype=np.float32)
        else:
            raise InputError(f"{p}: unsupported image mode {mode!r}")
    return np.ascontiguousarray(arr)


def _read_tiff(p: Path) -> np.ndarray:
    import tifffile

    try:
        arr = tifffile.imread(p)
    except Exception as exc:  # tifffile raises a variety of its own errors
        raise InputError(f"{p}: cannot decode TIFF ({_short(exc)})") from None
    arr = np.squeeze(arr)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[-1] == 2:  # gray + alpha
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise InputError(f"{p}: unsupported TIFF layout {arr.shape} (expected HxW or HxWx3)")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
    elif arr.dtype not in (np.uint8, np.uint16):
        if arr.min() < 0 or arr.max() > 65535:
            raise InputError(f"{p}: {arr.dtype} TIFF outside the 16-bit range")
        arr = arr.astype(np.uint16)
    return np.ascontiguousarray(arr)


def bit_depth(arr: np.ndarray) -> int:
    """Stored bit depth of an array: 8 for uint8, 16 for uint16, 32 for float."""
    return {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(arr.dtype, 32)


def to_unit(
    arr: np.ndarray, *, stretch16: bool = True, low: float = 0.5, high: float = 99.5, name: str = "image"
) -> np.ndarray:
    """Map stored values to float32 in [0, 1] (see the module docstring for the rules); ``name``
    (a file name, or "infrared array") starts the message of a NaN/infinite-value error."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255)
    if arr.dtype == np.uint16:
        x = arr.astype(np.float32)
        if not stretch16:
            return x / np.float32(65535)
        lo, hi = np.percentile(x, [low, high])
        if hi - lo < 1:  # (nearly) constant image: keep its absolute level
            return x / np.float32(65535)
        return np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0, 1).astype(np.float32)
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype.kind in "iu":
        raise InputError(f"unsupported integer dtype {arr.dtype}; use uint8 or uint16")
    x = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    return np.clip(x, 0, 1)


def from_unit(x: np.ndarray, bits: int = 8) -> np.ndarray:
    """float [0, 1] -> uint8 (``bits=8``) or uint16 (``bits=16``), rounded half up."""
    if bits not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, got {bits}")
    peak = 255 if bits == 8 else 65535
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.floor(np.clip(x, 0, 1) * peak + 0.5).astype(dtype)


# --------------------------------------------------------------------------------------------
# colour


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W, 3) Y, Cb, Cr in [0, 1] (BT.601 full range)."""
    return (rgb.astype(np.float32) @ _RGB2YCBCR.T.astype(np.float32)) + _OFFSET.astype(np.float32)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`; the result is clipped to [0, 1]."""
    rgb = (ycc.astype(np.float32) - _OFFSET.astype(np.float32)) @ _YCBCR2RGB.T.astype(np.float32)
    return np.clip(rgb, 0, 1)


def is_gray_rgb(arr: np.ndarray) -> bool:
    """True for an (H, W, 3) array whose three channels are equal (gray stored as RGB)."""
    return arr.ndim == 3 and bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())


def to_gray(arr: np.ndarray, *, name: str = "infrared image", warn: bool = True) -> np.ndarray:
    """Reduce an image to one channel.

    Gray-stored-as-RGB (equal channels) is reduced silently; a real colour image is converted
    to its luma with a :class:`ColourInfraredWarning` (when ``warn``).
    """
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise InputError(f"{name}: expected HxW or HxWx3, got shape {arr.shape}")
    if is_gray_rgb(arr):
        return arr[..., 0]
    if warn:
        warnings.warn(f"{name} has colour; converted to gray (luma)", ColourInfraredWarning, stacklevel=2)
    y = arr.astype(np.float32) @ _RGB2YCBCR[0].astype(np.float32)
    if arr.dtype in (np.uint8, np.uint16):
        return np.floor(y + 0.5).astype(arr.dtype)
    return y


# --------------------------------------------------------------------------------------------
# writing


def write_image(
    path: str | os.PathLike, img: np.ndarray, *, bit_depth: int = 8, png_level: int | None = None
) -> Path:
    """Write a float [0, 1] (or uint8/uint16) gray or RGB image atomically.

    The format follows the extension (.png, .jpg/.jpeg, .bmp, .tif/.tiff). 16-bit output needs
    PNG or TIFF. The file appears complete or not at all (temporary file + ``os.replace``).
    ``png_level`` (0-9) sets the zlib level of 8-bit PNG files (default: Pillow's 6; 1 writes
    about 6x faster and 15 % larger files, what caches want).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise InputError(f"{p}: unsupported output format {ext!r}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    if bit_depth == 16 and ext not in (".png", ".tif", ".tiff"):
        raise InputError(f"{p}: 16-bit output needs .png or .tif, not {ext}")
    if img.dtype in (np.uint8, np.uint16):
        data = (
            img
            if bit_depth == (8 if img.dtype == np.uint8 else 16)
            else from_unit(to_unit(img, stretch16=False), bit_depth)
        )
    else:
        data = from_unit(img, bit_depth)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] != 3):
        raise InputError(f"{p}: cannot write array of shape {img.shape}")
    with atomic_write(p) as tmp:
        _encode(tmp, data, ext, png_level)
    return p


def _encode(tmp: Path, data: np.ndarray, ext: str, png_level: int | None = None) -> None:
    if ext in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(tmp, data, photometric="rgb" if data.ndim == 3 else "minisblack")
    elif data.dtype == np.uint16:  # Pillow cannot write 16-bit colour PNG
        import imagecodecs

        tmp.write_bytes(imagecodecs.png_encode(data))
    else:
        fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}[ext]
        kw: dict[str, int] = {"quality": 95} if fmt == "JPEG" else {}
        if fmt == "PNG" and png_level is not None:
            kw["compress_level"] = int(png_level)
        Image.fromarray(data).save(tmp, format=fmt, **kw)


@contextmanager
def atomic_write(path: str | os.PathLike, *, durable: bool = False) -> Iterator[Path]:
    """Write ``path`` all at once: yields a temporary path in the same folder to write to.

    On a clean exit the temporary file is given the usual file mode (``0o666`` less the umask) and
    renamed over ``path`` with ``os.replace`` (atomic on one file system); on an error it is removed
    and ``path`` is left as it was. ``durable`` flushes it to disk (``fsync``) before the rename
    (checkpoints). The parent folder is created when missing. The temporary name is
    ``.<name>.<random>.tmp``: hidden, and never taken for an image by pair discovery::

        with atomic_write("out/fig.png") as tmp:
            fig.savefig(tmp, format="png")
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes | Callable[[IO[bytes]], object], *, durable: bool = False
) -> Path:
    """Write ``data`` (bytes, or a function that writes to a binary file object, e.g.
    ``lambda f: torch.save(obj, f)``) to ``path`` through :func:`atomic_write`."""
    p = Path(path)
    with atomic_write(p, durable=durable) as tmp, open(tmp, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data)
    return p


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_write`."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name one file or folder: the same inode when both exist (hard and
    symbolic links, relative paths), else the same fully resolved path."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()
