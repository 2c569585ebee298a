"""Time every deep method on one 480x640 pair for each backend and precision, interleaved or alone.

    python -m benchmarks.bench_deep [--methods didfuse,defusion] [--runs 3]
        [--threads 1] [--size 480x640] [--alone [--calls 2] [--gap 0.5]] [--backends openvino:fp32,official]
        [--json out.json]

Run from the repository root. ``--methods``: a comma list (default: every deep method of the
registry). For each method the variants are: ``torch`` fp32 (ivfuse's eager path, the baseline),
``onnxruntime`` fp32, ``openvino`` fp32, ``openvino`` bf16 (CPUs with native bf16), ``torch`` bf16
(methods with a bf16 torch path of their own: ``torch_bf16`` in the registry), ``torch-compile`` for
defusion and, for the methods with a module in ``benchmarks/official/`` (didfuse, defusion), the
``official`` network's eager forward as the official test scripts run it. Each variant is built
(``first`` = load + export + compile + the first call at this size, what a folder run pays once),
then timed ``--runs`` rounds, one call per variant per round. Reported: the median wall and process
CPU time per pair, the ratios to the method's torch fp32 and to the official forward as the median
over rounds of the per-round ratio (paired, so that a change of the machine's load between rounds
cancels; the range over rounds is printed too), the max difference from torch fp32 in gray levels
(fused plane, x255) and the peak resident memory above the process's memory before the call (sampled
every 2 ms).

Default: all variants in this process, interleaved (quick, but not what a user sees: an engine's
worker threads keep spinning after their call and slow the next variant; the official DIDFuse
forward was seen up to 1.7x slower so). ``--alone``: each variant truly alone, as a user's
``ivfuse`` command runs: per round, every variant in turn gets a fresh interpreter that builds it,
makes ``--calls`` timed calls (``--gap`` idle seconds before each) and exits before the next one
starts, so no other variant's threads are alive. An earlier version kept every variant's process
alive and timed them round-robin; the idle processes' thread pools contended with the active one
(DIDFuse's official forward 6.4 s inside that harness, 3.6-3.7 s alone), which inflated the
ratios. For every timed call the harness also reads /proc/stat and reports ``others``: the CPU
cores used by all other processes meanwhile (and the hypervisor's steal); a row whose ``others``
is not near 0 was not timed alone, and the script says so.

Weights: the shipped ones; a method that ships none runs a seeded random network from its training
spec (timings do not depend on the values; DeFusion's heads are scaled so that its outputs lie in
[0, 1]).
"""

from __future__ import annotations

import argparse
import json
import os
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

from . import official
from ._machine import cpu_jiffies, cpu_name, others_and_steal

#: the repository root: ``--alone`` children run ``python -m benchmarks.bench_deep`` from there
ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")


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


def deep_methods() -> list[str]:
    """Every deep method of the registry (the default of ``--methods``)."""
    return [m.name for m in registry.available() if m.family != "classical"]


def _fuser(method: str, **kw):
    info = registry.info(method)
    if info.weights_shipped:
        return registry.create(method, **kw)
    torch.manual_seed(0)
    if method == "defusion":
        from ivfuse.methods.defusion import DeFusion, unit_range_denet

        return DeFusion(unit_range_denet(0), **kw)
    config, training_spec = registry.training(method)
    return info.fuser(training_spec(config()).build_model().eval(), **kw)


