"""Print every registered metric of every profile, with full precision, on fixed images.

    python scripts/metrics_fingerprint.py [--data DIR] > values.txt

A refactoring of :mod:`ivfuse.metrics` must leave this output unchanged (``diff`` it before and
after). The images are deterministic synthetic ones (gray, RGB with a gray infrared image,
float, uint16, with a ground truth for the reference metrics), evaluated with both filter
implementations (OpenCV and SciPy), plus, when ``--data`` names a folder holding VIFB's
``fused/``, ``ir/`` and ``vi/`` images (the ``kettle`` triple), that real triple. The last line
is a SHA-256 of all the lines before it.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ivfuse import metrics as M


def synthetic() -> Iterator[tuple[str, dict]]:
    rng = np.random.default_rng(20261204)
    m, n = 96, 128
    yy, xx = np.mgrid[0:m, 0:n]
    base = 127.5 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    ir = np.clip(base + rng.normal(0, 25, (m, n)), 0, 255).astype(np.uint8)
    vi_rgb = base[..., None] * [0.9, 1.0, 1.1] + rng.normal(0, 20, (m, n, 3))
    vi_rgb = np.clip(vi_rgb, 0, 255).astype(np.uint8)
    vi = M.rgb2gray(vi_rgb)
    f_gray = np.clip(0.5 * ir + 0.5 * vi + rng.normal(0, 5, (m, n)), 0, 255).astype(np.uint8)
    f_rgb = np.clip(0.5 * vi_rgb + 0.5 * ir[..., None], 0, 255).astype(np.uint8)
    ref = np.clip(base, 0, 255).astype(np.uint8)
    yield "gray_u8", {"fused": f_gray, "ir": ir, "vi": vi, "reference": ref}
    yield "rgb_u8_grayir", {"fused": f_rgb, "ir": ir, "vi": vi_rgb, "reference": np.dstack([ref] * 3)}
    f_float = np.clip(0.45 * ir.astype(np.float64) + 0.55 * vi + rng.uniform(-3, 3, (m, n)), 0, 255)
    yield "gray_float", {"fused": f_float, "ir": ir.astype(np.float64), "vi": vi, "reference": ref}
    f16, ir16 = f_gray.astype(np.uint16) * 257 + 3, ir.astype(np.uint16) * 257
    yield "gray_u16", {"fused": f16, "ir": ir16, "vi": vi}


def real(data: Path) -> Iterator[tuple[str, dict]]:
    from ivfuse.io import read_image

    if (data / "fused" / "kettle_GFF.jpg").is_file():
        yield (
            "vifb_kettle_GFF",
            {
                "fused": read_image(data / "fused" / "kettle_GFF.jpg"),
                "ir": read_image(data / "ir" / "kettle.jpg"),
                "vi": read_image(data / "vi" / "kettle.jpg"),
            },
        )


def set_impl(name: str) -> None:
    """'opencv' or 'scipy' filters (under the name the package has)."""
    if hasattr(M, "set_filter_impl"):
        M.set_filter_impl(name)
    else:  # the name before issue 24
        M.use_backend({"opencv": "fast", "scipy": "plain"}[name])


def lines(data: Path | None) -> Iterator[str]:
    cases = list(synthetic())
    real_cases = list(real(data)) if data is not None else []
    for impl, todo in (("opencv", cases + real_cases), ("scipy", cases)):
        set_impl(impl)
        try:
            for label, imgs in todo:
                has_ref = "reference" in imgs
                for prof in M.PROFILES:
                    names = [m.name for m in M.list_metrics(prof) if m.needs != "reference" or has_ref]
                    kw = {"reference": imgs["reference"]} if has_ref else {}
                    vals = M.evaluate(imgs["fused"], imgs["ir"], imgs["vi"], names, prof, **kw)
                    for name, v in vals.items():
                        yield f"{impl} {label} {prof} {name} {float(v).hex()} {float(v)!r}"
        finally:
            set_impl("opencv")
            M.clear_buffers()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="folder with VIFB's fused/, ir/ and vi/ images")
    args = ap.parse_args()
    digest = hashlib.sha256()
    for line in lines(args.data):
        print(line)
        digest.update(line.encode() + b"\n")
    print(f"sha256 {digest.hexdigest()}")


if __name__ == "__main__":
    main()
