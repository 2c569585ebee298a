"""The fused-feature figures of the papers, for any pair: what a method keeps inside.

    python scripts/feature_figures.py                                  # synthetic night scene
    python scripts/feature_figures.py --ir IR.png --vi VI.png -o features.png
    python scripts/feature_figures.py --methods jcae,defusion,sslwaeie,ifesnet,didfuse

One row per method: the two sources, the fused image, then the method's internal maps as its
paper shows them (each map's own panel title says what it is):

* JCAE, Fig. 6: one channel of the private features of each source and their fusion by Eq. (8),
  and of the common features and their fusion by Eq. (9) (``-p parts=DIR`` of ``ivfuse fuse``);
* DeFusion, Fig. 7-8: the common and the two unique projections (``-p parts=DIR``);
* SSL-WAEIE: the contribution map tau_i of Eq. (7) (``-p contributions=PATH``);
* IFESNet: the two weight maps of its fusion (side maps ``w_ir``, ``w_vi``);
* DIDFuse, Fig. 3: the first channel of the background (conv3) and detail (conv4) maps of each
  source, then of their fusion by the rule of Eq. (5) (``-p parts=DIR``; zero is mid-gray);
* any method with side maps (``Fuser.side_maps()``) the same way.

Without ``--ir/--vi`` the figure is made from the synthetic night scene of ``ivfuse demo`` (no data
set), so the result may be committed (docs/img/feature_maps.png); a figure made from a data set's
images must not be.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

#: method options that make a fuser keep its internal maps (the others keep theirs always)
KEEP_MAPS = {"jcae": "parts", "defusion": "parts", "didfuse": "parts"}


def sources(ir: Path | None, vi: Path | None, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, str]:
    """Two float32 luma planes in [0, 1] and a description."""
    from ivfuse.io import read_image, rgb_to_ycbcr, to_unit

    def to_luma(x: np.ndarray) -> np.ndarray:
        return rgb_to_ycbcr(x)[..., 0] if x.ndim == 3 else x

    if ir is None or vi is None:
        from ivfuse.data.synthetic import night_scene

        s = night_scene(*size, seed=0)
        luma = (s.vi @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
        return s.ir.astype(np.float32), luma, f"synthetic night scene {size[0]}x{size[1]}"
    a, b = to_unit(read_image(ir)), to_unit(read_image(vi))
    return to_luma(a).astype(np.float32), to_luma(b).astype(np.float32), f"{ir.name} + {vi.name}"


def maps_of(method: str, ir: np.ndarray, vi: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The fused plane and the method's side maps for one pair."""
    from ivfuse.methods import registry

    with tempfile.TemporaryDirectory() as tmp:
        opts = {KEEP_MAPS[method]: tmp} if method in KEEP_MAPS else {}
        fuser = registry.create(method, **opts)
        fused = fuser.fuse(ir, vi)
        return fused, {k: np.asarray(v.image, dtype=np.float32) for k, v in fuser.side_maps().items()}


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ir", type=Path, default=None)
    ap.add_argument("--vi", type=Path, default=None)
    ap.add_argument("--methods", default="jcae,defusion,sslwaeie,ifesnet,didfuse")
    ap.add_argument("--size", default="192x256", help="HxW of the synthetic scene")
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/img/feature_maps.png"))
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ivfuse.io import atomic_write_bytes

    h, w = (int(v) for v in args.size.split("x"))
    ir, vi, what = sources(args.ir, args.vi, (h, w))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows = [(m, *maps_of(m, ir, vi)) for m in methods]
    ncol = 3 + max(len(maps) for _, _, maps in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.1 * ncol, 1.9 * len(rows)), squeeze=False)
    for r, (m, fused, maps) in enumerate(rows):
        panels = [("infrared", ir), ("visible", vi), (f"{m}: fused", fused), *maps.items()]
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c < len(panels):
                title, img = panels[c]
                ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(title.replace("_", " "), fontsize=8)
    fig.suptitle(f"Internal maps of the fusion methods ({what})", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, buf.getvalue())
    Image.open(args.out).verify()
    print(f"wrote {args.out} ({len(rows)} methods, {what})")
    return args.out


if __name__ == "__main__":
    main()
