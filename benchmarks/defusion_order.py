"""DeFusion under OpenVINO: the decoders in the official order against the distributed one, paired.

    python -m benchmarks.defusion_order [--runs 9] [--threads 2] [--size 480x640]

Builds two ``--backend openvino`` fusers with the shipped weights: one with the decoders in the
official order (concatenate, then convolve: ``distribute = False``), one as ivfuse runs them (the
first block's 1x1 convolutions before the upsampling, c convolved once; see
``ivfuse.nn.resnest.stage_on_concat``). Both graphs are compiled for the size first, then
timed alternately (the order flips every round, 0.3 s idle before each call). Prints the max
difference of the fused planes in gray levels, the per-round times, their medians and the median
of the per-round ratios (official order / distributed) with its range.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from ivfuse import backends
from ivfuse.backends import engines
from ivfuse.backends.onnx import state_digest
from ivfuse.methods import registry

from .profile_openvino import prepare


def _fuser(distribute: bool, threads: int):
    f = registry.create("defusion")
    f.net.distribute = distribute
    spec = f.graph()
    # the graph cache is keyed by weights and code, not by this switch: tell the two apart
    model = backends.model_bytes("defusion", spec, f"{state_digest(spec.module)}-distribute={distribute}")
    eng = engines.OpenVINOEngine(model, threads, "fp32", static=True)
    f.bind_step(backends.GraphStep(eng, spec, f, f.eager_step, lambda m: None))
    return f


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", default="480x640")
    args = ap.parse_args(argv)
    pair = prepare(args.size, args.threads)
    if pair is None:
        return 1
    ir, vi = pair
    fus = {v: _fuser(v, args.threads) for v in (False, True)}
    out = {v: (f.fuse(ir, vi), f.fuse(ir, vi))[1] for v, f in fus.items()}  # compile + warm-up
    diff = float(np.abs(out[True] - out[False]).max()) * 255
    print(f"max |diff| of the fused planes: {diff:.4f} gray levels")
    t: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.runs):
        for v in (False, True) if r % 2 == 0 else (True, False):
            time.sleep(0.3)
            t0 = time.perf_counter()
            fus[v].fuse(ir, vi)
            t[v].append(time.perf_counter() - t0)
    ratio = [a / b for a, b in zip(t[False], t[True], strict=True)]
    for v, name in ((False, "official order"), (True, "distributed")):
        rounds = " ".join(f"{x * 1e3:.0f}" for x in t[v])
        print(f"{name:>15}: {statistics.median(t[v]) * 1e3:.0f} ms  ({rounds})")
    med, lo, hi = statistics.median(ratio), min(ratio), max(ratio)
    print(f"paired ratio {med:.3f} ({lo:.3f}-{hi:.3f}) over {args.runs} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
