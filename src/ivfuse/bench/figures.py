"""Benchmark figures (matplotlib, Agg backend): a comparison grid per data set and a rank chart.

* ``figures/<dataset>.png``: a few pairs (rows) x first source, second source, every method
  (columns). Each row has one zoomed inset, placed where the methods' outputs differ most (the
  largest local standard deviation across the fused images), drawn at the same place in every
  panel of the row so the differences can be compared.
* ``figures/<dataset>_ranks.png``: the average rank of every method (lower is better).

Figures made from a user's data stay in the results folder; nothing here ships images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import io
from .runner import folder_name


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def choose_rows(stems: list[str], n: int = 3) -> list[str]:
    """``n`` stems spread evenly over the data set (first, middle, last for n = 3)."""
    if len(stems) <= n:
        return list(stems)
    idx = np.linspace(0, len(stems) - 1, n).round().astype(int)
    return [stems[i] for i in dict.fromkeys(idx.tolist())]


def _luma(img: np.ndarray) -> np.ndarray:
    x = io.to_unit(img, stretch16=False)
    if x.ndim == 3:
        x = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    return x.astype(np.float32)


def zoom_box(fused: list[np.ndarray], frac: float = 0.22) -> tuple[int, int, int]:
    """(top, left, size) of the square window where the fused images' details differ most (the
    largest mean over the window of the per-pixel std of their gradient magnitudes)."""
    from scipy.ndimage import uniform_filter

    # gradient magnitudes, so a plain brightness offset between methods does not win over detail
    grads = np.stack([np.hypot(*np.gradient(_luma(f))) for f in fused])
    h, w = grads.shape[1:]
    size = max(8, int(min(h, w) * frac))
    spread = grads.std(axis=0) if len(fused) > 1 else grads[0]
    score = uniform_filter(spread.astype(np.float64), size=size, mode="constant")
    half = size // 2
    inner = score[half : h - (size - half) + 1, half : w - (size - half) + 1]
    if inner.size == 0:
        return 0, 0, min(h, w)
    i, j = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(i), int(j), size


def comparison_grid(
    rows: list[tuple[str, list[tuple[str, np.ndarray]]]], path: Path, title: str = ""
) -> Path:
    """``rows``: (label, [(column title, image), ...]) with the two sources first. Writes a PNG."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    ncols = max(len(r[1]) for r in rows)
    h0, w0 = rows[0][1][0][1].shape[:2]
    cell_w = 2.3
    cell_h = cell_w * h0 / w0 + 0.3
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(cell_w * ncols, cell_h * len(rows) + 0.4), squeeze=False
    )
    for r, (label, panels) in enumerate(rows):
        top, left, size = zoom_box([img for _, img in panels[2:]] or [panels[1][1]])
        ih, iw = panels[0][1].shape[:2]
        # the inset goes to the corner away from the zoomed window
        inset_x = 0.0 if left + size / 2 > iw / 2 else 0.58
        inset_y = 0.58 if top + size / 2 > ih / 2 else 0.0
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(panels):
                ax.axis("off")
                continue
            name, img = panels[c]
            show = io.to_unit(img, stretch16=False)
            kw = {"cmap": "gray", "vmin": 0, "vmax": 1} if show.ndim == 2 else {}
            ax.imshow(show, interpolation="antialiased", **kw)
            ax.add_patch(Rectangle((left, top), size, size, fill=False, edgecolor="#ff3b30", linewidth=1))
            inset = ax.inset_axes([inset_x, inset_y, 0.42, 0.42])
            inset.imshow(show[top : top + size, left : left + size], interpolation="nearest", **kw)
            inset.set_xticks([])
            inset.set_yticks([])
            for spine in inset.spines.values():
                spine.set_edgecolor("#ff3b30")
            ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return path


def _save(fig, path: Path) -> None:
    """Save a matplotlib figure atomically (format from the extension), then close it."""
    try:
        with io.atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    finally:
        _plt().close(fig)


def rank_chart(ranks: dict[str, float], path: Path, title: str = "") -> Path:
    """Horizontal bars of average ranks, best (lowest) on top."""
    plt = _plt()
    items = sorted(((m, r) for m, r in ranks.items() if r is not None), key=lambda x: x[1])
    fig, ax = plt.subplots(figsize=(5.5, 0.35 * len(items) + 1.0))
    names = [m for m, _ in items][::-1]
    vals = [r for _, r in items][::-1]
    ax.barh(names, vals, color="#4c78a8")
    for y, v in enumerate(vals):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlabel("average rank over the metrics (lower is better)")
    ax.set_xlim(0, max(vals + [1]) * 1.15)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return path


def dataset_figures(results: dict[str, Any], out: Path, n_rows: int = 3) -> dict[str, list[str]]:
    """Write the grid and the rank chart of every data set; returns dataset -> relative paths."""
    made: dict[str, list[str]] = {}
    for d in results["datasets"]:
        ok = [m for m in d["methods"] if m["status"] == "ok" and m["fused"]]
        if not ok:
            continue
        loc = {m["method"]: out / "fused" / d["name"] / folder_name(m["method"]) for m in ok}
        first, second = d["sources"]
        pairs = {p["stem"]: p for p in d.get("pair_files", [])}
        stems = [s for s in pairs if all((loc[m["method"]] / f"{s}.png").is_file() for m in ok)]
        rows = []
        for stem in choose_rows(stems, n_rows):
            p = pairs[stem]
            panels = [
                (first.upper(), io.read_image(p["first"])),
                (second.upper(), io.read_image(p["second"])),
            ]
            panels += [(m["method"], io.read_image(loc[m["method"]] / f"{stem}.png")) for m in ok]
            rows.append((stem, panels))
        files = []
        if rows:
            grid = comparison_grid(
                rows, out / "figures" / f"{d['name']}.png", f"{d['name']}: {d['description']}"
            )
            files.append(str(grid.relative_to(out)))
        ranks = {m["method"]: m["avg_rank"] for m in ok if m["avg_rank"] is not None}
        if ranks:
            chart = rank_chart(
                ranks, out / "figures" / f"{d['name']}_ranks.png", f"{d['name']}: average rank"
            )
            files.append(str(chart.relative_to(out)))
        made[d["name"]] = files
    return made