def _official(method: str, fuser) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The official network's eager forward on the same pair (the test script's way), or None."""
    return official.forward(method, fuser)


def _variants(method: str, keep: str | None = None) -> list[tuple[str, str]]:
    """The variants of ``method`` on this machine; ``keep`` (``--backends``) limits them to a comma
    list of ``backend`` or ``backend:precision`` (torch fp32, the baseline, always stays first)."""
    v = _all_variants(method)
    if keep:
        want = [k.split(":") for k in keep.split(",")]
        v = [x for x in v if x == ("torch", "fp32") or any(w == [x[0]] or w == list(x) for w in want)]
    return v


def _all_variants(method: str) -> list[tuple[str, str]]:
    v = [("torch", "fp32")]
    v += [(n, "fp32") for n in ("onnxruntime", "openvino") if engines.installed(n)]
    if engines.cpu_bf16("openvino"):
        v.append(("openvino", "bf16"))
    if registry.info(method).torch_bf16:
        v.append(("torch", "bf16"))
    if method == "defusion":
        v.append(("torch-compile", "fp32"))  # torch.compile, static shapes, frozen weights
    if method in official.methods():
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


def _say(tag: str, obj) -> None:
    print(f"@@{tag} {json.dumps(obj)}", flush=True)


def _time_watched(b: dict, ir: np.ndarray, vi: np.ndarray) -> dict:
    """One timed call, plus what the rest of the machine did meanwhile: ``others`` = CPU cores used
    by every other process (machine busy time minus this process's CPU time, over the wall time),
    ``steal`` = cores the hypervisor took. Both near 0 mean the variant ran alone."""
    before = cpu_jiffies()
    _time_once(b, ir, vi)
    after = cpu_jiffies()
    wall, cpu = b["wall"][-1], b["cpu"][-1]
    return {"wall": wall, "cpu": cpu, **others_and_steal(before, after, cpu, wall)}


def _child(spec: str, out: str) -> int:
    """--child: build one variant (``method,backend,precision,HxW,threads,calls,gap``) in this fresh
    interpreter, make its first call, then time ``calls`` calls (``gap`` idle seconds before each),
    print them, write the fused plane to ``out`` and exit: the parent starts the next variant only
    after this process has ended, so no other variant's threads are alive while this one runs."""
    method, backend, precision, size, threads, calls, gap = spec.split(",")
    torch.set_num_threads(int(threads))
    h, w = (int(s) for s in size.split("x"))
    ir, vi = _pair(h, w)
    b = _build_entry(method, backend, precision, ir, vi)
    if b is None:
        _say("failed", {})
        return 3
    timed = []
    for _ in range(int(calls)):
        time.sleep(float(gap))
        timed.append(_time_watched(b, ir, vi))
    np.save(out, np.asarray(b["out"]))
    _say(
        "done",
        {"first_s": b["first_s"], "first_cpu_s": b["first_cpu_s"], "peak_mb": b["peak_mb"], "calls": timed},
    )
    return 0


def _run_child(
    method: str, backend: str, precision: str, size: tuple[int, int], threads: int, calls: int, gap: float
) -> dict | None:
    """--alone: one variant in its own fresh interpreter, started as a user starts ``ivfuse`` (a new
    ``python`` process; not multiprocessing's spawn/forkserver: in such a child OpenVINO's first few
    calls ran at one core's speed here), run to its end before anything else starts."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fused.npy"
        spec = f"{method},{backend},{precision},{size[0]}x{size[1]},{threads},{calls},{gap}"
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_deep", "--child", spec, "--child-out", str(out)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        info = None
        for line in proc.stdout.splitlines():
            if line.startswith("@@done "):
                info = json.loads(line[len("@@done ") :])
        if proc.returncode != 0 or info is None:
            print(f"{method} {backend} {precision}: child failed ({proc.returncode})", file=sys.stderr)
            return None
        info["out"] = np.load(out)
    return info


def _alone(
    method: str, size: tuple[int, int], runs: int, threads: int, gap: float, keep: str | None, calls: int
) -> list[dict]:
    """Each variant truly alone: per round, every variant in turn gets a fresh process that builds it,
    times ``calls`` calls and exits before the next variant's process starts (one process at a time;
    the parent only waits). A variant's time in a round is the fastest of its calls (warm); the
    rounds then give the median, the range and paired per-round ratios, so that a change of the
    machine's load between rounds hits all variants of a round alike."""
    entries: dict[tuple[str, str], dict] = {}
    for _ in range(runs):
        for v in _variants(method, keep):
            info = _run_child(method, *v, size, threads, calls, gap)
            if info is None:
                continue
            e = entries.setdefault(
                v,
                {
                    "backend": v[0],
                    "precision": v[1],
                    "wall": [],
                    "cpu": [],
                    "others": [],
                    "steal": [],
                    "first_s": info["first_s"],
                    "first_cpu_s": info["first_cpu_s"],
                    "peak_mb": 0.0,
                },
            )
            best = min(info["calls"], key=lambda c: c["wall"])
            e["wall"].append(best["wall"])
            e["cpu"].append(best["cpu"])
            e["others"].append(max(c["others"] for c in info["calls"]))
            e["steal"].append(max(c["steal"] for c in info["calls"]))
            e["peak_mb"] = max(e["peak_mb"], info["peak_mb"])
            e["out"] = info["out"]
    # a variant that failed in some round cannot be paired: keep only complete ones
    return [e for e in entries.values() if len(e["wall"]) == runs]


def _interleaved(method: str, ir: np.ndarray, vi: np.ndarray, runs: int, keep: str | None) -> list[dict]:
    """Every variant built in this process, then timed round-robin: one call per variant per round."""
    built = [b for v in _variants(method, keep) if (b := _build_entry(method, *v, ir, vi)) is not None]
    for _ in range(runs):
        for b in built:
            _time_once(b, ir, vi)
    return built


def _paired(ref: list[float], var: list[float]) -> list[float]:
    """``ref / var`` per round (the two timed in the same round): a change of the machine's load
    between rounds cancels."""
    return [r / v for r, v in zip(ref, var, strict=True)]


