"""Time the metrics: the 13 VIFB metrics on a 630x460 RGB triple, the seven most reported ones and
VIFF on a 640x480 gray triple, straightforward implementations of a few metrics for ratios, and
the 20 MEFB metrics (profile ``mefb``) on a 640x480 RGB multi-exposure triple.

    python -m benchmarks.bench_metrics [--repeat 7] [--threads N] [--only vifb|gray|mefb]

The RGB triple is VIFB's ``kettle`` (GFF) from ../shared/data/vifb_ref when it is there, else a
synthetic one; the gray triple is the package's synthetic night scene at 640x480. Each time is
the best of ``--repeat`` runs (the machine is shared; the minimum is the least disturbed run) of
``ivfuse.metrics.evaluate`` on arrays, so decoding is not included. "alone" times one metric per
call (nothing shared); "together" is one call computing all of them with shared intermediates.
``evaluate`` uses ``ivfuse.metrics.get_threads()`` threads (``--threads`` sets it); the totals
are also given on one thread.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import signal

from ivfuse import io
from ivfuse.api import DEFAULT_METHOD, load
from ivfuse.data.synthetic import night_scene
from ivfuse.metrics import clear_buffers, evaluate, get_filter_impl, get_profile, get_threads, set_threads

VIFB_REF = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vifb_ref"


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (imports, caches of kernels)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000.0


def rgb_triple() -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    if (VIFB_REF / "fused" / "kettle_GFF.jpg").is_file():
        f = io.read_image(VIFB_REF / "fused" / "kettle_GFF.jpg")
        ir = io.read_image(VIFB_REF / "ir" / "kettle.jpg")
        vi = io.read_image(VIFB_REF / "vi" / "kettle.jpg")
        return "VIFB kettle / GFF (630x460 RGB, 3-channel IR)", f, ir, vi
    s = night_scene(460, 630, seed=1)
    ir = io.from_unit(s.ir)
    vi = io.from_unit(s.vi)
    f = np.clip(0.5 * vi + 0.5 * ir[..., None], 0, 255).astype(np.uint8)
    return "synthetic night scene (630x460 RGB, gray IR)", f, ir, vi


def mef_triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """640x480 RGB: an under-exposed (x 0.4) and an over-exposed (x 1.6 + 40, clipped) version
    of the synthetic scene's colour image, and their mean as the fused image."""
    vi = night_scene(480, 640, seed=3).vi.astype(np.float64) * 255.0
    a = np.clip(vi * 0.4, 0, 255).astype(np.uint8)
    b = np.clip(vi * 1.6 + 40, 0, 255).astype(np.uint8)
    f = ((a.astype(np.uint16) + b) // 2).astype(np.uint8)
    return f, a, b


def gray_triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = night_scene(480, 640, seed=2)
    ir = io.from_unit(s.ir)
    vi = io.from_unit(s.vi.mean(axis=2))
    f = ((ir.astype(np.uint16) + vi) // 2).astype(np.uint8)
    return f, ir, vi


# ---------------------------------------------------------------------------- naive references
# Straightforward implementations in the style of common numpy evaluators: full 2-D
# convolutions, np.histogram2d, nothing shared between metrics or sources.


def _gauss2d(n: int, sigma: float) -> np.ndarray:
    t = np.arange(n) - (n - 1) / 2
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma * sigma))
    return g / g.sum()


def naive_entropy(f: np.ndarray) -> float:
    counts: dict[int, int] = {}
    for v in f.ravel().tolist():  # a plain Python loop over the pixels
        counts[v] = counts.get(v, 0) + 1
    n = f.size
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def naive_mi(f: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    def mi(a: np.ndarray, b: np.ndarray) -> float:
        h, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=256, range=[[0, 256], [0, 256]])
        p = h / h.sum()
        pa, pb = p.sum(1), p.sum(0)
        nz = p > 0
        return float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())

    return mi(vi, f) + mi(ir, f)


