"""The GPU check of issue 25 in one command (under 5 minutes on one GPU):

    python -m benchmarks.bench_gpu [--data ROOT] [--methods didfuse,defusion] [--pairs 200]
        [--device cuda|cuda:N|cpu] [--quick] [--json out.json]

Run from the repository root. Prints, for the deep methods of the registry (shipped weights):

(a) the largest difference of each method's result on ``--device`` from its CPU fp32 result, in
    gray levels (x255), on one pair: TNO's first 480x640-or-larger pair under ``ROOT/tno`` when
    ``--data`` is given, else the synthetic night scene (``ivfuse.data.synthetic``), and the TF32
    policy the method ran with;
(b) latency in ms/pair at batch 1 and batch 8 (``fuse`` and ``fuse_batch``, host transfers
    included), against the official networks' eager forward (``benchmarks/official``: didfuse,
    defusion) one pair at a time on the same device;
(c) folder throughput, PNG decode -> fuse -> PNG encode of ``--pairs`` pairs: ``ivfuse.api.fuse_pairs``
    with ``--batch-size 8`` and I/O threads against a one-pair-at-a-time loop with the official
    forward (decode, forward, encode in turn, as the official test scripts do);
(d) DeFusion CUD training samples/s with the device-side augmentation (``augment="device"``,
    batch 32 of 256 x 256, bf16 autocast, cuDNN benchmark), from ``ROOT/natural/BSDS500`` when
    given, else random images;

and the GPU's name and the peak GPU memory. Without a CUDA GPU (and without ``--device cpu``) it
prints one line saying so and exits 0. ``--device cpu --quick``: every part on small sizes on the
CPU (the test suite runs it so the script stays runnable).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device, runs: int, warm: int = 2) -> float:
    """Median seconds of ``fn`` over ``runs`` calls after ``warm`` untimed ones."""
    for _ in range(warm):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _pair(data: Path | None, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, str]:
    if data is not None and (data / "tno" / "ir").is_dir():
        from ivfuse.data.pairs import scan_pairs_root
        from ivfuse.data.training import load_gray_crop

        pairs = sorted(scan_pairs_root(data / "tno").pairs, key=lambda p: p.stem)
        for p in pairs:
            ir = load_gray_crop(p.ir, None)
            if ir.shape[0] >= hw[0] and ir.shape[1] >= hw[1]:
                return ir, load_gray_crop(p.vi, None), f"TNO {p.stem} ({ir.shape[1]}x{ir.shape[0]})"
        p = pairs[0]
        ir = load_gray_crop(p.ir, None)
        return ir, load_gray_crop(p.vi, None), f"TNO {p.stem} ({ir.shape[1]}x{ir.shape[0]})"
    from ivfuse.data.synthetic import night_scene

    s = night_scene(*hw, seed=0)
    vi = (s.vi @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    return s.ir.astype(np.float32), vi, f"synthetic night scene ({hw[1]}x{hw[0]})"


def _official(
    method: str, fuser, device: torch.device
) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The official eager forward on ``device``, with the transfers the official scripts make."""
    import copy

    import torch.nn.functional as F

    if method == "didfuse":
        from benchmarks.official.didfuse import sequential

        run = sequential(copy.deepcopy(fuser.net).to(device).eval(), fuser.rule)

        def call(ir, vi):
            with torch.no_grad():
                out = run(
                    torch.from_numpy(ir)[None, None].to(device), torch.from_numpy(vi)[None, None].to(device)
                )
            return np.clip(out[0, 0].cpu().numpy(), 0, 1)

        return call
    if method == "defusion":
        from benchmarks.official.defusion import PAD, official

        net = copy.deepcopy(fuser.net).to(memory_format=torch.contiguous_format).to(device).eval()
        run = official(net)
        luma = torch.tensor([0.299, 0.587, 0.114], device=device).reshape(1, 3, 1, 1)

        def call(ir, vi):
            h, w = ir.shape
            with torch.no_grad():
                t = torch.from_numpy(np.stack([ir, vi]))[:, None].to(device).expand(-1, 3, -1, -1)
                t = F.pad(t, (PAD, PAD, PAD, PAD), mode="reflect")
                out = run(t[:1], t[1:])[..., PAD : PAD + h, PAD : PAD + w].clamp(0, 1)
            return np.clip((out * luma).sum(1)[0].cpu().numpy(), 0, 1)

        return call
    return None


