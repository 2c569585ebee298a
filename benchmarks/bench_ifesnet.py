"""Time IFESNet fusion of one 480x640 pair (ms/pair) and its peak memory, per tile size.

    python benchmarks/bench_ifesnet.py [--runs 3] [--threads 2] [--tiles 256,384,none]
        [--weights W.safetensors] [--json out.json]

Every tile size runs in a fresh child process (peak memory is the child's peak resident set,
``ru_maxrss``, minus its resident set after loading the network and the pair), warmed up once,
then timed ``--runs`` times; the median is reported. ``none`` is one untiled pass. The fused
image of every tile size is compared with the untiled one (max |diff| in gray levels, <= 1).
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


def _child(tile: int | None, runs: int, threads: int, weights: str | None, q) -> None:
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
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fused = fuser.fuse(ir, vi)  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fuser.fuse(ir, vi)
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    q.put({"ms": 1000 * statistics.median(times), "peak_mb": (peak - base) / 1024, "fused": fused,
           "weights": source, "params": sum(p.numel() for p in net.parameters())})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiles", default="256,384,none")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    tiles = [None if t.strip() == "none" else int(t) for t in args.tiles.split(",")]
    if None not in tiles:
        tiles.append(None)  # the reference for the comparison
    ctx = mp.get_context("spawn")
    res = {}
    for tile in tiles:
        q = ctx.Queue()
        p = ctx.Process(target=_child, args=(tile, args.runs, args.threads, args.weights, q))
        p.start()
        res[tile] = q.get()
        p.join()
    ref = res[None]["fused"]
    print(f"IFESNet, 480x640, {args.threads} thread(s), {res[None]['params']:,} parameters, "
          f"weights: {res[None]['weights']}")
    print(f"{'tile':>6} {'ms/pair':>10} {'peak MB':>9} {'max|diff|':>10}")
    rows, ok = [], True
    for tile in tiles:
        r = res[tile]
        diff = float(np.abs(r["fused"] - ref).max() * 255)
        ok &= diff <= 1.0
        name = "none" if tile is None else str(tile)
        print(f"{name:>6} {r['ms']:>10.0f} {r['peak_mb']:>9.0f} {diff:>10.3f}{'' if diff <= 1 else '  FAIL'}")
        rows.append({"tile": name, "ms_per_pair": r["ms"], "peak_mb": r["peak_mb"], "max_diff_gray": diff})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "runs": args.runs, "rows": rows}, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
