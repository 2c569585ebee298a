"""How close each method is to its paper: one row per ``ivfuse bench --paper`` output, with the scale
the method's shipped weights were trained at.

    python scripts/paper_gaps.py DIR [DIR ...] [--markdown]
    python scripts/paper_gaps.py runs/paper_didfuse runs/paper_jcae --markdown

A DIR is the ``--out`` folder of ``ivfuse bench --paper NAME`` (its ``paper_NAME.json``). Each row
gives the paper's own method's median absolute gap to the printed values over all its cells, the
same median over the cells whose column has a metric-convention offset (before and net of the
offset; see the Benchmark page of the docs), the worst cell, and the training scale from the
method's weights card (data, epochs, iterations, precision and every deviation from the recipe).
The numbers are read, never recomputed: the table is what the bench runs printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def read_summary(folder: Path) -> tuple[str, dict[str, Any]]:
    """(method, summary) of one ``bench --paper`` output folder."""
    files = sorted(folder.glob("paper_*.json"))
    if len(files) != 1:
        raise SystemExit(f"error: {folder} holds {len(files)} paper_*.json files, expected one")
    doc = json.loads(files[0].read_text(encoding="utf-8"))
    summary = doc.get("summary")
    if not summary:
        raise SystemExit(f"error: {files[0]} has no summary (the paper's own method was not run)")
    return files[0].stem.removeprefix("paper_"), summary


def _n(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, (list, tuple)):
        return "x".join(_n(v) for v in value)
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def scale(card: dict[str, Any]) -> str:
    """The training scale of a weights card in one line: data, epochs, iterations, precision,
    deviations from the recipe."""
    parts = []
    data = card.get("data") or {}
    if data:
        # the card's ``pairs`` is the data set's length: samples per epoch (crops, for a patching recipe)
        parts.append(f"{data.get('name', '?')}, {data.get('pairs', '?')} samples per epoch")
    stages = card.get("stages") or []
    deviations = dict(card.get("deviations_from_recipe") or {})
    if stages:
        its = sum(int(s.get("iterations") or 0) for s in stages)
        recipe = (deviations.pop("iterations", None) or {}).get("recipe")
        text = f"{its:,} iterations in {len(stages)} stages"
        if all(s.get("iterations") is not None and s.get("batch_size") for s in stages):
            # stages of other batch sizes (a GPU stage) or crops compare by their samples
            by_crop: dict[Any, int] = {}
            for s in stages:
                by_crop[s.get("crop")] = by_crop.get(s.get("crop"), 0) + int(s["iterations"]) * int(
                    s["batch_size"]
                )
            text += (
                " ("
                + ", ".join(f"{n:,} samples" + (f" at {c} px" if c else "") for c, n in by_crop.items())
                + ")"
            )
        parts.append(text + (f"; recipe {_n(recipe)} iterations" if recipe else ""))
        deviations.pop("epochs", None)
        deviations.pop("iterations_per_epoch", None)
    else:
        epochs, recipe_epochs = card.get("epochs"), card.get("recipe_epochs")
        if epochs is not None:
            parts.append(f"{epochs}/{recipe_epochs} epochs" if recipe_epochs else f"{epochs} epochs")
        deviations.pop("epochs", None)
        its = deviations.pop("iterations", None)
        if its:
            parts.append(f"{_n(its.get('used'))} iterations (recipe {_n(its.get('recipe'))})")
    for key, dev in sorted(deviations.items()):
        parts.append(f"{key} {_n(dev.get('used'))} (recipe {_n(dev.get('recipe'))})")
    if card.get("precision"):
        parts.append(str(card["precision"]))
    parts.append("reduced scale" if card.get("reduced_scale") else "the recipe's scale")
    return "; ".join(parts)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def rows(folders: list[Path]) -> list[dict[str, str]]:
    from ivfuse.methods import registry

    out = []
    for folder in folders:
        method, s = read_summary(folder)
        card = registry.info(method).weights_card or {}
        worst = s.get("worst") or {}
        out.append(
            {
                "method": method,
                "median": f"{_pct(s.get('median_abs_gap'))} ({s.get('cells')} cells)",
                "with_offset": (
                    f"{_pct(s.get('median_abs_gap_with_offset'))} → {_pct(s.get('median_abs_gap_net'))} "
                    f"({s.get('cells_with_offset')} cells)"
                    if s.get("cells_with_offset")
                    else "– (no same-method row)"
                ),
                "worst": (
                    f"{worst.get('metric')} {100 * worst['gap']:+.1f} %, "
                    f"{worst.get('table')} on {worst.get('dataset')}"
                    if worst.get("gap") is not None
                    else "–"
                ),
                "scale": scale(card),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="--out folders of `ivfuse bench --paper NAME`")
    ap.add_argument(
        "--markdown", action="store_true", help="a Markdown table (default: one block per method)"
    )
    args = ap.parse_args(argv)
    table = rows(args.folders)
    if args.markdown:
        print(
            "| method | median gap | on cells with a convention offset: before → net | worst cell | "
            "shipped weights' training |"
        )
        print("|---|--:|--:|---|---|")
        for r in table:
            print(f"| {r['method']} | {r['median']} | {r['with_offset']} | {r['worst']} | {r['scale']} |")
        return 0
    for r in table:
        print(f"{r['method']}  (ivfuse bench --paper {r['method']})")
        for key in ("median", "with_offset", "worst", "scale"):
            print(f"  {key:12s} {r[key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
