"""Time every deep method on one 480x640 pair for each backend and precision, interleaved or alone.

    python benchmarks/bench_deep.py [--methods didfuse,jcae,sslwaeie,ifesnet,defusion] [--runs 3]
        [--threads 1] [--size 480x640] [--alone] [--json out.json]

``--alone`` times each variant in a fresh process: interleaved in one process, an engine's worker
threads (OpenVINO, ONNX Runtime) can keep spinning after their call and slow the next variant's
eager torch run (the official forward by up to 1.7x was seen), so the two modes can disagree.

For each method the variants are: ``torch`` fp32 (ivfuse's eager path, the baseline), ``onnxruntime``
fp32, ``openvino`` fp32, ``openvino`` bf16 (CPUs with native bf16), ``torch`` bf16 (didfuse's own
mixed path) and, for didfuse and defusion, the ``official`` network's eager forward as the official
test scripts run it (reimplemented in benchmarks/bench_didfuse.py and bench_defusion.py). Each
variant is built (``first`` = load + export + compile + the first call at this size, what a folder
run pays once), then all variants are timed in turn ``--runs`` times (interleaved) and the median
wall time and process CPU time per pair are reported, with the ratio to the method's torch fp32 and
to the official forward, the max difference from torch fp32 in gray levels (fused plane, x255) and
the peak resident memory above the process's memory before the call (sampled every 2 ms).

Weights: the shipped ones; ifesnet and defusion ship none, so they run a seeded random network
(timings do not depend on the values; DeFusion's heads are scaled so that its outputs lie in
[0, 1] instead of reaching ~500, where fp32 rounding alone moves them by tenths of a gray level).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ivfuse import backends
from ivfuse.backends import engines
from ivfuse.data.synthetic import night_scene
from ivfuse.methods import registry

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Peak:
    """Peak RSS above the RSS at entry, sampled every 2 ms in a thread."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


#: multiply-adds x 2 of DIDFuse's fusion graph on one 480x640 pair: two encoder passes (conv1 1->64,
#: conv2-4 64->64) and one decoder pass (conv5-6 128->64, conv7 128->1), all 3x3 (~226 GFLOP)
DIDFUSE_FLOP_480x640 = 2 * 9 * 480 * 640 * (2 * (64 + 3 * 64 * 64) + 2 * 128 * 64 + 128)


def conv_limit(threads: int, h: int = 480, w: int = 640, reps: int = 3) -> float:
    """fp32 GFLOP/s of one large 3x3 convolution (64->64 channels, NHWC, oneDNN) on ``threads``
    threads, by CPU time: the compute limit a 3x3-convolution network reaches at best here."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 64, h, w).contiguous(memory_format=torch.channels_last)
    flop = 2 * 9 * 64 * 64 * h * w
    with torch.inference_mode():
        conv(x)
        best = float("inf")
        for _ in range(reps):
            c0 = time.process_time()
            conv(x)
            best = min(best, time.process_time() - c0)
    return flop / best / 1e9


def _fuser(method: str, **kw):
    if registry.info(method).weights_shipped:
        return registry.create(method, **kw)
    torch.manual_seed(0)
    if method == "ifesnet":
        from ivfuse.methods.ifesnet import Config, IFESNet, IFESNetModel

        return IFESNet(IFESNetModel(Config()).eval(), **kw)
    from ivfuse.methods.defusion import DeFusion, unit_range_denet

    return DeFusion(unit_range_denet(0), **kw)


def _official(method: str, fuser) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The official network's eager forward on the same pair (the test script's way), or None."""
    if method == "didfuse":
        run = _module("bench_didfuse")._sequential(fuser.net, fuser.rule)

        def fuse(ir, vi):
            with torch.no_grad():
                out = run(torch.from_numpy(ir)[None, None], torch.from_numpy(vi)[None, None])
            return np.clip(out[0, 0].numpy(), 0, 1)

        return fuse
    if method == "defusion":
        # the fuser converts its network to channels-last in place; the official code runs NCHW
        import copy

        net = copy.deepcopy(fuser.net).to(memory_format=torch.contiguous_format)
        run = _module("bench_defusion")._official(net)
        import torch.nn.functional as F

        luma = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)

        def fuse(ir, vi):
            h, w = ir.shape
            with torch.no_grad():
                t = torch.from_numpy(np.stack([ir, vi]))[:, None].expand(-1, 3, -1, -1)
                t = F.pad(t, (16, 16, 16, 16), mode="reflect")
                out = run(t[:1], t[1:])[..., 16 : 16 + h, 16 : 16 + w].clamp(0, 1)
            return np.clip((out * luma).sum(1)[0].numpy(), 0, 1)

        return fuse
    return None


