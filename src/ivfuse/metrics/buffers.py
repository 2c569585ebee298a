"""Memory of the metrics: image-sized arrays kept for reuse, and cache-sized row blocks."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = ["BLOCK_PIXELS", "POOL", "ArrayPool", "aligned_row_blocks", "row_blocks"]


class ArrayPool:
    """Image-sized arrays kept between metric calls for reuse.

    Fresh memory from the allocator costs a page fault per 4 KiB page on first touch, and on
    this kind of machine that is a large part of the time of a metric (an image-sized float64
    array per filter); arrays kept here are reused instead. Planes take arrays for their cached
    results (:meth:`Plane.alloc`) and give them back when released; kernels take and give back
    temporaries. At most ``limit`` bytes are kept; :meth:`clear` frees them.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._free: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """An uninitialised C-contiguous array."""
        key = (tuple(shape), np.dtype(dtype).str)
        with self._lock:
            stack = self._free.get(key)
            if stack:
                arr = stack.pop()
                self._bytes -= arr.nbytes
                return arr
        return np.empty(shape, dtype)

    def give(self, *arrays: np.ndarray | None) -> None:
        """Return arrays obtained from :meth:`take` (nothing else may use them afterwards)."""
        with self._lock:
            for arr in arrays:
                if arr is None or self._bytes + arr.nbytes > self.limit:
                    continue
                self._free.setdefault((arr.shape, arr.dtype.str), []).append(arr)
                self._bytes += arr.nbytes

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._bytes = 0


#: the pool of the metrics (128 MiB: the working set of the 13 VIFB metrics of a 0.3-megapixel
#: RGB image is about half of it)
POOL = ArrayPool(128 << 20)

#: element-wise kernels run over blocks of rows of about this many pixels: their temporaries
#: then stay in the CPU caches, which makes chains of numpy operations 2-3x faster than on whole
#: images (and allocates no image-sized temporaries); 2^15..2^17 measured alike, 2^16 best
BLOCK_PIXELS = 1 << 16


def row_blocks(start: int, stop: int, width: int) -> list[slice]:
    """Slices of rows ``start..stop`` in blocks of about :data:`BLOCK_PIXELS` pixels."""
    step = max(4, BLOCK_PIXELS // max(width, 1))
    return [slice(r, min(r + step, stop)) for r in range(start, stop, step)]


def aligned_row_blocks(m: int, width: int, b: int) -> list[slice]:
    """Like :func:`row_blocks`, with blocks starting at multiples of ``b`` rows."""
    step = max(b, BLOCK_PIXELS // max(width, 1) // b * b)
    return [slice(r, min(r + step, m)) for r in range(0, m, step)]
