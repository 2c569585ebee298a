"""Time JCAE fusion of one 480x640 pair: the plain eager pass vs the library's fast path.

    python benchmarks/bench_jcae.py [--runs 5] [--threads 2] [--weights W.safetensors]
        [--rule paper] [--no-compile] [--json out.json]

Each path is warmed up once, then timed ``--runs`` times, interleaved round-robin (load drift
on a shared machine hits every path alike); the medians of wall and CPU time are reported as
ms/pair, with the wall-time ratio to eager fp32. Every path's output is compared with eager
fp32 and must stay within one gray level (max |diff| * 255 <= 1), else it is marked FAIL.

Paths:
  eager-fp32      ``JCAENet.fuse`` under ``torch.no_grad``: 3-channel replicated input, every
                  branch and both decoder passes one after the other (the paper's description)
  inference_mode  the same under ``torch.inference_mode``
  ivfuse-default  ``JCAE(net)``, what ``ivfuse fuse -m jcae`` runs: input normalisation folded
                  into 1-channel first convolutions, channels-last, common branch on both
                  sources as one batch, the two decoder passes as one batch of 2
  ivfuse-compile  ``JCAE(net, compile=True)`` (``-p compile=true``)

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

from ivfuse.methods.jcae import JCAE, JCAENet, load_weights
from ivfuse.methods.registry import weights_path


def _net(weights: str | None) -> tuple[JCAENet, str]:
    shipped = weights_path("jcae.safetensors")
    if weights:
        return load_weights(weights)[0], weights
    if shipped.is_file():
        return load_weights(str(shipped))[0], "shipped"
    torch.manual_seed(0)
    return JCAENet().eval(), "random init"


def _pair(h: int = 480, w: int = 640) -> tuple[torch.Tensor, torch.Tensor]:
    from ivfuse.data.synthetic import night_scene

    s = night_scene(h, w, seed=0)
    vi = s.vi.mean(axis=2) if s.vi.ndim == 3 else s.vi
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]  # noqa: E731
    return t(s.ir), t(vi)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--rule", default="paper", choices=["paper", "sum", "average"])
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    net, source = _net(args.weights)
    ir, vi = _pair()
    rule = args.rule

    def eager(a, b):
        return net.fuse(a, b, rule)

    paths = [
        ("eager-fp32", eager, torch.no_grad),
        ("inference_mode", eager, torch.inference_mode),
        ("ivfuse-default", JCAE(net, rule=rule).fuse_tensor, torch.inference_mode),
    ]
    if not args.no_compile:
        paths.append(("ivfuse-compile", JCAE(net, rule=rule, compile=True).fuse_tensor, torch.inference_mode))
    print(
        f"JCAE fusion, 1x1x480x640 pair, rule={rule}, weights: {source}, "
        f"torch {torch.__version__}, {args.threads} threads, {args.runs} timed runs (median)"
    )
    print(f"{'path':<15} {'ms/pair':>9} {'cpu ms':>9} {'pairs/s':>8} {'vs eager':>9} {'max diff':>9}  check")
    outs: dict[str, torch.Tensor] = {}
    live = []
    for name, fn, ctx in paths:
        try:
            with ctx():
                outs[name] = fn(ir, vi).float()
            live.append((name, fn, ctx))
        except Exception as e:  # e.g. no C++ compiler for inductor
            print(f"{name:<15} skipped: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
    times: dict[str, list[float]] = {name: [] for name, _, _ in live}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in live}
    for _ in range(args.runs):
        for name, fn, ctx in live:
            with ctx():
                t0, c0 = time.perf_counter(), time.process_time()
                fn(ir, vi)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    ref = outs["eager-fp32"].clamp(0, 1)
    base = statistics.median(times["eager-fp32"])
    results = []
    for name, _, _ in live:
        med = statistics.median(times[name])
        cpu_med = statistics.median(cpu[name])
        diff = float((outs[name].clamp(0, 1) - ref).abs().max()) * 255
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
            doc = {"source": source, "threads": args.threads, "rule": rule, "results": results}
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
