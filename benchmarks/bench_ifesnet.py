"""Time IFESNet fusion of one 480x640 pair (ms/pair, wall and CPU) and its peak memory, per path.

    python benchmarks/bench_ifesnet.py [--runs 3] [--threads 2] [--paths 256,256:contiguous,none]
        [--weights W.safetensors] [--json out.json]

A path is a tile size (``none``: one untiled pass), optionally ``:contiguous`` for the default
memory layout instead of the fuser's channels-last. Every path runs in a fresh child process
(peak memory is the child's peak resident set, ``ru_maxrss``, minus its resident set after
loading the network and the pair), warmed up once, then timed ``--runs`` times; the median wall
time and the median CPU time of the process are reported (CPU time is the steadier number on a
shared machine; with ``--threads 1`` it is the work done). The fused image of every path is
compared with the untiled one (max |diff| in gray levels, <= 1).
The network is the fusion path of ``IFESNet.fuse`` (what ``ivfuse fuse -m ifesnet`` runs: the
reconstruction heads are skipped); weights: the shipped ones when installed, else
``--weights``, else a random init (timings do not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time

import numpy as np


def _child(tile: int | None, layout: str, runs: int, threads: int, weights: str | None, q) -> None:
    import torch

    from ivfuse.data.synthetic import night_scene
    from ivfuse.methods.ifesnet import IFESNet, IFESNetModel, load_weights
    from ivfuse.methods.registry import weights_path

    torch.set_num_threads(threads)
    shipped = weights_path("ifesnet.safetensors")
    if weights:
        net, source = load_weights(weights)[0], weights
    elif shipped.is_file():
        net, source = load_weights(str(shipped))[0], "shipped"
    else:
        torch.manual_seed(0)
        net, source = IFESNetModel().eval(), "random init"
    s = night_scene(480, 640, seed=0)
    vi = s.vi.mean(axis=2) if s.vi.ndim == 3 else s.vi
    ir, vi = np.float32(s.ir), np.float32(vi)
    fuser = IFESNet(net, tile=tile)
    if layout == "contiguous":
        fuser.net.to(memory_format=torch.contiguous_format)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fused = fuser.fuse(ir, vi)  # warm-up
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fuser.fuse(ir, vi)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    q.put(
        {
            "ms": 1000 * statistics.median(wall),
            "cpu_ms": 1000 * statistics.median(cpu),
            "peak_mb": (peak - base) / 1024,
            "fused": fused,
            "weights": source,
            "params": sum(p.numel() for p in net.parameters()),
        }
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paths", default="256,256:contiguous,none")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",")]
    if "none" not in paths:
        paths.append("none")  # the reference for the comparison
    ctx = mp.get_context("spawn")
    res = {}
    for path in paths:
        tile_s, _, layout = path.partition(":")
        tile = None if tile_s == "none" else int(tile_s)
        q = ctx.Queue()
        p = ctx.Process(
            target=_child, args=(tile, layout or "channels_last", args.runs, args.threads, args.weights, q)
        )
        p.start()
        res[path] = q.get()
        p.join()
    ref = res["none"]["fused"]
    print(
        f"IFESNet, 480x640, {args.threads} thread(s), {res['none']['params']:,} parameters, "
        f"weights: {res['none']['weights']}"
    )
    print(f"{'path':>16} {'ms/pair':>9} {'CPU ms':>9} {'peak MB':>8} {'max|diff|':>10}")
    rows, ok = [], True
    for path in paths:
        r = res[path]
        diff = float(np.abs(r["fused"] - ref).max() * 255)
        ok &= diff <= 1.0
        flag = "" if diff <= 1 else "  FAIL"
        print(f"{path:>16} {r['ms']:>9.0f} {r['cpu_ms']:>9.0f} {r['peak_mb']:>8.0f} {diff:>10.3f}{flag}")
        rows.append(
            {
                "path": path,
                "ms_per_pair": r["ms"],
                "cpu_ms_per_pair": r["cpu_ms"],
                "peak_mb": r["peak_mb"],
                "max_diff_gray": diff,
            }
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "runs": args.runs, "rows": rows}, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