def _variants(method: str) -> list[tuple[str, str]]:
    v = [("torch", "fp32")]
    v += [(n, "fp32") for n in ("onnxruntime", "openvino") if engines.installed(n)]
    if engines.cpu_bf16("openvino"):
        v.append(("openvino", "bf16"))
    if "precision" in registry.defaults(method):
        v.append(("torch", "bf16"))
    if method == "defusion":
        v.append(("torch-compile", "fp32"))  # torch.compile, static shapes, frozen weights
    if method in ("didfuse", "defusion"):
        v.append(("official", "fp32"))
    return v


def _build(method: str, backend: str, precision: str):
    kw = {"precision": "bf16"} if (backend, precision) == ("torch", "bf16") else {}
    if backend == "torch-compile":
        kw["compile"] = True
    fuser = _fuser(method, **kw)
    if backend == "official":
        return _official(method, fuser), "official"
    if backend == "torch-compile":
        return fuser.fuse, backend
    if backend != "torch":
        b = backends.bind(fuser, method, backends.Plan(backend, precision, candidates=(backend,)))
        if b.backend != backend:
            return None, f"fell back to {b.backend}"
    return fuser.fuse, backend


def _pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    s = night_scene(h, w, seed=0)
    ir = np.asarray(s.ir, np.float32)
    vi = np.asarray(s.vi.mean(axis=2) if s.vi.ndim == 3 else s.vi, np.float32)
    return ir, vi


def _build_entry(method: str, backend: str, precision: str, ir: np.ndarray, vi: np.ndarray) -> dict | None:
    """Build one variant and make its first call (timed: what a folder run pays once)."""
    t0, c0 = time.perf_counter(), time.process_time()
    with Peak() as pk:
        fn, state = _build(method, backend, precision)
        out = fn(ir, vi) if fn is not None else None
    first = time.perf_counter() - t0, time.process_time() - c0
    if fn is None:
        print(f"{method} {backend} {precision}: {state}", file=sys.stderr)
        return None
    return {
        "backend": backend,
        "precision": precision,
        "fn": fn,
        "out": out,
        "first_s": first[0],
        "first_cpu_s": first[1],
        "peak_mb": pk.mb,
        "wall": [],
        "cpu": [],
    }


def _time_once(b: dict, ir: np.ndarray, vi: np.ndarray) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    with Peak() as pk:
        b["out"] = b["fn"](ir, vi)
    b["wall"].append(time.perf_counter() - t0)
    b["cpu"].append(time.process_time() - c0)
    b["peak_mb"] = max(b["peak_mb"], pk.mb)


def _child(spec: str, out: str) -> int:
    """--child: time one variant (``method,backend,precision,HxW,runs,threads``) in this fresh
    interpreter and write its entry to ``out`` (.npz: the fused plane plus the timings as JSON)."""
    method, backend, precision, size, runs, threads = spec.split(",")
    torch.set_num_threads(int(threads))
    h, w = (int(s) for s in size.split("x"))
    ir, vi = _pair(h, w)
    b = _build_entry(method, backend, precision, ir, vi)
    if b is None:
        return 3
    for _ in range(int(runs)):
        _time_once(b, ir, vi)
    b.pop("fn")
    fused = np.asarray(b.pop("out"))
    np.savez(out, fused=fused, meta=np.frombuffer(json.dumps(b).encode(), np.uint8))
    return 0


