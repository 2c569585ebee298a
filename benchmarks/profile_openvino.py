"""Where OpenVINO spends a deep method's fusion time: per-layer-type totals from its perf counters.

    python -m benchmarks.profile_openvino [--method defusion] [--size 480x640] [--threads 2]
        [--precision fp32] [--top 15] [--nodes 40]

Builds the method's fusion step as ``--backend openvino`` runs it (the same exported graph, the
shipped weights), compiles that graph once more with ``PERF_COUNT`` on, fuses one synthetic pair
and prints, per OpenVINO node type and kernel, the summed node time, its share and the node count.
The convolution share bounds what any rewrite of the rest of the graph could gain: with every
non-convolution node free the pair would still take the convolutions' time.
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import torch

from ivfuse import backends
from ivfuse.backends import engines
from ivfuse.backends.onnx import state_digest
from ivfuse.data.synthetic import night_scene
from ivfuse.methods import registry


def prepare(size: str, threads: int) -> tuple[np.ndarray, np.ndarray] | None:
    """None (said) when OpenVINO is not installed; else set torch's threads and return the
    synthetic night scene of ``size`` ("HxW"): the infrared plane and the visible luma."""
    if not engines.installed("openvino"):
        print("openvino is not installed (pip install -e '.[fast]')")
        return None
    torch.set_num_threads(threads)
    h, w = (int(v) for v in size.split("x"))
    s = night_scene(h, w, seed=0)
    vi = s.vi.mean(axis=2) if s.vi.ndim == 3 else s.vi
    return np.asarray(s.ir, np.float32), np.asarray(vi, np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="defusion")
    ap.add_argument("--size", default="480x640")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--dynamic", action="store_true", help="the dynamic-shape graph (not per-size)")
    ap.add_argument("--nodes", type=int, default=0, help="also list the N slowest nodes and shapes")
    args = ap.parse_args(argv)
    pair = prepare(args.size, args.threads)
    if pair is None:
        return 1
    ir, vi = pair
    h, w = ir.shape

    fuser = registry.create(args.method)
    spec = fuser.graph()
    model = backends.model_bytes(args.method, spec, state_digest(spec.module))
    eng = engines.OpenVINOEngine(
        model, args.threads, args.precision, static=not args.dynamic, perf_count=True
    )
    fuser.bind_step(backends.GraphStep(eng, spec, fuser, fuser.eager_step, lambda m: None))
    for _ in range(2):  # warm-up: first-size compilation
        fuser.fuse(ir, vi)
    t0 = time.perf_counter()
    fuser.fuse(ir, vi)
    wall = time.perf_counter() - t0

    by: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    kernel: collections.Counter = collections.Counter()
    for pi in eng.request.profiling_info:
        us = pi.real_time.total_seconds() * 1e6
        by[pi.node_type] += us
        count[pi.node_type] += 1
        kernel[(pi.node_type, pi.exec_type)] += us
    total = sum(by.values()) or 1.0
    conv = sum(v for k, v in by.items() if "Convolution" in k)
    print(
        f"# {args.method}, {h}x{w} pair, OpenVINO {args.precision}, {args.threads} threads, "
        f"{'dynamic' if args.dynamic else 'static'} shapes: "
        f"fuse {wall * 1e3:.0f} ms wall, node time {total / 1e3:.0f} ms, of it convolutions "
        f"{conv / 1e3:.0f} ms ({100 * conv / total:.0f} %)"
    )
    print("| node type | ms | share | nodes |")
    print("|---|---:|---:|---:|")
    for k, v in by.most_common(args.top):
        print(f"| {k} | {v / 1e3:.1f} | {100 * v / total:.1f} % | {count[k]} |")
    print("\n| node type | kernel | ms |")
    print("|---|---|---:|")
    for (t, e), v in kernel.most_common(args.top):
        print(f"| {t} | {e} | {v / 1e3:.1f} |")
    if args.nodes:
        compiled = eng._compiled[next(reversed(eng._compiled))][0]
        shapes = {
            op.get_friendly_name(): "x".join(str(d) for d in op.get_output_partial_shape(0).to_shape())
            for op in compiled.get_runtime_model().get_ops()
            if op.get_output_size() and op.get_output_partial_shape(0).is_static
        }
        rows = sorted(eng.request.profiling_info, key=lambda pi: -pi.real_time.total_seconds())
        print("\n| node | type | kernel | output | ms |")
        print("|---|---|---|---|---:|")
        for pi in rows[: args.nodes]:
            ms = pi.real_time.total_seconds() * 1e3
            print(
                f"| {pi.node_name[-60:]} | {pi.node_type} | {pi.exec_type} | "
                f"{shapes.get(pi.node_name, '?')} | {ms:.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
