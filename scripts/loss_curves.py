"""Compare the training-loss curves of several runs (e.g. JCAE's Fig. 5: the total loss per epoch
for several weights λ of the SSIM term).

    python scripts/loss_curves.py RUN [RUN ...] [--column total] [--within 0.1] [--png curves.png]
    python scripts/loss_curves.py src/ivfuse/weights/jcae.json ablations/jcae/lambda-* --png lam.png

A RUN is a run folder of ``ivfuse train`` (its ``losses.csv``), a ``losses.csv`` itself, or a
weights card (``card.json``, ``src/ivfuse/weights/METHOD.json``: its ``loss_history``). For each run
it prints the column's value at a few epochs, its final level (the mean of the last ``--last``
epochs), the first epoch at which the curve comes within ``--within`` (relative) of that level and
the first from which it stays there (how fast it converges, whatever its scale; epoch losses of
small-batch training are noisy, hence the two), and the last epoch's other loss terms. ``--png``
draws the curves (matplotlib; log scale), one line per run, labelled by the run's ablation (or
folder, or card file) name unless ``--labels`` names them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

#: columns of losses.csv that are bookkeeping, not loss terms
NOT_LOSSES = {"epoch", "stage", "lr", "seconds"}


def read_history(path: Path) -> tuple[str, dict[str, list[float]]]:
    """(label, {column: values per epoch}) of a run folder, a losses.csv or a weights card."""
    path = Path(path)
    card: dict = {}
    if path.is_dir():
        if (path / "card.json").is_file():
            card = json.loads((path / "card.json").read_text())
        path = path / "losses.csv"
    if path.suffix == ".json":
        card = json.loads(path.read_text())
        hist = card.get("loss_history")
        if not hist:
            raise SystemExit(f"error: {path} has no loss_history")
        cols = {k: [float(x) for x in v] for k, v in hist.items() if k not in ("stage",)}
    else:
        if not path.is_file():
            raise SystemExit(f"error: no losses.csv at {path}")
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        cols = {}
        for k in rows[0] if rows else []:
            if k == "stage":
                continue
            vals = [float(r[k]) if r[k] not in ("", None) else math.nan for r in rows]
            cols[k] = vals
    ablation = card.get("ablation")
    if isinstance(ablation, dict):
        label = ablation.get("name") or "ablation"
    elif path.name == "losses.csv":
        label = path.parent.name
    else:  # a weights card: the method and the file
        label = f"{card.get('method', '?')} ({path.name})"
    return str(label), cols


def convergence_epoch(values: list[float], within: float, last: int) -> tuple[float, int, int]:
    """(final level, first epoch within ``within`` (relative) of it, first epoch from which every
    later value stays within it); epochs count from 1, 0 when there is none."""
    tail = [v for v in values[-last:] if not math.isnan(v)]
    level = sum(tail) / len(tail)
    near = [abs(v - level) <= within * abs(level) for v in values]
    first = next((i + 1 for i, n in enumerate(near) if n), 0)
    stays = len(values) if near[-1] else 0
    while stays > 1 and near[stays - 2]:
        stays -= 1
    return level, first, stays


def summarise(runs: list[Path], column: str, within: float, last: int) -> list[dict]:
    out = []
    for run in runs:
        label, cols = read_history(run)
        if column not in cols:
            raise SystemExit(f"error: {run} has no column {column!r} (it has {', '.join(cols)})")
        vals = cols[column]
        level, first, stays = convergence_epoch(vals, within, last)
        terms = {k: v[-1] for k, v in cols.items() if k not in NOT_LOSSES and k != column}
        out.append({"run": str(run), "label": label, "epochs": len(vals), "values": vals, "level": level,
                    "first_within": first, "stays_within": stays, "last_terms": terms})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--column", default="total", help="the loss column to compare (default: total)")
    ap.add_argument("--within", type=float, default=0.25, help="relative band around the final level")
    ap.add_argument("--last", type=int, default=5, help="epochs averaged for the final level")
    ap.add_argument("--png", type=Path, help="draw the curves here (matplotlib)")
    ap.add_argument("--json", type=Path, help="write the summary here")
    ap.add_argument("--labels", help="comma-separated names of the runs, in order")
    a = ap.parse_args(argv)
    rows = summarise(a.runs, a.column, a.within, a.last)
    if a.labels:
        names = a.labels.split(",")
        if len(names) != len(rows):
            raise SystemExit(f"error: {len(names)} labels for {len(rows)} runs")
        for r, name in zip(rows, names, strict=True):
            r["label"] = name
    marks = [1, 5, 10, 20, 30]
    head = (
        ["run", "epochs"]
        + [f"ep {m}" for m in marks]
        + [f"final (last {a.last})", f"first within {a.within:.0%}", "stays from"]
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        v = r["values"]
        cells = [r["label"], str(r["epochs"])] + [f"{v[m - 1]:.4g}" if m <= len(v) else "–" for m in marks]
        cells += [f"{r['level']:.4g}"] + [
            f"epoch {e}" if e else "–" for e in (r["first_within"], r["stays_within"])
        ]
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        terms = ", ".join(f"{k} {x:.4g}" for k, x in r["last_terms"].items())
        print(f"{r['label']}: last epoch {terms}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    if a.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
        for r in rows:
            ax.plot(range(1, r["epochs"] + 1), r["values"], label=r["label"])
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{a.column} loss")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        tmp = a.png.with_name(a.png.name + ".part.png")
        fig.savefig(tmp)
        tmp.replace(a.png)
        print(f"wrote {a.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