def _in_child(
    method: str, backend: str, precision: str, size: tuple[int, int], runs: int, threads: int
) -> dict | None:
    """--alone: one variant in a fresh interpreter started as a user starts ``ivfuse`` (a new
    ``python`` process). Not multiprocessing's spawn/forkserver: in such a child OpenVINO's first
    few calls ran at one core's speed here (wall = CPU time, ~2x slower), which a plain new process
    does not show."""
    import subprocess
    import tempfile

    spec = f"{method},{backend},{precision},{size[0]}x{size[1]},{runs},{threads}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "entry.npz"
        rc = subprocess.run([sys.executable, __file__, "--child", spec, "--child-out", str(out)]).returncode
        if rc != 0 or not out.exists():
            return None
        with np.load(out) as z:
            b = json.loads(z["meta"].tobytes().decode())
            b["out"] = z["fused"]
    return b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="didfuse,jcae,sslwaeie,ifesnet,defusion")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", default="480x640")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--alone",
        action="store_true",
        help="time each variant alone in a fresh process instead of interleaved in this one",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.child, args.child_out)
    torch.set_num_threads(args.threads)
    h, w = (int(s) for s in args.size.split("x"))
    ir, vi = _pair(h, w)
    mode = "each variant alone in a fresh process" if args.alone else "interleaved"
    print(
        f"# {_cpu()}, torch {torch.__version__}, threads {args.threads}, "
        f"{h}x{w} pair, median of {args.runs}, {mode}; load average {os.getloadavg()[0]:.2f}"
    )
    gflops = conv_limit(args.threads)
    print(
        f"# one 64->64 3x3 conv at {h}x{w}: {gflops:.0f} GFLOP/s fp32 by CPU time; DIDFuse's graph "
        f"({DIDFUSE_FLOP_480x640 / 1e9:.0f} GFLOP at 480x640) cannot take less than "
        f"{DIDFUSE_FLOP_480x640 / gflops / 1e6:.0f} ms of CPU time here"
    )
    rows = []
    for method in args.methods.split(","):
        if args.alone:
            built = [
                r
                for v in _variants(method)
                if (r := _in_child(method, *v, (h, w), args.runs, args.threads)) is not None
            ]
        else:
            built = [b for v in _variants(method) if (b := _build_entry(method, *v, ir, vi)) is not None]
            for _ in range(args.runs):
                for b in built:
                    _time_once(b, ir, vi)
        base = built[0]
        base_ms = statistics.median(base["wall"]) * 1e3
        off = next((b for b in built if b["backend"] == "official"), None)
        off_ms = statistics.median(off["wall"]) * 1e3 if off else None
        base_cpu = statistics.median(base["cpu"]) * 1e3
        off_cpu = statistics.median(off["cpu"]) * 1e3 if off else None
        for b in built:
            ms = statistics.median(b["wall"]) * 1e3
            cpu = statistics.median(b["cpu"]) * 1e3
            row = {
                "method": method,
                "backend": b["backend"],
                "precision": b["precision"],
                "ms": ms,
                "cpu_ms": cpu,
                "vs_torch": base_ms / ms,
                "vs_official": off_ms / ms if off_ms else None,
                "vs_torch_cpu": base_cpu / cpu,
                "vs_official_cpu": off_cpu / cpu if off_cpu else None,
                "max_diff_gray": float(np.abs(np.asarray(b["out"]) - np.asarray(base["out"])).max()) * 255,
                "first_s": b["first_s"],
                "first_cpu_s": b["first_cpu_s"],
                "peak_mb": b["peak_mb"],
            }
            rows.append(row)
    print(
        "| method | backend | precision | ms/pair wall / CPU | x vs torch fp32 wall / CPU | "
        "x vs official wall / CPU | max diff (gray) | first call s wall / CPU | peak MB |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        vo = f"{r['vs_official']:.2f} / {r['vs_official_cpu']:.2f}" if r["vs_official"] else "-"
        print(
            f"| {r['method']} | {r['backend']} | {r['precision']} | {r['ms']:.0f} / {r['cpu_ms']:.0f} | "
            f"{r['vs_torch']:.2f} / {r['vs_torch_cpu']:.2f} | {vo} | {r['max_diff_gray']:.4f} | "
            f"{r['first_s']:.1f} / {r['first_cpu_s']:.1f} | {r['peak_mb']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
