"""DIDFuse Fig. 5 (Sec. 4.4, "Experiments on Reproducibility"): Table 4's six metrics over
repeated trainings of the same recipe.

    python scripts/didfuse_fig5.py train --data DATA/flir_train --out runs/didfuse_fig5 --runs 25 \\
        [--device cuda] [-- MORE ivfuse train OPTIONS]
    python scripts/didfuse_fig5.py eval --out runs/didfuse_fig5 [--data-root DATA] [--device cuda]
    python scripts/didfuse_fig5.py plot --out runs/didfuse_fig5 [--png fig5.png]

The paper trains DIDFuse 25 times and draws, per test set (TNO, FLIR, NIR) and metric (EN, MI,
SD, SF, VIF, AG), the value of every run (black curve) against the best and second-best competitor
of Table 4 (red dashed, blue dotted lines): DIDFuse "can basically keep the first place all the
time".

* ``train`` trains seeds 0 .. N-1 of the full recipe one after the other into ``OUT/seed_K``
  (``ivfuse train didfuse``; an unfinished run resumes from its checkpoint, a finished one is
  skipped). One run: about 49 s on an H200, about 5 h on a 2-core CPU.
* ``eval`` scores every finished run and the shipped weights with ``ivfuse bench`` (Table 4's test
  pipeline and ``ma2019`` profile; fused images cached per weights under ``OUT/bench``) and writes
  ``OUT/fig5.csv`` (run, seed, data set, metric, value).
* ``plot`` prints per set and metric the mean, standard deviation and range over the runs, how
  many runs are above the paper's best competitor and the paper's DIDFuse value, and with
  ``--png`` draws the 3 x 6 panels of Fig. 5 (plus the paper's DIDFuse value, green dash-dot, and
  the shipped weights, grey). A figure made from a data set's images is for your own use: the
  data sets' licences may not allow publishing it.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import subprocess
import sys
from pathlib import Path

from ivfuse.io import atomic_write, atomic_write_text

METRICS = ("EN", "MI", "SD", "SF", "VIF", "AG")
#: the three test sets of Table 4, by their ivfuse names
DATASETS = ("tno", "flir-test", "nir")
SHIPPED = "shipped"


def runs_of(out: Path) -> list[Path]:
    """The finished runs under ``out`` (``seed_K/weights.safetensors``), by seed."""
    found = [p for p in out.glob("seed_*") if (p / "weights.safetensors").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("_", 1)[1]))


def train(data: Path, out: Path, runs: int, device: str, extra: list[str]) -> None:
    for seed in range(runs):
        run = out / f"seed_{seed}"
        if (run / "weights.safetensors").is_file():
            print(f"seed {seed}: done ({run})")
            continue
        cmd = [sys.executable, "-m", "ivfuse", "train", "didfuse", "--data", str(data), "--out", str(run),
               "--seed", str(seed), "--device", device, "--no-progress"]  # fmt: skip
        if (run / "checkpoint.pt").is_file():
            cmd.append("--resume")
        print(" ".join(cmd), flush=True)
        subprocess.run([*cmd, *extra], check=True)


def table4(dataset: str) -> dict[str, dict[str, float]]:
    """The paper's Table 4 values on ``dataset`` (ivfuse name): {row name: {metric: value}}."""
    from ivfuse.bench.papers import load_paper

    for t in load_paper("didfuse")["tables"]:
        if t["table"] == "Table 4" and t["dataset"] == dataset:
            return {r["name"]: r["values"] for r in t["rows"]}
    return {}


def evaluate(out: Path, data_root: str | None, device: str, datasets: list[str]) -> Path:
    from ivfuse.bench import BenchPlan, make_tasks, parse_method, run_plan

    runs = runs_of(out)
    if not runs:
        raise SystemExit(f"error: no finished run under {out} (seed_K/weights.safetensors)")
    methods = {SHIPPED: "didfuse"}
    methods.update({r.name: f"didfuse@weights={(r / 'weights.safetensors').resolve()}" for r in runs})
    tasks = make_tasks(list(methods.values()), datasets, profile="ma2019", metrics=",".join(METRICS),
                       data_root=data_root)  # fmt: skip
    done = run_plan(BenchPlan(tasks), out / "bench", figures=False, html=False, device=device)
    keys = {parse_method(spec).key: name for name, spec in methods.items()}
    rows = []
    for d in done.results["datasets"]:
        for c in d["cells"]:
            name = keys.get(c["method"])
            if name is not None and c["mean"] is not None:
                seed = "" if name == SHIPPED else name.split("_", 1)[1]
                rows.append({"run": name, "seed": seed, "dataset": d["name"], "metric": c["metric"],
                             "value": c["mean"]})  # fmt: skip
    for msg in done.results.get("messages", []):
        print(f"note: {msg}")
    if not rows:
        raise SystemExit("error: no run could be scored (see the notes above)")
    path = out / "fig5.csv"
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=["run", "seed", "dataset", "metric", "value"])
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, text.getvalue())
    names = ", ".join(d["name"] for d in done.results["datasets"])
    print(f"wrote {path}: {len(runs)} runs + the shipped weights on {names}")
    return path


