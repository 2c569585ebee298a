"""Time every classical baseline over a folder of pairs (default ``$IVFUSE_DATA/tno``).

    python -m benchmarks.bench_classical [--data DIR] [--methods lp,gff] [--limit N]
        [--no-metrics] [--json out.json]

The folder holds ``ir/`` and ``vi/`` with images matched by file stem (:mod:`ivfuse.data.pairs`;
gray PNGs for TNO; a colour visible image is reduced to its luma). Every method is warmed up once on the first
pair; then, pair by pair, each method fuses the pair once (methods interleaved, so that a
change of machine load hits all of them alike) and ``time.perf_counter`` measures the
``fuse`` call alone (float32 luma planes in [0, 1] in memory; no file I/O). Reported per
method: median and mean ms per pair and their ratios to ``average`` measured in the same
process. Unless ``--no-metrics``, the table also gives the mean over the pairs of a few
quality metrics from :mod:`ivfuse.metrics` (VIFB profile) computed on the 8-bit fused image:
EN, SD, AG, SF (no-reference), MI and QABF (with respect to the sources); the sources' own
EN/SD/AG/SF are printed for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ivfuse.data.pairs import Pair, scan_pairs_root
from ivfuse.errors import InputError
from ivfuse.io import atomic_write_text
from ivfuse.methods import available, create

REPO = Path(__file__).resolve().parents[1]
METRICS = ("EN", "SD", "AG", "SF", "MI", "QABF")


def read_luma(path: Path) -> np.ndarray:
    img = Image.open(path)
    if img.mode in ("I;16", "I;16B", "I"):
        raise SystemExit(f"{path}: 16-bit images are not handled by this benchmark")
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def find_pairs(root: Path) -> list[Pair]:
    """The pairs of ``root/ir`` + ``root/vi`` (sorted by stem); unpaired files are left out."""
    return scan_pairs_root(root).pairs


def quality(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> dict[str, float]:
    from ivfuse.metrics import evaluate

    to8 = lambda a: np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    return evaluate(to8(fused), to8(ir), to8(vi), metrics=list(METRICS), profile="vifb")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    env = os.environ.get("IVFUSE_DATA") or os.environ.get("IVFUSE_SHARED_DATA")
    default_data = (Path(env) if env else REPO.parent / "shared" / "data") / "tno"
    ap.add_argument("--data", type=Path, default=default_data)
    ap.add_argument("--methods", default="", help="comma-separated names (default: all classical)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N pairs")
    ap.add_argument("--no-metrics", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args(argv)

    order = ["average", "max", "lp", "dwt", "dtcwt", "gff", "gtf"]
    names = [i.name for i in available() if i.family == "classical"]
    names.sort(key=lambda n: (order.index(n) if n in order else len(order), n))
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        names = ["average"] + [m for m in wanted if m != "average"]
    try:
        pairs = find_pairs(args.data)
    except InputError as exc:
        print(f"error: {exc} (--data DIR, or set IVFUSE_DATA)", file=sys.stderr)
        return 2
    if args.limit:
        pairs = pairs[: args.limit]
    if not pairs:
        print(f"no pairs under {args.data} (expected ir/ and vi/)", file=sys.stderr)
        return 2
    images = [(p.stem, read_luma(p.ir), read_luma(p.vi)) for p in pairs]
    for stem, ir, vi in images:
        if ir.shape != vi.shape:
            print(f"{stem}: sizes differ {ir.shape} vs {vi.shape}", file=sys.stderr)
            return 2

    fusers = {n: create(n) for n in names}
    for n in names:  # warm-up: imports, filter caches
        fusers[n].fuse(images[0][1], images[0][2])

    times: dict[str, list[float]] = {n: [] for n in names}
    scores: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    sources: dict[str, list[dict[str, float]]] = {"ir": [], "vi": []}
    for k, (stem, ir, vi) in enumerate(images, 1):
        print(f"\r[{k}/{len(images)}] {stem} {ir.shape[1]}x{ir.shape[0]}", end="", file=sys.stderr)
        for n in names:
            t0 = time.perf_counter()
            fused = fusers[n].fuse(ir, vi)
            times[n].append(1e3 * (time.perf_counter() - t0))
            if not args.no_metrics:
                scores[n].append(quality(fused, ir, vi))
        if not args.no_metrics:
            sources["ir"].append(quality(ir, ir, vi))
            sources["vi"].append(quality(vi, ir, vi))
    print(file=sys.stderr)

    sizes = sorted({im[1].shape for im in images})
    print(
        f"{len(images)} pairs from {args.data} (sizes {sizes[0][1]}x{sizes[0][0]} .. "
        f"{sizes[-1][1]}x{sizes[-1][0]}); python {platform.python_version()}, numpy "
        f"{np.__version__}, {os.cpu_count()} CPUs, {platform.machine()}"
    )
    med_avg = statistics.median(times["average"])
    mean_avg = statistics.fmean(times["average"])
    head = f"| {'method':8s} | median ms | mean ms | median / average | mean / average |"
    sep = "|----------|----------:|--------:|-----------------:|---------------:|"
    if not args.no_metrics:
        head += "".join(f" {m:>5s} |" for m in METRICS)
        sep += "------:|" * len(METRICS)
    print(head)
    print(sep)
    result = {"data": str(args.data), "pairs": len(images), "methods": {}}
    for n in names:
        med, mean = statistics.median(times[n]), statistics.fmean(times[n])
        row = f"| {n:8s} | {med:9.2f} | {mean:7.2f} | {med / med_avg:16.1f} | {mean / mean_avg:14.1f} |"
        entry = {"median_ms": med, "mean_ms": mean, "times_ms": times[n]}
        if not args.no_metrics:
            means = {m: statistics.fmean(s[m] for s in scores[n]) for m in METRICS}
            row += "".join(f" {means[m]:5.2f} |" for m in METRICS)
            entry["metrics"] = means
        print(row)
        result["methods"][n] = entry
    if not args.no_metrics:
        for src in ("ir", "vi"):
            means = {m: statistics.fmean(s[m] for s in sources[src]) for m in METRICS[:4]}
            print(f"source {src}: " + ", ".join(f"{m} {v:.2f}" for m, v in means.items()))
            result[f"source_{src}"] = means
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
