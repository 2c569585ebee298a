"""Time SSL-WAEIE fusion of one 480x640 pair (ms/pair), eager network pass vs the library's fuser.

    python benchmarks/bench_sslwaeie.py [--runs 5] [--threads 2] [--weights W.safetensors] [--json out.json]

Each path is warmed up once, then timed ``--runs`` times, interleaved round-robin (load drift
on a shared machine hits every path alike); the medians of wall and CPU time are reported as
ms/pair, with the wall-time ratio to the eager pass. Every path's fused image is compared with
the eager one (max |diff| in gray levels, must be <= 1).

Paths:
  eager-fp32      ``SSLWAEIENet`` under ``torch.no_grad``: encoder on each source, CIEN, Eq. (1)
  one-tile        ``SSLWAEIE(net, tile=None).fuse``: the fuser (``torch.inference_mode``,
                  channels-last) in one pass over the whole image
  ivfuse-default  ``SSLWAEIE(net).fuse`` on numpy planes, what ``ivfuse fuse -m sslwaeie`` runs:
                  tiles of 256 px with a 16-px margin (6 tiles at 480x640), channels-last

Weights: the shipped ones when installed, else ``--weights``, else a random init (timings do
not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

from ivfuse.methods.registry import weights_path
from ivfuse.methods.sslwaeie import SSLWAEIE, SSLWAEIENet, load_weights, parameter_count


def _net(weights: str | None) -> tuple[SSLWAEIENet, str]:
    shipped = weights_path("sslwaeie.safetensors")
    if weights:
        return load_weights(weights)[0], weights
    if shipped.is_file():
        return load_weights(str(shipped))[0], "shipped"
    torch.manual_seed(0)
    return SSLWAEIENet().eval(), "random init"


def _pair(h: int = 480, w: int = 640) -> tuple[np.ndarray, np.ndarray]:
    from ivfuse.data.synthetic import night_scene

    s = night_scene(h, w, seed=0)
    vi = s.vi.mean(axis=2) if s.vi.ndim == 3 else s.vi
    return np.ascontiguousarray(s.ir, dtype=np.float32), np.ascontiguousarray(vi, dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    net, source = _net(args.weights)
    ir, vi = _pair()
    ti, tv = torch.from_numpy(ir)[None, None], torch.from_numpy(vi)[None, None]

    def eager(_a, _b):
        with torch.no_grad():
            return net(ti, tv, "cien")["fused"][0, 0].numpy()

    import copy

    one = SSLWAEIE(copy.deepcopy(net), tile=None)  # the fuser makes its network channels-last
    fuser = SSLWAEIE(copy.deepcopy(net))
    paths = [("eager-fp32", eager), ("one-tile", one.fuse), ("ivfuse-default", fuser.fuse)]
    print(
        f"SSL-WAEIE fusion, 480x640 pair, weights: {source}, {parameter_count(net)} parameters, "
        f"torch {torch.__version__}, {args.threads} threads, {args.runs} timed runs (median)"
    )
    print(f"{'path':<15} {'ms/pair':>9} {'cpu ms':>9} {'pairs/s':>8} {'vs eager':>9} {'max diff':>9}  check")
    outs = {name: fn(ir, vi) for name, fn in paths}  # warm-up
    times: dict[str, list[float]] = {name: [] for name, _ in paths}
    cpu: dict[str, list[float]] = {name: [] for name, _ in paths}
    for _ in range(args.runs):
        for name, fn in paths:
            t0, c0 = time.perf_counter(), time.process_time()
            fn(ir, vi)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    ref = np.clip(outs["eager-fp32"], 0, 1)
    base = statistics.median(times["eager-fp32"])
    results = []
    for name, _ in paths:
        med = statistics.median(times[name])
        cpu_med = statistics.median(cpu[name])
        diff = float(np.abs(np.clip(outs[name], 0, 1) - ref).max()) * 255
        ok = diff <= 1.0
        results.append(
            {
                "path": name,
                "ms_per_pair": med * 1e3,
                "cpu_ms_per_pair": cpu_med * 1e3,
                "pairs_per_s": 1 / med,
                "speedup_vs_eager": base / med,
                "max_diff_gray_levels": diff,
                "within_1_gray": ok,
                "times_s": times[name],
            }
        )
        print(
            f"{name:<15} {med * 1e3:9.1f} {cpu_med * 1e3:9.1f} {1 / med:8.3f} {base / med:8.2f}x "
            f"{diff:9.4f}  "
            f"{'ok' if ok else 'FAIL'}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"source": source, "threads": args.threads, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
