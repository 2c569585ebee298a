"""Markdown tables for the README from the results of ``scripts/finish_didfuse_full.sh``.

    python scripts/didfuse_report.py [RUN]        RUN: runs/didfuse_full (reads RUN/eval/*.json)

Prints, from the JSON files that ``scripts/eval_didfuse_tno.py`` wrote (nothing is typed in by
hand): the final weights against the paper's Table 4 with relative differences, the metric
trajectory over the epoch snapshots (with that epoch's training loss from ``losses.csv``), the
fusion-rule and BatchNorm variants of the final weights, and the full ``vifb`` profile row.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

KEYS = ["EN", "MI", "SD", "VIF", "AG"]
VARIANTS = [
    ("final", "final weights (BN running averages of training, rule `sum`)"),
    ("bn_pop-both", "BN population statistics, both modalities"),
    ("bn_pop-ir", "BN population statistics, infrared crops only"),
    ("bn_pop-vi", "BN population statistics, visible crops only"),
    ("rule_average", "rule `average`"),
    ("rule_l1", "rule `l1`"),
]


def _fmt(v: float) -> str:
    return f"{v:.3f}"


def _row(label: str, vals: dict[str, float]) -> str:
    return f"| {label} | " + " | ".join(_fmt(vals[k]) for k in KEYS) + " |"


def _header(first: str) -> list[str]:
    return [f"| {first} | " + " | ".join(KEYS) + " |", "|---|" + "--:|" * len(KEYS)]


def _losses(run: Path) -> dict[int, dict[str, str]]:
    path = run / "losses.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        return {int(r["epoch"]): r for r in csv.DictReader(f)}


def _loss(v: str | None) -> str:
    return "" if v is None else f"{float(v):.4f}"


def report(run: Path) -> str:
    ev = run / "eval"
    results = {p.stem: json.loads(p.read_text()) for p in sorted(ev.glob("*.json"))}
    if "final" not in results:
        raise SystemExit(f"{ev}/final.json is missing: run scripts/finish_didfuse_full.sh first")
    final = results["final"]
    paper = final["paper_table4"]
    pairs = final["pairs"]
    out = [f"TNO, {pairs} pairs, `ma2019` profile", ""]
    out += _header("TNO")
    out.append(_row("DIDFuse paper, Table 4", paper))
    card = run / "card.json"
    epochs = json.loads(card.read_text())["epochs"] if card.exists() else None
    out.append(_row(f"ivfuse, {epochs} epochs" if epochs else "ivfuse, final weights", final["ma2019"]))
    diffs = {k: 100 * (final["ma2019"][k] - paper[k]) / paper[k] for k in KEYS}
    out.append("| difference | " + " | ".join(f"{diffs[k]:+.1f} %" for k in KEYS) + " |")
    within = [k for k in KEYS if abs(diffs[k]) <= 3.0]
    out += [
        "",
        f"within 3 %: {', '.join(within) or 'none'}; outside: "
        f"{', '.join(k for k in KEYS if k not in within) or 'none'}",
        "",
    ]

    losses = _losses(run)
    snaps = sorted((int(m.group(1)), name) for name in results if (m := re.fullmatch(r"epoch_(\d+)", name)))
    if snaps:
        out.append("Trajectory over the snapshots of the same run (training loss of that epoch):")
        out.append("")
        out.append("| epoch | lr | total loss | " + " | ".join(KEYS) + " |")
        out.append("|--:|--:|--:|" + "--:|" * len(KEYS))
        for epoch, name in snaps:
            row = losses.get(epoch, {})
            vals = results[name]["ma2019"]
            out.append(
                f"| {epoch} | {row.get('lr', '')} | {_loss(row.get('total'))} | "
                + " | ".join(_fmt(vals[k]) for k in KEYS)
                + " |"
            )
        out.append("")

    present = [(n, label) for n, label in VARIANTS if n in results]
    if len(present) > 1:
        out.append("Variants of the final weights:")
        out.append("")
        out += _header("final weights, TNO, `ma2019`")
        out += [_row(label, results[n]["ma2019"]) for n, label in present]
        out.append("")

    vifb = final["vifb"]
    out.append("Full `vifb` profile of the final weights:")
    out.append("")
    out.append("| " + " | ".join(vifb) + " |")
    out.append("|" + "--:|" * len(vifb))
    out.append("| " + " | ".join(f"{v:.4g}" for v in vifb.values()) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", default="runs/didfuse_full")
    args = ap.parse_args()
    sys.stdout.write(report(Path(args.run)))


if __name__ == "__main__":
    main()
