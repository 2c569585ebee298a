"""Time DeFusion fusion of one 480x640 RGB pair: the official network's eager forward and ivfuse's paths.

    python benchmarks/bench_defusion.py [--runs 3] [--threads 2] [--size 480x640] [--weights W.safetensors]
        [--no-compile] [--json out.json]

Every path fuses the same pair reflect-padded by 16 px (512x672 inside the network, as the official
test and ivfuse do). Each path is warmed up once (``first``: that call, with any compilation),
then timed ``--runs`` times; the medians of wall and process CPU time are reported as ms/pair with
their ratios to the official eager forward. Each path's fused image is
compared with the official eager float32 one: ``max |diff|`` in gray levels (x255, clamped to
[0, 1] as written to disk) must stay <= 1, else FAIL. With random weights the fused image is
mostly clamped, so the raw (unclamped) difference relative to the output's range is shown too.

Paths:
  official-eager   torch.no_grad, NCHW, encoder and unique decoder run once per source (official test)
  batched          both sources through E and D_u as one batch of 2, decoders distributed (DeNet.forward)
  ivfuse-default   ``DeFusion(net).run``: batched, channels-last, inference_mode (``ivfuse fuse -m defusion``)
  ivfuse-compile   ``DeFusion(net, compile=True)`` (``-p compile=true``: static shapes, frozen weights)

Weights: the shipped ones when installed, else ``--weights``, else a randomly initialised network
(timings do not depend on the values).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ivfuse.methods.defusion import DeFusion, DeNet, load_weights
from ivfuse.methods.registry import weights_path

PAD = 16


def _net(weights: str | None) -> tuple[DeNet, str]:
    shipped = weights_path("defusion.safetensors")
    if weights:
        return load_weights(weights)[0], weights
    if shipped.is_file():
        return load_weights(str(shipped))[0], "shipped"
    torch.manual_seed(0)
    return DeNet().eval(), "random init"


def _pair(h: int = 480, w: int = 640) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(9 * xx) * np.cos(7 * yy), np.cos(13 * xx + 5 * yy), np.sin(5 * yy)], -1)
    under = np.clip(0.15 + 0.1 * base + 0.02 * rng.random((h, w, 3)), 0, 1).astype(np.float32)
    over = np.clip(0.75 + 0.25 * base + 0.02 * rng.random((h, w, 3)), 0, 1).astype(np.float32)
    return over, under  # brighter first, as the official MEF test feeds them


def _official(net: DeNet) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The official test forward: each source through the encoder and the unique decoder alone,
    and the decoders in the official order (concatenate, then convolve: ``distribute`` off), on a
    copy of ``net``."""
    net = copy.deepcopy(net)
    net.distribute = False

    def run(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        size = x1.shape[-2:]
        s1, s2 = net.encoder(x1), net.encoder(x2)
        c = net.ensembler(torch.cat([s1[2], s2[2]], dim=1))
        f_c = net.common_decoder(c, s1, s2, size)
        f_u1 = net.unique_decoder(c, s1, size)
        f_u2 = net.unique_decoder(c, s2, size)
        net.head_unique(f_u1), net.head_unique(f_u2), net.head_unique(f_c)  # the script renders them too
        return net.head_fused(f_u1 + f_u2 + f_c)

    return run


def _time(fn: Callable[[], np.ndarray], runs: int) -> tuple[float, float, float, np.ndarray]:
    """(first call s, median wall ms, median CPU ms of the process, output)."""
    t0 = time.perf_counter()
    out = fn()  # warm-up (and compilation)
    first = time.perf_counter() - t0
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return first, statistics.median(wall) * 1000.0, statistics.median(cpu) * 1000.0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", default="480x640", help="HxW of the pair")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, source = _net(args.weights)
    a, b = _pair(*(int(v) for v in args.size.lower().split("x")))
    h, w = a.shape[:2]
    t = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2)
    t = F.pad(t, (PAD, PAD, PAD, PAD), mode="reflect").contiguous()
    x1, x2 = t[:1], t[1:]

    def crop(y: torch.Tensor) -> np.ndarray:
        return y[0, :, PAD : PAD + h, PAD : PAD + w].permute(1, 2, 0).float().numpy()

    official = _official(net)

    def eager() -> np.ndarray:
        with torch.no_grad():
            return crop(official(x1, x2))

    def batched() -> np.ndarray:
        with torch.no_grad():
            return crop(net(x1, x2)["fused"])

    paths: list[tuple[str, Callable[[], np.ndarray]]] = [("official-eager", eager), ("batched", batched)]
    fast = DeFusion(DeNet().eval(), pad=PAD)
    fast.net.load_state_dict(net.state_dict())
    paths.append(("ivfuse-default", lambda: _raw(fast, a, b)))
    if not args.no_compile:
        comp = DeFusion(DeNet().eval(), pad=PAD, compile=True)
        comp.net.load_state_dict(net.state_dict())
        paths.append(("ivfuse-compile", lambda: _raw(comp, a, b)))

    print(
        f"DeFusion, one {w}x{h} RGB pair (padded to {w + 2 * PAD}x{h + 2 * PAD}), weights: {source}, "
        f"{args.threads} threads, median of {args.runs}"
    )
    rows = []
    ref = None
    base_ms = base_cpu = 1.0
    for name, fn in paths:
        first, ms, cpu, out = _time(fn, args.runs)
        if ref is None:
            ref, base_ms, base_cpu = out, ms, cpu
        gray = float(np.abs(np.clip(out, 0, 1) - np.clip(ref, 0, 1)).max() * 255)
        span = float(np.abs(ref).max()) or 1.0
        raw = float(np.abs(out - ref).max() / span * 255)
        ok = gray <= 1.0
        rows.append(
            {
                "path": name,
                "ms": round(ms, 1),
                "cpu_ms": round(cpu, 1),
                "speedup": round(base_ms / ms, 2),
                "speedup_cpu": round(base_cpu / cpu, 2),
                "first_call_s": round(first, 1),
                "max_diff_gray": round(gray, 4),
                "max_diff_raw_rel_gray": round(raw, 4),
                "ok": ok,
            }
        )
        print(
            f"{name:16s} {ms:9.1f} ms wall {cpu:9.1f} ms CPU  {base_ms / ms:5.2f}x / {base_cpu / cpu:5.2f}x  "
            f"first {first:6.1f} s  max|diff| {gray:.4f} gray (raw {raw:.4f} of range)  "
            f"{'ok' if ok else 'FAIL'}"
        )
    if args.json:
        with open(args.json, "w") as f:
            meta = {"weights": source, "threads": args.threads, "runs": args.runs}
            json.dump({**meta, "rows": rows}, f, indent=2)


def _raw(fuser: DeFusion, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The fuser's path up to the fused head, unclamped (to compare untrained networks too)."""
    with torch.inference_mode():
        t = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2)
        t = F.pad(t, (PAD, PAD, PAD, PAD), mode="reflect").contiguous(memory_format=torch.channels_last)
        y = fuser._forward(t[:1], t[1:])["fused"]
        h, w = a.shape[:2]
        return y[0, :, PAD : PAD + h, PAD : PAD + w].permute(1, 2, 0).float().numpy()


if __name__ == "__main__":
    main()