def read(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """{(data set, metric): {run: value}} from fig5.csv."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            out.setdefault((r["dataset"], r["metric"]), {})[r["run"]] = float(r["value"])
    return out


def competitors(dataset: str, metric: str) -> tuple[float | None, float | None, float | None]:
    """(best competitor, second best, DIDFuse) of Table 4 for ``metric`` on ``dataset``."""
    rows = table4(dataset)
    others = sorted((v[metric] for k, v in rows.items() if k != "DIDFuse" and metric in v), reverse=True)
    own = rows.get("DIDFuse", {}).get(metric)
    return (others[0] if others else None, others[1] if len(others) > 1 else None, own)


def summary(values: dict[tuple[str, str], dict[str, float]]) -> list[str]:
    lines = [
        "| set | metric | runs | mean ± std | min – max | above best competitor | above paper's DIDFuse "
        "| shipped |",
        "|---|---|--:|---|---|--:|--:|--:|",
    ]
    for (ds, metric), by_run in sorted(values.items(), key=lambda kv: (kv[0][0], METRICS.index(kv[0][1]))):
        xs = [v for k, v in by_run.items() if k != SHIPPED]
        if not xs:
            continue
        best, _, own = competitors(ds, metric)
        std = statistics.stdev(xs) if len(xs) > 1 else 0.0
        above = f"{sum(x > best for x in xs)}/{len(xs)}" if best is not None else "–"
        above_own = f"{sum(x > own for x in xs)}/{len(xs)}" if own is not None else "–"
        shipped = f"{by_run[SHIPPED]:.4g}" if SHIPPED in by_run else "–"
        lines.append(f"| {ds} | {metric} | {len(xs)} | {statistics.fmean(xs):.4g} ± {std:.2g} | "
                     f"{min(xs):.4g} – {max(xs):.4g} | {above} | {above_own} | {shipped} |")  # fmt: skip
    return lines


def plot(values: dict[tuple[str, str], dict[str, float]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    sets = [d for d in DATASETS if any((d, m) in values for m in METRICS)]
    sets += sorted({d for d, _ in values} - set(sets))
    size = (3.0 * len(METRICS), 2.4 * len(sets))
    fig, axes = plt.subplots(len(sets), len(METRICS), figsize=size, squeeze=False)
    for i, ds in enumerate(sets):
        for j, metric in enumerate(METRICS):
            ax = axes[i][j]
            by_run = values.get((ds, metric), {})
            runs = sorted((k for k in by_run if k != SHIPPED), key=lambda k: int(k.split("_", 1)[1]))
            xs = list(range(1, len(runs) + 1))
            ax.plot(xs, [by_run[k] for k in runs], "k-", marker=".", label="ivfuse runs")
            best, second, own = competitors(ds, metric)
            for v, style, label in ((best, "r--", "best competitor"), (second, "b:", "second competitor"),
                                    (own, "g-.", "paper's DIDFuse")):  # fmt: skip
                if v is not None:
                    ax.axhline(v, color=style[0], linestyle=style[1:], linewidth=1, label=label)
            if SHIPPED in by_run:
                ax.axhline(by_run[SHIPPED], color="0.6", linewidth=1, label="shipped weights")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{ds}: {metric}", fontsize=9)
            ax.tick_params(labelsize=7)
            if i == len(sets) - 1:
                ax.set_xlabel("run", fontsize=8)
    axes[0][0].legend(fontsize=6, loc="best")
    fig.tight_layout()
    with atomic_write(png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    print(f"wrote {png}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train seeds 0..N-1 of the recipe (resumable)")
    t.add_argument("--data", required=True, type=Path, help="the training pairs (flir_train)")
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--runs", type=int, default=25, help="how many trainings (the paper: 25)")
    t.add_argument("--device", default="auto")
    e = sub.add_parser("eval", help="score every finished run and the shipped weights: OUT/fig5.csv")
    e.add_argument("--out", required=True, type=Path)
    e.add_argument("--data-root", default=None, help="default: $IVFUSE_DATA")
    e.add_argument("--device", default="auto")
    e.add_argument("--datasets", default=",".join(DATASETS), help="ivfuse data set names or folders")
    p = sub.add_parser("plot", help="summary table and (--png) the figure from OUT/fig5.csv")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--png", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "train":
        if args.runs < 1:
            ap.error("--runs must be at least 1")
        train(args.data, args.out, args.runs, args.device, extra)
    elif args.cmd == "eval":
        evaluate(args.out, args.data_root, args.device, [d for d in args.datasets.split(",") if d])
    else:
        csv_path = args.out / "fig5.csv"
        if not csv_path.is_file():
            raise SystemExit(f"error: no {csv_path}: run `eval` first")
        values = read(csv_path)
        print("\n".join(summary(values)))
        if args.png is not None:
            plot(values, args.png)


if __name__ == "__main__":
    main()