def naive_ssim(f: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    w = _gauss2d(11, 1.5)

    def ssim(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a.astype(float), b.astype(float)
        ma, mb = signal.convolve2d(a, w, "valid"), signal.convolve2d(b, w, "valid")
        va = signal.convolve2d(a * a, w, "valid") - ma**2
        vb = signal.convolve2d(b * b, w, "valid") - mb**2
        cab = signal.convolve2d(a * b, w, "valid") - ma * mb
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        return float(np.mean((2 * ma * mb + c1) * (2 * cab + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))))

    return ssim(vi, f) + ssim(ir, f)


def naive_viff(f: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    """VIFF_Public.m transcribed with 2-D convolutions."""

    def stats(ref: np.ndarray, dist: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        ref, dist = ref.astype(float), dist.astype(float)
        out = []
        for s in range(1, 5):
            n = 2 ** (4 - s + 1) + 1
            w = _gauss2d(n, n / 5)
            if s > 1:
                ref = signal.convolve2d(ref, w, "valid")[::2, ::2]
                dist = signal.convolve2d(dist, w, "valid")[::2, ::2]
            m1, m2 = signal.convolve2d(ref, w, "valid"), signal.convolve2d(dist, w, "valid")
            s1 = signal.convolve2d(ref * ref, w, "valid") - m1 * m1
            s2 = signal.convolve2d(dist * dist, w, "valid") - m2 * m2
            s12 = signal.convolve2d(ref * dist, w, "valid") - m1 * m2
            s1[s1 < 0] = 0
            s2[s2 < 0] = 0
            g = s12 / (s1 + 1e-10)
            sv = s2 - g * s12
            g[s1 < 1e-10] = 0
            sv[s1 < 1e-10] = s2[s1 < 1e-10]
            s1[s1 < 1e-10] = 0
            g[s2 < 1e-10] = 0
            sv[s2 < 1e-10] = 0
            sv[g < 0] = s2[g < 0]
            g[g < 0] = 0
            sv[sv <= 1e-10] = 1e-10
            nsq = 0.005 * 255 * 255
            out.append((np.log10(1 + g * g * s1 / (sv + nsq)), np.log10(1 + s1 / nsq), g))
        return out

    total = 0.0
    for w, (za, ma, ga), (zb, mb, gb) in zip([1, 0, 0.15, 1], stats(vi, f), stats(ir, f), strict=True):
        take_a = ga < gb
        vid, vind = np.where(take_a, za, zb), np.where(take_a, ma, mb)
        total += w / 2.15 * (vid + 1e-7).sum() / (vind + 1e-7).sum()
    return float(total)


def naive_qabf(f: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    hx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    hy = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float)

    def grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = x.astype(float) * 255
        sx, sy = signal.convolve2d(x, hx, "same"), signal.convolve2d(x, hy, "same")
        g = np.sqrt(sx**2 + sy**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(sx == 0, np.pi / 2, np.arctan(sy / sx))
        return g, a

    gf, af = grad(f)
    num = den = 0.0
    for s in (vi, ir):
        gs, as_ = grad(s)
        with np.errstate(divide="ignore", invalid="ignore"):
            big = np.where(gs > gf, gf / gs, np.where(gs == gf, gf, gs / gf))
        aa = 1 - np.abs(as_ - af) / (np.pi / 2)
        q = 0.9994 / (1 + np.exp(-15 * (big - 0.5))) * 0.9879 / (1 + np.exp(-22 * (aa - 0.8)))
        num += float((q * gs).sum())
        den += float(gs.sum())
    return num / den


# ---------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="threads per evaluate() call")
    ap.add_argument("--only", choices=("vifb", "gray", "mefb"), default=None, help="one section only")
    args = ap.parse_args()
    r = args.repeat
    set_threads(args.threads)
    threads = get_threads()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPU(s), "
          f"filters {get_filter_impl()}, {threads} thread(s) per call, "
          f"load average {os.getloadavg()[0]:.2f}, best of {r}")  # fmt: skip

    def one_thread(fn: Callable[[], object]) -> float:
        old = set_threads(1)
        try:
            return best_ms(fn, r)
        finally:
            set_threads(old)

    if args.only in (None, "vifb"):
        vifb_section(r, threads, one_thread)
    if args.only in (None, "gray"):
        gray_section(r, threads, one_thread)
    if args.only in (None, "mefb"):
        mefb_section(max(1, r // 3), threads, one_thread)


def best_cpu_ms(fn: Callable[[], object], repeat: int) -> float:
    """Best process CPU time of ``fn`` on one metric thread (a fair measure on a busy machine)."""
    old = set_threads(1)
    try:
        fn()
        times = []
        for _ in range(repeat):
            t = time.process_time()
            fn()
            times.append(time.process_time() - t)
        return min(times) * 1000.0
    finally:
        set_threads(old)


def mefb_section(r: int, threads: int, one_thread: Callable[[Callable[[], object]], float]) -> None:
    """QP's phase congruency maps are kept between calls (by content), so each timed call starts
    with ``clear_buffers()``, as a first evaluation of a new pair does."""
    f, a, b = mef_triple()
    names = list(get_profile("mefb").default)

    def run(metrics: list[str] | None) -> Callable[[], object]:
        def call() -> object:
            clear_buffers()
            return evaluate(f, a, b, metrics=metrics, profile="mefb")

        return call

    print(f"\n## 20 MEFB metrics (profile mefb), 640x480 RGB multi-exposure triple (best of {r})\n")
    print("| metric | ms per image (alone) | CPU ms, 1 thread |\n|---|---:|---:|")
    alone = cpu = 0.0
    for n in names:
        t = best_ms(run([n]), r)
        c = best_cpu_ms(run([n]), r)
        alone += t
        cpu += c
        print(f"| {n} | {t:.1f} | {c:.1f} |")
    print(f"| sum of the above | {alone:.1f} | {cpu:.1f} |")
    together = best_ms(run(None), r)
    print(f"| **all 20 together** (target < 1000) | **{together:.1f}** | {best_cpu_ms(run(None), r):.1f} |")
    rest = [n for n in names if n != "QP"]
    print(f"| all but QP together | {best_ms(run(rest), r):.1f} | {best_cpu_ms(run(rest), r):.1f} |")
    if threads > 1:
        print(f"| all 20 together, 1 thread | {one_thread(run(None)):.1f} | |")
    # a second fused image of the same pair: the sources' phase congruency maps are reused
    f2 = (f.astype(np.float64) * 0.95).astype(np.uint8)
    evaluate(f, a, b, metrics=["QP"], profile="mefb")
    t2 = best_ms(lambda: evaluate(f2, a, b, profile="mefb"), r)
    print(f"| all 20, another fused image of the same pair | {t2:.1f} | |")


def vifb_section(r: int, threads: int, one_thread: Callable[[Callable[[], object]], float]) -> None:
    label, f, ir, vi = rgb_triple()
    names = list(get_profile("vifb").default)
    print(f"\n## 13 VIFB metrics, {label}\n")
    print("| metric | ms per image (alone) |\n|---|---:|")
    alone = 0.0
    for n in names:
        t = best_ms(lambda n=n: evaluate(f, ir, vi, metrics=[n]), r)
        alone += t
        print(f"| {n} | {t:.1f} |")
    together = best_ms(lambda: evaluate(f, ir, vi), r)
    print(f"| sum of the above | {alone:.1f} |")
    print(f"| **all 13 together** (target < 150) | **{together:.1f}** |")
    if threads > 1:
        print(f"| all 13 together, 1 thread | {one_thread(lambda: evaluate(f, ir, vi)):.1f} |")
    # what a user's `ivfuse fuse` + `ivfuse eval` of one pair costs: fusion with the default
    # method (its Pipeline: colour handling, 8-bit output) and the 13 metrics of the result
    pipe = load(DEFAULT_METHOD)
    both = best_ms(lambda: evaluate(io.from_unit(pipe.fuse(ir, vi)), ir, vi), r)
    print(f"| fuse with `{DEFAULT_METHOD}` (default) + all 13 (target < 200) | **{both:.1f}** |")


def gray_section(r: int, threads: int, one_thread: Callable[[Callable[[], object]], float]) -> None:
    gf, gir, gvi = gray_triple()
    seven = ["EN", "SD", "SF", "AG", "MI", "QABF", "SSIM"]
    print("\n## 640x480 gray triple (synthetic night scene)\n")
    print("| metric(s) | ivfuse ms | straightforward ms | ratio | max abs. difference |")
    print("|---|---:|---:|---:|---:|")
    naive = {"EN": lambda: naive_entropy(gf), "MI": lambda: naive_mi(gf, gir, gvi),
             "SSIM": lambda: naive_ssim(gf, gir, gvi), "QABF": lambda: naive_qabf(gf, gir, gvi)}  # fmt: skip
    for n in seven:
        ours = best_ms(lambda n=n: evaluate(gf, gir, gvi, metrics=[n]), r)
        if n in naive:
            ref_t = best_ms(naive[n], max(1, r // 3))
            diff = abs(naive[n]() - evaluate(gf, gir, gvi, metrics=[n])[n])
            print(f"| {n} | {ours:.1f} | {ref_t:.1f} | {ref_t / ours:.0f}x | {diff:.1e} |")
        else:
            print(f"| {n} | {ours:.1f} | | | |")
    t7 = best_ms(lambda: evaluate(gf, gir, gvi, metrics=seven), r)
    print(f"| **{', '.join(seven)} together** (target < 20) | **{t7:.1f}** | | | |")
    if threads > 1:
        t7_1 = one_thread(lambda: evaluate(gf, gir, gvi, metrics=seven))
        print(f"| the seven together, 1 thread | {t7_1:.1f} | | | |")
    t_viff = best_ms(lambda: evaluate(gf, gir, gvi, metrics=["VIFF"]), r)
    ref_viff = best_ms(lambda: naive_viff(gf, gir, gvi), 1)
    d_viff = abs(naive_viff(gf, gir, gvi) - evaluate(gf, gir, gvi, metrics=["VIFF"])["VIFF"])
    print(f"| **VIFF** (target < 100) | **{t_viff:.1f}** | {ref_viff:.1f} | "
          f"{ref_viff / t_viff:.0f}x | {d_viff:.1e} |")  # fmt: skip
    others = ["VIFP", "QY", "NMI", "CC", "SCD", "GLD", "IFC", "MEF-SSIM"]
    for n in others:
        print(
            f"| {n} | {best_ms(lambda n=n: evaluate(gf, gir, gvi, metrics=[n]), max(1, r // 2)):.1f} | | | |"
        )


if __name__ == "__main__":
    main()
