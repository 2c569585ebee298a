"""Time one training step of a method on this machine, fp32 against bf16 autocast, each alone.

    python -m benchmarks.bench_train_step --method defusion --data DATA/natural/BSDS500 \
        [--set crop=256 --set batch_size=4] [--precisions fp32,bf16] [--steps 5] [--rounds 2] \
        [--threads 2] [--iterations 30000] [--json out.json]

Run from the repository root. Per round, every precision runs in turn in its own fresh process
(alone: nothing of the others alive), which builds the method's training model from its ``Config``
(``--set`` overrides, as ``ivfuse train --set``), draws one batch from the method's own data set and
loader (DeFusion: its augmentation on the CPU), then times ``--steps`` optimiser steps on that batch
after one untimed warm-up step (two with ``+compile``): forward and loss under
``torch.autocast(cpu, bfloat16)`` for bf16 (fp32 master weights, as ``ivfuse train --precision
bf16``), backward, Adam.
The loader's own time per batch is timed apart (the trainer loads in the same process on a CPU). It
prints seconds per step (median over the steps; the range over rounds), the bf16 speed-up paired per
round, the machine's load average and how much CPU the rest of the machine used meanwhile, and what
``--iterations`` steps would take (e.g. DeFusion's issue goal of 30,000 iterations of batch 4 at
256x256). bf16 on a CPU pays off where it has bf16 matrix units (Intel AMX, ``amx_bf16`` in
``/proc/cpuinfo``; AVX-512 BF16 on AMD Zen 4).

A precision with ``+compile`` (``bf16+compile``) runs the model through ``torch.compile`` (inductor:
a C++ compiler must be on the PATH) in place; its first step's time, the compilation, is printed
apart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ._machine import cpu_jiffies, cpu_name, others_and_steal

ROOT = Path(__file__).resolve().parents[1]


def _child(method: str, data: str, sets: list[str], precision: str, steps: int, threads: int) -> dict:
    """Build, draw one batch, time ``steps`` steps; runs in a fresh interpreter."""
    import torch

    from ivfuse.cli.train import _settings
    from ivfuse.methods import registry

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config_cls, training_spec = registry.training(method)
    cfg = config_cls(**_settings(sets))  # read as ivfuse train --set reads them
    spec = training_spec(cfg)
    ds = spec.dataset(Path(data))
    loader = torch.utils.data.DataLoader(ds, batch_size=spec.batch_size, shuffle=True, num_workers=0)
    it = iter(loader)
    t0 = time.perf_counter()
    batch = next(it)
    next(it)
    load_s = (time.perf_counter() - t0) / 2
    model = spec.build_model().train()
    stage = spec.stages[0]
    opt = stage.optimizer(list(stage.parameters(model) if stage.parameters else model.parameters()))
    precision, _, compiled = precision.partition("+")
    bf16 = precision == "bf16"
    if compiled:  # "+compile": torch.compile (inductor) in place, state-dict keys unchanged
        model.compile()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            terms = stage.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        terms["total"].float().backward()
        opt.step()

    t_warm = time.perf_counter()
    step()  # warm-up: oneDNN primitives are built on the first call (and the graph compiled)
    warm_s = time.perf_counter() - t_warm
    if compiled:
        step()  # the backward graph's first call
    times = []
    before = cpu_jiffies()
    cpu0, w0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    wall, cpu = time.perf_counter() - w0, time.process_time() - cpu0
    return {
        "precision": precision + ("+compile" if compiled else ""),
        "warm_up_s": warm_s,
        "step_s": statistics.median(times),
        "steps_s": times,
        "load_s": load_s,
        "batch": spec.batch_size,
        **others_and_steal(before, cpu_jiffies(), cpu, wall),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="defusion")
    ap.add_argument("--data", required=True, help="the training folder (as ivfuse train --data)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE of the Config")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--iterations", type=int, default=30000, help="project the time of this many steps")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    precisions = a.precisions.split(",")
    if a.child:
        print("@@done " + json.dumps(_child(a.method, a.data, a.sets, precisions[0], a.steps, a.threads)))
        return 0
    print(
        f"{a.method} training step, {' '.join(a.sets) or 'Config defaults'}; {cpu_name()}, "
        f"{a.threads} threads; load average {os.getloadavg()[0]:.2f}; each precision alone in a fresh "
        f"process, median of {a.steps} steps after 1 warm-up, {a.rounds} rounds"
    )
    rounds: list[dict[str, dict]] = []
    for r in range(a.rounds):
        got = {}
        for p in precisions:
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.bench_train_step",
                "--child",
                "--method",
                a.method,
                "--data",
                a.data,
                "--precisions",
                p,
                "--steps",
                str(a.steps),
                "--threads",
                str(a.threads),
            ]
            cmd += [x for s in a.sets for x in ("--set", s)]  # fmt: skip
            res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            line = next((x for x in res.stdout.splitlines() if x.startswith("@@done ")), None)
            if res.returncode != 0 or line is None:
                print(res.stdout[-2000:], res.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"error: the {p} child failed (exit {res.returncode})")
            got[p] = json.loads(line[len("@@done ") :])
            g = got[p]
            print(
                f"  round {r + 1} {p}: {g['step_s']:.3f} s/step ({g['batch'] / g['step_s']:.2f} samples/s; "
                f"steps {min(g['steps_s']):.3f}-{max(g['steps_s']):.3f} s), "
                f"loader {g['load_s']:.3f} s/batch, first step {g['warm_up_s']:.1f} s, "
                f"other processes {g['others']:.2f} cores, steal {g['steal']:.2f}"
            )
        rounds.append(got)
    summary = {}
    for p in precisions:
        s = [g[p]["step_s"] for g in rounds]
        best = min(s) + statistics.mean(g[p]["load_s"] for g in rounds)
        summary[p] = {"step_s": s, "hours_for_iterations": a.iterations * best / 3600}
        print(
            f"{p}: {min(s):.3f}-{max(s):.3f} s/step over rounds; {a.iterations} iterations "
            f"(with the loader) ≈ {summary[p]['hours_for_iterations']:.1f} h at the fastest round"
        )
    if "fp32" in precisions and len(precisions) > 1:
        for p in precisions:
            if p != "fp32":
                ratio = [g["fp32"]["step_s"] / g[p]["step_s"] for g in rounds]
                summary[p]["speedup_vs_fp32"] = ratio
                print(f"{p} speed-up over fp32, paired per round: {min(ratio):.2f}-{max(ratio):.2f}x")
    if a.json:
        a.json.write_text(json.dumps({"rounds": rounds, "summary": summary, "cpu": cpu_name()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