def _ratio(ref: list[float], var: list[float]) -> float:
    """Median over the rounds of the paired ratio."""
    return statistics.median(_paired(ref, var))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=None, help="comma list (default: every deep method)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", default="480x640")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--alone",
        action="store_true",
        help="time each variant alone in a fresh process instead of interleaved in this one",
    )
    ap.add_argument(
        "--backends", default=None, help="only these variants, e.g. openvino:fp32,official (torch fp32 stays)"
    )
    ap.add_argument("--gap", type=float, default=0.5, help="--alone: idle seconds before each timed call")
    ap.add_argument("--calls", type=int, default=2, help="--alone: timed calls per process (fastest kept)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.child, args.child_out)
    torch.set_num_threads(args.threads)
    h, w = (int(s) for s in args.size.split("x"))
    ir, vi = _pair(h, w)
    mode = (
        f"each variant alone in a fresh process per round, fastest of {args.calls} calls"
        if args.alone
        else "interleaved in this process"
    )
    print(
        f"# {cpu_name()}, torch {torch.__version__}, threads {args.threads}, "
        f"{h}x{w} pair, median of {args.runs}, {mode}; load average {os.getloadavg()[0]:.2f}"
    )
    gflops = conv_limit(args.threads)
    print(
        f"# one 64->64 3x3 conv at {h}x{w}: {gflops:.0f} GFLOP/s fp32 by CPU time; DIDFuse's graph "
        f"({DIDFUSE_FLOP_480x640 / 1e9:.0f} GFLOP at 480x640) cannot take less than "
        f"{DIDFUSE_FLOP_480x640 / gflops / 1e6:.0f} ms of CPU time here"
    )
    rows = []
    for method in args.methods.split(",") if args.methods else deep_methods():
        if args.alone:
            built = _alone(method, (h, w), args.runs, args.threads, args.gap, args.backends, args.calls)
        else:
            built = _interleaved(method, ir, vi, args.runs, args.backends)
        base = built[0]
        off = next((b for b in built if b["backend"] == "official"), None)
        for b in built:
            row = {
                "method": method,
                "backend": b["backend"],
                "precision": b["precision"],
                "ms": statistics.median(b["wall"]) * 1e3,
                "cpu_ms": statistics.median(b["cpu"]) * 1e3,
                "vs_torch": _ratio(base["wall"], b["wall"]),
                "vs_official": _ratio(off["wall"], b["wall"]) if off else None,
                "vs_torch_cpu": _ratio(base["cpu"], b["cpu"]),
                "vs_official_cpu": _ratio(off["cpu"], b["cpu"]) if off else None,
                "ratio_range": ([min(q := _paired(off["wall"], b["wall"])), max(q)] if off else None),
                "max_diff_gray": float(np.abs(np.asarray(b["out"]) - np.asarray(base["out"])).max()) * 255,
                "first_s": b["first_s"],
                "first_cpu_s": b["first_cpu_s"],
                "peak_mb": b["peak_mb"],
                "wall_ms": [round(t * 1e3, 1) for t in b["wall"]],
                "ms_range": [min(b["wall"]) * 1e3, max(b["wall"]) * 1e3],
                "others_max": max(b["others"]) if b.get("others") else None,
                "steal_max": max(b["steal"]) if b.get("steal") else None,
            }
            rows.append(row)
    print(
        "| method | backend | precision | ms/pair wall / CPU | x vs torch fp32 wall / CPU | "
        "x vs official wall / CPU | (range over rounds) | max diff (gray) | "
        "first call s wall / CPU | peak MB | ms range | others / steal (cores) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        vo = f"{r['vs_official']:.2f} / {r['vs_official_cpu']:.2f}" if r["vs_official"] else "-"
        rr = f"{r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}" if r["ratio_range"] else "-"
        oth = f"{r['others_max']:.2f} / {r['steal_max']:.2f}" if r["others_max"] is not None else "-"
        print(
            f"| {r['method']} | {r['backend']} | {r['precision']} | {r['ms']:.0f} / {r['cpu_ms']:.0f} | "
            f"{r['vs_torch']:.2f} / {r['vs_torch_cpu']:.2f} | {vo} | {rr} | {r['max_diff_gray']:.4f} | "
            f"{r['first_s']:.1f} / {r['first_cpu_s']:.1f} | {r['peak_mb']:.0f} | "
            f"{r['ms_range'][0]:.0f}-{r['ms_range'][1]:.0f} | {oth} |"
        )
    busy = [r for r in rows if (r["others_max"] or 0) > 0.25]
    if busy:
        print(
            f"# WARNING: other processes used up to {max(r['others_max'] for r in busy):.2f} cores during "
            f"{len(busy)} row(s): not timed alone; rerun on a quiet machine"
        )
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