def _folder(root: Path, ir: np.ndarray, vi: np.ndarray, n: int) -> Path:
    """``n`` pairs of PNGs: the pair with fresh noise each (content a PNG encoder cannot shrink)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        for sub, img in (("ir", ir), ("vi", vi)):
            noisy = np.clip(img * 255 + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / sub / f"{i:04d}.png", compress_level=1)
    return root


def _loop(pairs, out: Path, forward) -> None:
    """One pair at a time: decode, forward, encode (the official test scripts' loop)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for p in pairs:
        ir = np.asarray(Image.open(p.ir).convert("L"), dtype=np.float32) / 255
        vi = np.asarray(Image.open(p.vi).convert("L"), dtype=np.float32) / 255
        f = forward(ir, vi)
        Image.fromarray(np.round(f * 255).astype(np.uint8)).save(out / f"{p.stem}.png")


def _natural(data: Path | None, tmp: Path, n: int) -> Path:
    if data is not None and (data / "natural" / "BSDS500").is_dir():
        return data / "natural" / "BSDS500"
    from PIL import Image

    root = tmp / "natural"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (321, 481, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


def _train_rate(data, tmp, device, quick: bool) -> tuple[float, int, int]:
    """DeFusion CUD training samples/s with the device augmentation: (rate, batch, crop)."""
    from ivfuse.methods.defusion import Config, training_spec

    crop, batch, steps = (32, 2, 2) if quick else (256, 32, 30)
    root = _natural(data, tmp, 4 if quick else 64)
    cfg = Config(crop=crop, batch_size=batch, epochs=1, schedule_scale=1.0, augment="device")
    spec = training_spec(cfg)
    ds = spec.dataset(root)
    model = spec.build_model().to(device).train()
    stage = spec.stages[0]
    opt = stage.optimizer(model.parameters())
    prev = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda"
    dtype = torch.bfloat16 if device.type == "cuda" else None
    gen = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(len(ds), (batch,), generator=gen).to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            terms = stage.loss(model, {"i": idx})
        opt.zero_grad(set_to_none=True)
        terms["total"].float().backward()
        opt.step()

    try:
        sec = _time(step, device, steps, warm=1 if quick else 5)
    finally:
        torch.backends.cudnn.benchmark = prev
    return batch / sec, batch, crop


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (with --quick: the test mode)")
    ap.add_argument("--data", type=Path, default=None, help="data root with tno/ and natural/BSDS500")
    ap.add_argument("--methods", default=None, help="comma list (default: every deep method)")
    ap.add_argument("--pairs", type=int, default=None, help="pairs of the folder test (default 200; quick 4)")
    ap.add_argument("--size", default="480x640", help="HxW of the synthetic pair")
    ap.add_argument("--runs", type=int, default=None, help="timed calls per latency (default 20; quick 2)")
    ap.add_argument("--quick", action="store_true", help="small sizes, few calls (CPU test mode)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        say("bench_gpu: torch sees no CUDA GPU here; nothing measured (run it on a GPU machine)")
        return lines
    import ivfuse
    from ivfuse.devices import parse_device
    from ivfuse.methods import registry

    device = torch.device(parse_device(args.device))
    quick = args.quick
    h, w = (int(v) for v in ("64x80" if quick else args.size).split("x"))
    runs = args.runs or (2 if quick else 20)
    n_pairs = args.pairs or (4 if quick else 200)
    deep = [i.name for i in registry.available() if i.family != "classical" and i.weights_shipped]
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else deep
    results: dict[str, dict] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        props = torch.cuda.get_device_properties(device)
        mem = props.total_memory / 2**30
        say(f"GPU: {props.name}, {mem:.0f} GiB; torch {torch.__version__}, CUDA {torch.version.cuda}")
    else:
        say(f"device: cpu ({os.cpu_count()} cores); torch {torch.__version__}")
    ir, vi, what = _pair(args.data, (h, w))
    say(f"pair: {what}")

    say("(a) max difference from the CPU fp32 result, gray levels; (b) latency ms/pair")
    cols = ("diff", 7), ("tf32", 5), ("b1 ms/pair", 11), ("b8 ms/pair", 11), ("official", 9), ("speed-up", 8)
    say(f"{'method':10} " + " ".join(f"{c:>{n}}" for c, n in cols))
    fusers = {}
    for m in methods:
        ref = ivfuse.load(m, device="cpu", backend="torch").method.fuse(ir, vi)
        pipe = ivfuse.load(m, device=str(device), backend="torch")
        f = pipe.method
        fusers[m] = f
        got = f.fuse(ir, vi)
        diff = float(np.abs(got - ref).max()) * 255
        b1 = _time(lambda f=f: f.fuse(ir, vi), device, runs) * 1000
        irs, vis = [ir] * 8, [vi] * 8
        b8 = _time(lambda f=f, a=irs, b=vis: f.fuse_batch(a, b, batch_size=8), device, max(1, runs // 4))
        b8 *= 1000 / 8
        off = _official(m, f, device)
        o1 = _time(lambda off=off: off(ir, vi), device, runs) * 1000 if off else None
        results[m] = {"diff_gray": diff, "tf32": bool(pipe.tf32), "ms_b1": b1, "ms_b8": b8, "official_ms": o1}
        off_txt = f"{o1:9.1f}" if o1 else f"{'-':>9}"
        sp = f"{o1 / b1:7.2f}x" if o1 else f"{'-':>8}"
        say(f"{m:10} {diff:7.3f} {str(pipe.tf32):>5} {b1:11.1f} {b8:11.1f} {off_txt} {sp}")

    half = "fp16" if device.type == "cuda" else "bf16"
    say(f"(b') {half} autocast + channels-last (opt-in --precision {half}): difference from fp32 on the")
    say("     same device, gray levels; latency ms/pair")
    cols = ("diff", 7), ("b1 ms/pair", 11), ("b8 ms/pair", 11), ("official", 9), ("speed-up", 8)
    say(f"{'method':10} " + " ".join(f"{c:>{n}}" for c, n in cols))
    for m in methods:
        if getattr(registry.info(m).fuser, "no_half_precision", None):
            say(f"{m:10} fp32 only (its fuser refuses half precision)")
            continue
        f32 = fusers[m].fuse(ir, vi)
        f = ivfuse.load(m, device=str(device), backend="torch", precision=half).method
        diff = float(np.abs(f.fuse(ir, vi) - f32).max()) * 255
        b1 = _time(lambda f=f: f.fuse(ir, vi), device, runs) * 1000
        b8 = _time(lambda f=f: f.fuse_batch([ir] * 8, [vi] * 8, batch_size=8), device, max(1, runs // 4))
        b8 *= 1000 / 8
        o1 = results[m]["official_ms"]
        results[m].update({f"{half}_diff_gray": diff, f"{half}_ms_b1": b1, f"{half}_ms_b8": b8})
        off_txt = f"{o1:9.1f}" if o1 else f"{'-':>9}"
        sp = f"{o1 / b1:7.2f}x" if o1 else f"{'-':>8}"
        say(f"{m:10} {diff:7.3f} {b1:11.1f} {b8:11.1f} {off_txt} {sp}")

    say(f"(c) folder: PNG decode -> fuse -> PNG encode, {n_pairs} pairs of {ir.shape[1]}x{ir.shape[0]}")
    from ivfuse.api import fuse_pairs
    from ivfuse.data.pairs import scan_pairs_root

    with tempfile.TemporaryDirectory(prefix="ivfuse-bench-gpu-") as tmp:
        tmp = Path(tmp)
        src = _folder(tmp / "pairs", ir, vi, n_pairs)
        pairs = sorted(scan_pairs_root(src).pairs, key=lambda p: p.stem)
        workers = min(16, os.cpu_count() or 1)
        for m in [m for m in methods if m in ("didfuse", "defusion")] or methods[:1]:
            pipe = ivfuse.load(m, device=str(device), backend="torch")
            t = time.perf_counter()
            done = list(
                fuse_pairs(pipe, pairs, tmp / f"out-{m}", batch_size=8, workers=workers, overwrite=True)
            )
            _sync(device)
            ours = len(done) / (time.perf_counter() - t)
            off = _official(m, pipe.method, device) or pipe.method.fuse
            t = time.perf_counter()
            _loop(pairs, tmp / f"loop-{m}", off)
            loop = len(pairs) / (time.perf_counter() - t)
            results.setdefault(m, {}).update({"folder_pairs_s": ours, "loop_pairs_s": loop})
            say(
                f"{m:10} ivfuse batch 8 + {workers} I/O threads {ours:8.1f} pairs/s; "
                f"one-pair loop {loop:8.1f} pairs/s; {ours / loop:5.1f}x"
            )

        rate, batch, crop = _train_rate(args.data, tmp, device, quick)
    results["defusion_train"] = {"samples_s": rate, "batch": batch, "crop": crop}
    say(
        f"(d) DeFusion CUD training, device augmentation, batch {batch} of {crop}x{crop}: "
        f"{rate:.1f} samples/s"
    )
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        results["gpu_memory_peak_gib"] = peak
        say(f"GPU memory peak: {peak:.2f} GiB")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
