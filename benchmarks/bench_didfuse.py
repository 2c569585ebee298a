"""Time DIDFuse fusion of one 480x640 pair: eager fp32 and every faster inference path.

    python benchmarks/bench_didfuse.py [--runs 5] [--threads 2] [--weights W.safetensors]
        [--no-compile] [--json out.json]

Each path is warmed up once, then timed ``--runs`` times; the median is reported as ms/pair
and pairs/s with its ratio to plain eager fp32 (``torch.no_grad``, the official code's way).
Every path's output is compared with eager fp32 on the same input and must stay within one
gray level (max |diff| * 255 <= 1); a path that does not is marked FAIL.

Paths (cumulative where the name says so):
  eager-fp32          no_grad, encoder run once per source (official test script)
  inference_mode      torch.inference_mode instead of no_grad
  +batched-encoder    both sources through the encoder as one batch of 2
  +folded-bn          BatchNorm folded into the convolutions (fold_batchnorm)
  +channels-last      channels_last memory format (oneDNN blocked convolutions)
  +compile            torch.compile (inductor) of the fused network
  ivfuse-default      the library's fp32 path: ``DIDFuse(net)`` (what ``ivfuse fuse -m didfuse`` runs)
  ivfuse-compile      ``DIDFuse(net, compile=True)`` (``-p compile=true``)
  bf16-autocast       the whole +channels-last network under bfloat16 autocast (for reference:
                      rounding input and output to bf16 alone costs up to a gray level)
  bf16-mixed          ivfuse's ``precision="bf16"``: conv2-conv6 in bf16, conv1, conv7 and the
                      skip f1 in fp32 (CPUs with AVX512-BF16/AMX)
  bf16-mixed+compile  ivfuse's ``precision="bf16", compile=True``

Weights: the shipped ones when installed, else ``--weights``, else a randomly initialised
network with BN statistics from random batches (timings do not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from ivfuse.methods._torch import cpu_has_bf16
from ivfuse.methods.didfuse import DIDFuse, DIDFuseNet, fold_batchnorm, load_weights
from ivfuse.methods.registry import weights_path
from ivfuse.nn.fusion import RULES


def _net(weights: str | None) -> tuple[DIDFuseNet, str]:
    shipped = weights_path("didfuse.safetensors")
    if weights:
        return load_weights(weights)[0], weights
    if shipped.is_file():
        return load_weights(str(shipped))[0], "shipped"
    torch.manual_seed(0)
    net = DIDFuseNet()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64))
    return net.eval(), "random init"


def _pair(h: int = 480, w: int = 640) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from ivfuse.data.synthetic import night_scene  # type: ignore[attr-defined]

        s = night_scene(h, w, seed=0)
        vi = s.vi.mean(axis=2) if s.vi.ndim == 3 else s.vi
        ir, vi = s.ir, vi
    except Exception:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        ir = np.clip(0.4 + 0.3 * np.sin(9 * xx) * np.cos(7 * yy) + 0.05 * rng.random((h, w)), 0, 1)
        vi = np.clip(0.5 + 0.3 * np.cos(13 * xx + 5 * yy) + 0.1 * rng.random((h, w)), 0, 1)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]  # noqa: E731
    return t(ir), t(vi)


def _sequential(net: DIDFuseNet, rule: str) -> Callable:
    fuse = RULES[rule]

    def run(ir, vi):
        fi, fv = net.encoder(ir), net.encoder(vi)
        return net.decoder(*(fuse(a, b) for a, b in zip(fi, fv, strict=True)))

    return run


def _batched(net: DIDFuseNet, rule: str, memory_format=torch.contiguous_format) -> Callable:
    fuse = RULES[rule]

    def run(ir, vi):
        x = torch.cat([ir, vi]).contiguous(memory_format=memory_format)
        feats = net.encoder(x)
        return net.decoder(*(fuse(f[0:1], f[1:2]) for f in feats))

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--rule", default="sum", choices=sorted(RULES))
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    net, source = _net(args.weights)
    folded = fold_batchnorm(net)
    folded_cl = fold_batchnorm(net).to(memory_format=torch.channels_last)
    ir, vi = _pair()
    rule = args.rule
    paths: list[tuple[str, Callable, Callable]] = [
        ("eager-fp32", _sequential(net, rule), torch.no_grad),
        ("inference_mode", _sequential(net, rule), torch.inference_mode),
        ("+batched-encoder", _batched(net, rule), torch.inference_mode),
        ("+folded-bn", _batched(folded, rule), torch.inference_mode),
        ("+channels-last", _batched(folded_cl, rule, torch.channels_last), torch.inference_mode),
    ]
    if not args.no_compile:
        compiled = torch.compile(_batched(folded_cl, rule, torch.channels_last), dynamic=False)
        paths.append(("+compile", compiled, torch.inference_mode))
    # what `ivfuse fuse -m didfuse` runs (folded BN, channels-last, one encoder pass per source)
    paths.append(("ivfuse-default", DIDFuse(net, rule=rule, tile=None).fuse_tensor, torch.inference_mode))
    if not args.no_compile:
        lib_c = DIDFuse(net, rule=rule, tile=None, compile=True)
        paths.append(("ivfuse-compile", lib_c.fuse_tensor, torch.inference_mode))
    bf16_ok = cpu_has_bf16()
    if not bf16_ok:
        print(
            f"bf16 paths skipped: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native "
            "bfloat16 support in oneDNN (needs AVX512-BF16 or AMX)"
        )
    if bf16_ok:
        cl = _batched(folded_cl, rule, torch.channels_last)

        def bf16(ir_, vi_):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return cl(ir_, vi_).float()

        paths.append(("bf16-autocast", bf16, torch.inference_mode))
        mixed = DIDFuse(net, rule=rule, tile=None, precision="bf16")
        paths.append(("bf16-mixed", mixed.fuse_tensor, torch.inference_mode))
        if not args.no_compile:
            mixed_c = DIDFuse(net, rule=rule, tile=None, precision="bf16", compile=True)
            paths.append(("bf16-mixed+compile", mixed_c.fuse_tensor, torch.inference_mode))

    print(
        f"DIDFuse fusion, 1x1x480x640 pair, rule={rule}, weights: {source}, "
        f"torch {torch.__version__}, {args.threads} threads, {args.runs} timed runs (median)"
    )
    print(f"{'path':<19} {'ms/pair':>9} {'pairs/s':>8} {'vs eager':>9} {'max diff':>9}  check")
    # warm-up (and compilation) of every path, then the timed runs interleaved round-robin so
    # that load drifts on a shared machine hit every path alike
    outs: dict[str, torch.Tensor] = {}
    live = []
    for name, fn, ctx in paths:
        try:
            with ctx():
                outs[name] = fn(ir, vi).float()
            live.append((name, fn, ctx))
        except Exception as e:  # e.g. no C++ compiler for inductor
            print(f"{name:<19} skipped: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
    times: dict[str, list[float]] = {name: [] for name, _, _ in live}
    for _ in range(args.runs):
        for name, fn, ctx in live:
            with ctx():
                t0 = time.perf_counter()
                fn(ir, vi)
                times[name].append(time.perf_counter() - t0)
    ref = outs["eager-fp32"]
    base = statistics.median(times["eager-fp32"])
    results = []
    for name, _, _ in live:
        med = statistics.median(times[name])
        diff = float((outs[name] - ref).abs().max()) * 255
        ok = diff <= 1.0
        results.append(
            {
                "path": name,
                "ms_per_pair": med * 1e3,
                "pairs_per_s": 1 / med,
                "speedup_vs_eager": base / med,
                "max_diff_gray_levels": diff,
                "within_1_gray": ok,
                "times_s": times[name],
            }  # fmt: skip
        )
        print(
            f"{name:<19} {med * 1e3:9.1f} {1 / med:8.3f} {base / med:8.2f}x {diff:9.4f}  "
            f"{'ok' if ok else 'FAIL'}"
        )
    valid = [r for r in results if r["within_1_gray"]]
    best = max(valid, key=lambda r: r["speedup_vs_eager"])
    print(f"best path within 1 gray level: {best['path']}, {best['speedup_vs_eager']:.2f}x eager fp32")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"source": source, "threads": args.threads, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
