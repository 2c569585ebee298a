"""Throughput of ``ivfuse fuse`` on a folder: the local engine against the Ray engine, 1 and 2 workers.

    python -m benchmarks.bench_distributed [--pairs 500] [--size 240x320] [--method lp]
        [--rounds 3] [--batch-size 8] [--variants local-1t,local,local-io,ray-1,ray-2] [--json out.json]

Run from the repository root with Ray installed (``pip install -e ".[distributed]"``). The script
generates ``--pairs`` pairs from 20 synthetic night scenes (:func:`ivfuse.data.synthetic.night_scene`,
shifted by one pixel more per pair; gray infrared, colour visible, PNG) into a temporary folder,
then times, ``--rounds`` times, each variant ALONE in a fresh interpreter (the previous one has
exited, its Ray cluster stopped), fusing the whole folder into an empty output folder with
:func:`ivfuse.distributed.fuse_folder` (what ``ivfuse fuse --pairs`` runs):

* ``local-1t``: the local engine as one Ray worker runs it (the baseline of the Ray overhead):
  ``--batch-size`` pairs per call with one decode/encode thread beside the fusing one, every
  NumPy/OpenCV thread pool at one thread;
* ``local``: the local engine as ``ivfuse fuse --pairs`` runs by default (NumPy/OpenCV threads as
  installed);
* ``local-io``: the local engine with one decode/encode thread per CPU and ``--batch-size`` pairs
  per call (``ivfuse fuse -j N --batch-size B``);
* ``ray-1``, ``ray-2``: the Ray engine (``--engine ray --workers 1|2 --batch-size B``) on a
  one-machine cluster of the machine's CPUs, one CPU and one thread per worker.

Reported per variant: pairs/s of the fusion run (from the call to the last result: for Ray with
the actor pool's start and the method's load in every worker) and in steady state (the pairs after
the first tenth, over the time they took), as the median over rounds and the range; the cluster's
start (``ray.init``, once per process; on a running cluster, ``--address auto``, a connect
instead); the time to the first result; the load average before each run and the CPU cores the
whole machine used during it. Derived: the Ray overhead per pair against ``local-1t`` (whole run,
and steady state), the pool's start, the scaling ``ray-2 / ray-1`` and ``ray-2 / best local``.
Goals (issue 28: a 2-core machine, 500 pairs, a classical method, one thread per worker):
scaling >= 1.7, ray-2 >= 0.9 x the best local variant, overhead < 10 ms per pair.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from ._machine import HZ, cpu_jiffies, cpu_name

#: the repository root: children run ``python -m benchmarks.bench_distributed`` from there
ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("local-1t", "local", "local-io", "ray-1", "ray-2")


def generate(folder: Path, n: int, h: int, w: int, scenes: int = 20) -> None:
    """``n`` pairs into ``folder/ir`` and ``folder/vi``: ``scenes`` night scenes (a scene takes
    about 0.2 s to make at 360x480), pair ``i`` scene ``i % scenes`` shifted by ``i`` pixels, so
    that every file differs."""
    import numpy as np

    from ivfuse import io
    from ivfuse.data.synthetic import night_scene

    made = [night_scene(h, w, seed=k) for k in range(min(n, scenes))]
    for i in range(n):
        s = made[i % len(made)]
        io.write_image(folder / "ir" / f"{i:05d}.png", np.roll(s.ir, i, axis=1))
        io.write_image(folder / "vi" / f"{i:05d}.png", np.roll(s.vi, i, axis=1))


def _child(variant: str, data: str, out: str, method: str, batch_size: int) -> dict:
    """Run one variant in this (fresh) process; returns its timings."""
    if variant == "local-1t" or variant.startswith("ray"):
        os.environ["OMP_NUM_THREADS"] = "1"  # before NumPy/OpenCV start their pools
    from ivfuse.data.pairs import discover
    from ivfuse.distributed import FuseSpec, RayEngine, connect, fuse_folder
    from ivfuse.distributed.engine import limit_threads

    scan = discover(pairs_dir=data)
    spec = FuseSpec(method)
    init_s = 0.0
    kw: dict = {}
    if variant == "local-1t":
        limit_threads(1)
        kw = {"batch_size": batch_size, "workers": 1}  # what distributed.folders.fuse_batch runs
    elif variant == "local-io":
        kw = {"batch_size": batch_size, "workers": os.cpu_count() or 1}
    elif variant.startswith("ray"):
        t0 = time.perf_counter()
        connect(None)
        init_s = time.perf_counter() - t0
        kw = {"engine": RayEngine(workers=int(variant.split("-")[1]), batch_size=batch_size)}
    if not variant.startswith("ray"):
        kw["pipeline"] = spec.load()  # the local engine loads the method before the run, as the CLI
    busy0 = cpu_jiffies()[0]
    t0 = time.perf_counter()
    arrivals = []
    fused = 0
    for res in fuse_folder(spec, scan.pairs, out, **kw):
        arrivals.append(time.perf_counter() - t0)
        fused += res.status == "fused"
    run_s = time.perf_counter() - t0
    cores = (cpu_jiffies()[0] - busy0) / HZ / run_s
    if fused != len(scan.pairs):
        raise SystemExit(f"{variant}: {fused} of {len(scan.pairs)} pairs fused")
    k = len(arrivals) // 10  # steady state: after the pool's start and the first batches
    steady = (len(arrivals) - k) / (arrivals[-1] - arrivals[k - 1]) if k else fused / run_s
    return {
        "variant": variant, "init_s": init_s, "run_s": run_s, "pairs": fused, "cores": cores,
        "first_s": arrivals[0], "steady": steady,
    }  # fmt: skip


def _run_child(variant: str, data: Path, method: str, batch_size: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"ivfuse-bench-{variant}-"))
    try:
        load = os.getloadavg()[0]
        cmd = [
            sys.executable, "-m", "benchmarks.bench_distributed", "--child", variant, "--data", str(data),
            "--child-out", str(out / "fused"), "--method", method, "--batch-size", str(batch_size),
        ]  # fmt: skip
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["load"] = load
        return row
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _stats(xs: list[float]) -> tuple[float, float, float]:
    return statistics.median(xs), min(xs), max(xs)


def _fmt(xs: list[float], unit: str) -> str:
    med, lo, hi = _stats(xs)
    return f"{med:.2f}{unit} ({lo:.2f} to {hi:.2f})"


def report(rows: dict[str, list[dict]], args: argparse.Namespace, h: int, w: int) -> dict:
    """Print the table and the derived numbers; returns them (``--json``)."""
    n = args.pairs
    variants = list(rows)
    rate = {v: [x["pairs"] / x["run_s"] for x in rs] for v, rs in rows.items()}
    steady = {v: [x["steady"] for x in rs] for v, rs in rows.items()}
    print(
        f"\n{args.method}, {n} pairs {h}x{w}, batch {args.batch_size}, {args.rounds} rounds, each variant "
        f"alone in a fresh process; {os.cpu_count()} CPUs ({cpu_name()}); "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
    print(
        f"{'variant':9s} {'pairs/s':>8s} {'range':>13s} {'steady':>7s} {'range':>13s} {'init s':>6s} "
        f"{'first s':>7s} {'load':>9s} {'cores':>5s}"
    )
    for v in variants:
        med, lo, hi = _stats(rate[v])
        smed, slo, shi = _stats(steady[v])
        init = statistics.median(x["init_s"] for x in rows[v])
        first = statistics.median(x["first_s"] for x in rows[v])
        loads = [x["load"] for x in rows[v]]
        cores = statistics.median(x["cores"] for x in rows[v])
        print(
            f"{v:9s} {med:8.1f} {lo:6.1f}-{hi:<6.1f} {smed:7.1f} {slo:6.1f}-{shi:<6.1f} {init:6.2f} "
            f"{first:7.2f} {min(loads):4.2f}-{max(loads):<4.2f} {cores:5.2f}"
        )
    summary: dict = {"pairs": n, "size": [h, w], "method": args.method, "batch_size": args.batch_size,
                     "rounds": rows, "cpu": cpu_name(), "cpus": os.cpu_count(),
                     "date": datetime.now(timezone.utc).isoformat(timespec="minutes")}  # fmt: skip
    paired = list(zip(rows.get("ray-1", []), rows.get("local-1t", []), strict=False))
    if paired:
        total = [(a["run_s"] - b["run_s"]) / n * 1000 for a, b in paired]
        marginal = [(1 / a["steady"] - 1 / b["steady"]) * 1000 for a, b in paired]
        start = [a["run_s"] - n / a["steady"] for a, _ in paired]
        summary.update(overhead_ms=total, marginal_ms=marginal, pool_start_s=start)
        print("Ray overhead per pair, ray-1 against local-1t (paired by round), median (range):")
        print("  whole run (the pool's start and the method's load included): " + _fmt(total, " ms"))
        print("  steady state (after the first tenth of the pairs):            " + _fmt(marginal, " ms"))
        print("  the pool's start and the method's load, once per run:         " + _fmt(start, " s"))
    if {"ray-1", "ray-2"} <= set(variants):
        whole = [b / a for a, b in zip(rate["ray-1"], rate["ray-2"], strict=True)]
        st = [b / a for a, b in zip(steady["ray-1"], steady["ray-2"], strict=True)]
        summary.update(scaling=whole, scaling_steady=st)
        print(f"scaling ray-2 / ray-1: whole run {_fmt(whole, 'x')}, steady state {_fmt(st, 'x')}")
    local = [v for v in variants if v.startswith("local")]
    if local and "ray-2" in variants:
        best = max(local, key=lambda v: statistics.median(rate[v]))
        ratio = statistics.median(rate["ray-2"]) / statistics.median(rate[best])
        st = statistics.median(steady["ray-2"]) / statistics.median(steady[best])
        summary["ray2_vs_best_local"] = {"best_local": best, "ratio": ratio, "steady": st}
        print(f"ray-2 / best local ({best}): whole run {ratio:.2f}x, steady state {st:.2f}x")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=500)
    ap.add_argument("--size", default="240x320", help="HxW of the generated pairs")
    ap.add_argument("--method", default="lp")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.data, args.child_out, args.method, args.batch_size)))
        return 0

    h, w = (int(x) for x in args.size.lower().split("x"))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="ivfuse-bench-distributed-"))
    try:
        t0 = time.perf_counter()
        generate(tmp, args.pairs, h, w)
        print(f"generated {args.pairs} {h}x{w} pairs in {time.perf_counter() - t0:.1f} s", flush=True)
        rows: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for v in variants:
                row = _run_child(v, tmp, args.method, args.batch_size)
                rows[v].append(row)
                print(
                    f"round {r + 1} {v:9s} {row['pairs'] / row['run_s']:7.1f} pairs/s, "
                    f"run {row['run_s']:6.2f} s, steady {row['steady']:7.1f} pairs/s, "
                    f"init {row['init_s']:5.2f} s, first result "
                    f"{row['first_s']:5.2f} s, load {row['load']:.2f}, cores {row['cores']:.2f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = report(rows, args, h, w)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
