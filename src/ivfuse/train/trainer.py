"""The generic trainer: seeding, devices, DistributedDataParallel, loop, checkpoints, logs, export.

A method supplies a :class:`~ivfuse.train.spec.TrainSpec` (model, data set, loss terms, stages);
:func:`train` does the rest:

* deterministic for a given seed on CPU (seeded before the model is built, sequential or
  per-epoch seeded sampling, single-process data loading);
* an atomic checkpoint after every epoch (model, optimiser, scheduler, RNG states, epoch,
  history, wall time) so that ``resume=True`` continues exactly where a killed run stopped;
* a rich progress bar with the loss terms and ETA, ``losses.csv`` per epoch (and TensorBoard
  when installed);
* distribution when started by ``torchrun`` (``WORLD_SIZE`` > 1): DDP with gloo on CPU and
  nccl on GPU, data sharded by a ``DistributedSampler``; rank 0 writes all files;
* at the end ``weights.safetensors`` + ``card.json``;
* a time budget (``time_budget``): the run stops cleanly before a step would cross it, mid-epoch
  if need be, and writes the checkpoint (with the position inside the epoch), the weights and a
  card that records the budget, the iterations reached and the device; ``resume=True`` continues
  it exactly where it stopped (single-process data loading: same batches, same random crops);
* ``init``: start from existing weights (a ``weights.safetensors`` of the method) with a fresh
  optimiser; the card records the file and its SHA-256;
* a GPU fast path: ``precision="bf16"`` (autocast to bfloat16 around the forward and the loss,
  fp32 master weights and optimiser), ``fast=True`` (cuDNN benchmark, non-deterministic) beside
  the deterministic default, loss terms kept on the device and read back every ``log_every``
  steps only (no host synchronisation per step), loader worker processes and pinned memory;
* subnormal floats flushed to zero on the CPU (``torch.set_flush_denormal``): weight decay drives
  weights towards zero, and once 6 % of IFESNet's weights were subnormal (epoch 8 of its run) a
  training step took 16 s instead of 0.8 s. Values below 1.2e-38 become 0; nothing else changes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from ..data.root import portable_path
from ..errors import TrainingError
from .checkpoint import (
    CHECKPOINT_NAME,
    atomic_write_text,
    export_safetensors,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .spec import TrainSpec, stage_at

WEIGHTS_NAME = "weights.safetensors"
CARD_NAME = "card.json"
CSV_NAME = "losses.csv"
SNAPSHOT_DIR = "snapshots"


@dataclass
class RunOptions:
    """Run-level options (the method's own hyper-parameters live in its Config)."""

    data: Path
    out: Path
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    threads: int | None = None
    progress: bool = True
    test_data: Path | None = None
    #: stop after this many epochs in total without exporting, as if killed (tests, time slots)
    stop_after: int | None = None
    #: also write the weights every N epochs to ``snapshots/epoch_NNN.safetensors`` (0: never)
    snapshot_every: int = 0
    #: "fp32" or "bf16" (autocast around forward + loss; fp32 master weights)
    precision: str = "fp32"
    #: non-deterministic fast mode on CUDA (cuDNN benchmark); default deterministic
    fast: bool = False
    #: read the loss terms back (progress bar, NaN check) every N steps; 0: 1 on CPU, 50 on CUDA
    log_every: int = 0
    #: DataLoader worker processes; None: 0 on CPU (deterministic stream), 4 on CUDA
    workers: int | None = None
    #: stop cleanly before a step would end past this many seconds of this session (None: never)
    time_budget: float | None = None
    #: weights file to start from (fresh optimiser); recorded in the card
    init: Path | None = None


def _config_dict(cfg: Any) -> dict[str, Any]:
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    if is_dataclass(cfg):
        return asdict(cfg)
    return dict(cfg)


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("ivfuse")
    except Exception:
        return "unknown"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seed the legacy global RNG too)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------
# distribution
# --------------------------------------------------------------------------------------------


@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def _setup_distributed(device: str) -> tuple[_Dist, torch.device]:
    from ..devices import parse_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = parse_device(device)  # DeviceError (exit 2) for CUDA where there is none
    if world <= 1:
        return _Dist(), torch.device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return _Dist(dist.get_world_size(), dist.get_rank(), local_rank), dev


# --------------------------------------------------------------------------------------------
# output folder
# --------------------------------------------------------------------------------------------


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise TrainingError(f"output {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise TrainingError(f"output folder {out} is not writable ({e.strerror or e})") from e


def _write_csv(path: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    keys: list[str] = []
    for row in history:
        for k in row:
            if k not in keys:
                keys.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


class _TensorBoard:
    def __init__(self, out: Path, start: int, enabled: bool):
        self.w = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed
            return
        self.w = SummaryWriter(str(out / "tensorboard"), purge_step=start + 1)

    def log(self, row: dict[str, Any]) -> None:
        if self.w is None:
            return
        for k, v in row.items():
            if k not in ("epoch", "stage") and isinstance(v, (int, float)):
                self.w.add_scalar(k, v, row["epoch"])
        self.w.flush()

    def close(self) -> None:
        if self.w is not None:
            self.w.close()


# --------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------


class _Progress:
    """Rich progress bar over all remaining iterations, with the running loss terms and ETA."""

    def __init__(self, enabled: bool, total_steps: int, description: str):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.bar = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[terms]}"),
                console=self.console,
                transient=False,
            )
            self.task = self.bar.add_task(description, total=total_steps, terms="")
            self.bar.start()

    def step(self, description: str, terms: dict[str, float], advance: int = 1) -> None:
        if self.bar is not None:
            text = " ".join(f"{k}={v:.4g}" for k, v in terms.items())
            self.bar.update(self.task, advance=advance, description=description, terms=text)

    def log(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.console.print(msg, highlight=False)
        else:
            self.console.print(msg, highlight=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


def _loader(
    spec: TrainSpec,
    dataset,
    epoch: int,
    seed: int,
    d: _Dist,
    skip: int = 0,
    workers: int = 0,
    pin: bool = False,
) -> DataLoader:
    """The epoch's loader; ``skip`` batches already done (a resumed mid-epoch stop) are left out
    without loading them (the sampler's order does not depend on the global RNG)."""
    if d.enabled:
        sampler: Any = DistributedSampler(
            dataset,
            num_replicas=d.world,
            rank=d.rank,
            shuffle=spec.shuffle,
            seed=seed,
            drop_last=spec.drop_last,
        )
        sampler.set_epoch(epoch)
    elif spec.shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed + epoch))
    else:
        sampler = SequentialSampler(dataset)
    if skip:
        sampler = list(sampler)[skip * spec.batch_size :]
    return DataLoader(
        dataset,
        batch_size=spec.batch_size,
        sampler=sampler,
        drop_last=spec.drop_last,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=False,
    )


def _steps_per_epoch(spec: TrainSpec, n: int, d: _Dist) -> int:
    per_rank = n // d.world if (d.enabled and spec.drop_last) else math.ceil(n / d.world)
    if spec.drop_last:
        return per_rank // spec.batch_size
    return math.ceil(per_rank / spec.batch_size)


def train(spec: TrainSpec, opts: RunOptions) -> dict[str, Any]:
    """Run (or resume) training; returns the card (also written to ``out/card.json``).

    With ``opts.stop_after`` the run stops after that many epochs in total, leaving a
    checkpoint to resume from and returning ``{"stopped_at": epoch}`` instead of a card.
    """
    t_start = time.perf_counter()
    out = Path(opts.out)
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    d, device = _setup_distributed(opts.device)
    flushing = torch.set_flush_denormal(True)  # False where the CPU cannot flush (then a no-op)
    try:
        return _train(spec, opts, out, d, device, t_start)
    finally:
        if flushing:
            torch.set_flush_denormal(False)
        if d.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _train(
    spec: TrainSpec, opts: RunOptions, out: Path, d: _Dist, device: torch.device, t_start: float
) -> dict[str, Any]:
    _prepare_out(out)
    ck_path = out / CHECKPOINT_NAME
    total = spec.total_epochs
    ck = None
    if ck_path.exists():
        ck = load_checkpoint(ck_path, spec.method)
        if not opts.resume:
            raise TrainingError(
                f"{out} already holds a {spec.method} checkpoint (epoch {ck['epoch']} of "
                f"{ck['total_epochs']}); pass --resume to continue it or choose another --out"
            )
        if ck.get("world_size", 1) != d.world:
            raise TrainingError(
                f"{ck_path}: saved by {ck.get('world_size', 1)} process(es), resumed with {d.world}; "
                "use the same number of processes"
            )
    if opts.precision not in ("fp32", "bf16"):
        raise TrainingError(f"--precision must be fp32 or bf16, got {opts.precision!r}")
    if opts.time_budget is not None and opts.time_budget <= 0:
        raise TrainingError(f"--time-budget must be positive, got {opts.time_budget}")
    if opts.time_budget is not None and d.enabled:
        raise TrainingError("--time-budget is for one process (ranks would stop at different steps)")
    if opts.init is not None and ck is not None:
        raise TrainingError("--init starts a new run; a resumed run continues its checkpoint (drop --init)")
    dataset = spec.dataset(Path(opts.data))
    n_data = len(dataset)
    data = data_card(opts.data, n_data)  # read now: a broken dataset.json is refused before the run
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = not opts.fast
        torch.backends.cudnn.benchmark = bool(opts.fast)
    cuda = device.type == "cuda"
    workers = opts.workers if opts.workers is not None else (min(4, os.cpu_count() or 1) if cuda else 0)
    log_every = opts.log_every or (50 if cuda else 1)

    seed_everything(opts.seed)  # identical initial weights on every rank
    model = spec.build_model().to(device)
    init_info = _load_init(model, opts.init, spec.method) if opts.init is not None else None
    seed_everything(opts.seed + d.rank)  # per-rank stream for anything random in the loop

    start_epoch = 0
    skip = 0  # batches of start_epoch already done (a run stopped by its time budget)
    step_total = 0
    part: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    wall_before = 0.0
    if ck is not None:
        model.load_state_dict(ck["model"])
        start_epoch = int(ck["epoch"])
        history = list(ck["history"])
        wall_before = float(ck["wall_time_s"])
        set_rng_state(ck["rng"][d.rank])
        part = dict(ck.get("partial") or {})
        skip = int(part.get("steps", 0))
        step_total = int(ck.get("iterations", start_epoch * _steps_per_epoch(spec, n_data, d)))
        init_info = ck.get("init")

    steps = _steps_per_epoch(spec, n_data, d)
    log = _Progress(opts.progress and d.main, max(steps * max(total - start_epoch, 0) - skip, 0), spec.method)
    if start_epoch or skip:
        at = f" step {skip}/{steps}" if skip else ""
        log.log(f"resuming {spec.method} from {ck_path} at epoch {start_epoch}/{total}{at}")
    tb = _TensorBoard(out, start_epoch, d.main)
    stage_idx = -1
    opt = sched = None
    ddp_model: nn.Module = model
    t_session = time.perf_counter()
    budget = opts.time_budget
    stopped = False  # stopped inside an epoch by the budget
    budget_hit = False
    step_times: list[float] = []
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if opts.precision == "bf16"
        else contextlib.nullcontext
    )
    try:
        for epoch in range(start_epoch, total):
            si, _ = stage_at(spec.stages, epoch)
            stage = spec.stages[si]
            if si != stage_idx:
                stage_idx = si
                params = list(stage.parameters(model) if stage.parameters else model.parameters())
                opt = stage.optimizer(params)
                sched = stage.scheduler(opt) if stage.scheduler else None
                if ck is not None and int(ck["stage"]) == si and int(ck["epoch"]) == epoch:
                    opt.load_state_dict(ck["optimizer"])
                    if sched is not None and ck.get("scheduler") is not None:
                        sched.load_state_dict(ck["scheduler"])
                if d.enabled:
                    ddp_model = nn.parallel.DistributedDataParallel(
                        model,
                        device_ids=[device.index] if device.type == "cuda" else None,
                        find_unused_parameters=stage.parameters is not None,
                    )
            lr = opt.param_groups[0]["lr"]
            group_lrs = _group_lrs(opt)
            t_epoch = time.perf_counter()
            model.train()
            skip_now, skip = (skip, 0) if epoch == start_epoch else (0, 0)
            sums: dict[str, float] = dict(part.get("sums", {})) if skip_now else {}
            n_steps = skip_now
            t_epoch -= float(part.get("seconds", 0.0)) if skip_now else 0.0
            acc: dict[str, torch.Tensor] = {}  # loss terms summed on the device since the last read
            desc = f"{spec.method} {stage.name} epoch {epoch + 1}/{total}"
            loader = iter(_loader(spec, dataset, epoch, opts.seed, d, skip_now, workers, cuda))
            if skip_now and ck is not None:
                # the iterator drew its base seed from the global RNG: an unbroken run drew it at
                # the epoch's start, before the state saved at the stop; restore that state again
                set_rng_state(ck["rng"][d.rank])
            left = steps - skip_now
            for batch in loader:
                left -= 1
                t_step = time.perf_counter()
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with autocast():
                    terms = stage.loss(ddp_model, batch)
                opt.zero_grad(set_to_none=True)
                terms["total"].float().backward()
                opt.step()
                for k, v in terms.items():
                    v = v.detach().double()
                    acc[k] = acc[k] + v if k in acc else v
                n_steps += 1
                step_total += 1
                if (n_steps - skip_now) % log_every == 0:
                    _drain(acc, sums, epoch)
                    log.step(desc, {k: sums[k] / n_steps for k in sums}, advance=log_every)
                if budget is not None:  # stop before a step that would end past the budget
                    if cuda:
                        torch.cuda.synchronize(device)
                    step_times.append(time.perf_counter() - t_step)
                    est = statistics.median(step_times[-20:])
                    more = left > 0 or epoch + 1 < total
                    if more and time.perf_counter() - t_session + est > budget:
                        stopped = left > 0  # at an epoch's end the epoch is completed first
                        budget_hit = True
                        if stopped:
                            break
            _drain(acc, sums, epoch)
            rest = (n_steps - skip_now) % log_every
            log.step(desc, {k: sums[k] / max(n_steps, 1) for k in sums}, advance=rest)
            if stopped:
                _save(
                    spec, opts, out, model, opt, sched, d, epoch, total, si, history, n_data,
                    wall_before + time.perf_counter() - t_session, step_total, init_info,
                    {"steps": n_steps, "sums": sums, "seconds": time.perf_counter() - t_epoch},
                )  # fmt: skip
                break
            if sched is not None:
                sched.step()
            if d.enabled:  # BN running statistics drift per rank; keep rank 0's, as DDP does
                for buf in model.buffers():
                    dist.broadcast(buf, src=0)
            means = _reduce_means(sums, n_steps, d, device)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "stage": stage.name,
                "lr": lr,
                **group_lrs,
                "seconds": round(time.perf_counter() - t_epoch, 3),
                **means,
            }
            history.append(row)
            wall = wall_before + time.perf_counter() - t_session
            _save(
                spec, opts, out, model, opt, sched, d, epoch + 1, total, si, history, n_data, wall,
                step_total, init_info,
            )  # fmt: skip
            if d.main:
                _write_csv(out / CSV_NAME, history)
                if opts.snapshot_every and (epoch + 1) % opts.snapshot_every == 0:
                    snap = out / SNAPSHOT_DIR / f"epoch_{epoch + 1:03d}.safetensors"
                    _export_weights(spec, model, snap, epoch + 1)
                tb.log(row)
                terms_txt = " ".join(f"{k}={v:.5g}" for k, v in means.items())
                log.log(
                    f"epoch {epoch + 1}/{total} [{stage.name}] lr={lr:.3g} {row['seconds']:.1f}s {terms_txt}"
                )
            d.barrier()
            if budget_hit:
                break
            if opts.stop_after is not None and epoch + 1 >= opts.stop_after and epoch + 1 < total:
                return {"stopped_at": epoch + 1}
    finally:
        log.stop()
        tb.close()

    wall = wall_before + time.perf_counter() - t_session
    card = _card(spec, opts, data, total, history, wall, device, d)
    card["iterations"] = step_total
    card.setdefault("iterations_planned", steps * total)
    card["precision"] = opts.precision
    card["deterministic"] = not (opts.fast and cuda)
    card["loader_workers"] = workers
    card["time_budget"] = (
        None
        if budget is None
        else {
            "seconds": budget,
            "stopped_by_budget": budget_hit,
            "iterations": step_total,
            "session_s": round(time.perf_counter() - t_session, 1),
            "device": card["device"],
        }
    )
    card["init_weights"] = init_info
    if budget_hit:
        card["reduced_scale"] = True
    if d.enabled:
        card["ranks_max_abs_diff"] = _rank_divergence(model, d)
    if d.main:
        if opts.test_data is not None and not budget_hit:
            card["metrics"] = evaluate_on(spec, model, Path(opts.test_data))
        _export_weights(spec, model, out / WEIGHTS_NAME)
        atomic_write_text(out / CARD_NAME, json.dumps(card, indent=2) + "\n")
        log.log(f"wrote {out / WEIGHTS_NAME} and {out / CARD_NAME}")
    d.barrier()
    return card


def _drain(acc: dict[str, torch.Tensor], sums: dict[str, float], epoch: int) -> None:
    """Read the loss terms summed on the device back to the host (one synchronisation) into
    ``sums``; TrainingError when the total is not finite."""
    if not acc:
        return
    vals = {k: float(v) for k, v in acc.items()}
    acc.clear()
    if not math.isfinite(vals["total"]):
        raise TrainingError(f"loss became {vals['total']} at epoch {epoch + 1}; stopping")
    for k, v in vals.items():
        sums[k] = sums.get(k, 0.0) + v


def _save(
    spec: TrainSpec,
    opts: RunOptions,
    out: Path,
    model: nn.Module,
    opt: Any,
    sched: Any,
    d: _Dist,
    epoch: int,
    total: int,
    si: int,
    history: list[dict[str, Any]],
    n_data: int,
    wall: float,
    iterations: int,
    init_info: dict[str, Any] | None,
    partial: dict[str, Any] | None = None,
) -> None:
    """The checkpoint after ``epoch`` complete epochs (``partial``: ``steps`` more of the next one
    done, with their loss sums and seconds: a run stopped by its time budget)."""
    rngs = _gather_rng(d)
    if not d.main:
        return
    save_checkpoint(
        out / CHECKPOINT_NAME,
        {
            "method": spec.method,
            "epoch": epoch,
            "total_epochs": total,
            "stage": si,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "rng": rngs,
            "seed": opts.seed,
            "world_size": d.world,
            "config": _config_dict(spec.config),
            "history": history,
            "wall_time_s": wall,
            "data": str(opts.data),
            "data_pairs": n_data,
            "iterations": iterations,
            "partial": partial,
            "init": init_info,
            "deviations_from_recipe": _deviations(spec),  # for a card shipped from this checkpoint
        },
    )


def _load_init(model: nn.Module, path: Path, method: str) -> dict[str, Any]:
    """Load the weights file ``path`` (exported tensors of ``method``) into ``model`` or into the
    one sub-module whose parameters and buffers they are (DeFusion's ``net``); what the card says."""
    from ..methods._torch import read_weights, sha256_file

    state, meta = read_weights(path, method, method)
    target = None
    for name, mod in model.named_modules():
        if set(mod.state_dict()) == set(state):
            target = (name, mod)
            break
    if target is None:
        raise TrainingError(f"--init {path}: its tensors match neither the {method} model nor a part of it")
    try:
        target[1].load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else "mismatch"
        raise TrainingError(f"--init {path}: does not fit this configuration ({first})") from e
    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "module": target[0] or "(whole model)",
        "epochs": meta.get("epochs"),
        "optimizer": "fresh",
    }


def _group_lrs(opt: torch.optim.Optimizer) -> dict[str, float]:
    """``{"lr_<name>": lr}`` for every named parameter group (``"name"`` key) and, when a stage
    has several groups, for the unnamed ones by index; empty for one unnamed group (the row's
    ``lr`` is its rate)."""
    groups = opt.param_groups
    return {f"lr_{g.get('name', i)}": g["lr"] for i, g in enumerate(groups) if "name" in g or len(groups) > 1}


def _export_weights(spec: TrainSpec, model: nn.Module, path: Path, epoch: int | None = None) -> None:
    """The method's exported tensors as safetensors (loadable with ``weights=path``)."""
    tensors = spec.export(model) if spec.export else dict(model.state_dict())
    meta: dict[str, Any] = {"method": spec.method, "config": _config_dict(spec.config), "format": "ivfuse-1"}
    if epoch is not None:
        meta["epochs"] = str(epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_safetensors(path, tensors, meta)


def _reduce_means(sums: dict[str, float], n: int, d: _Dist, device: torch.device) -> dict[str, float]:
    keys = list(sums)  # the method's order of terms (identical on every rank)
    if d.enabled:
        t = torch.tensor([sums[k] for k in keys] + [float(n)], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        vals = t.tolist()
        return {k: vals[i] / max(vals[-1], 1.0) for i, k in enumerate(keys)}
    return {k: sums[k] / max(n, 1) for k in keys}


def _rank_divergence(model: nn.Module, d: _Dist) -> float:
    """Largest absolute difference of any parameter or buffer between a rank and rank 0."""
    flat = torch.cat([t.detach().double().reshape(-1) for t in model.state_dict().values()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


def _gather_rng(d: _Dist) -> list[Any]:
    state = rng_state()
    if not d.enabled:
        return [state]
    states: list[Any] = [None] * d.world
    dist.all_gather_object(states, state)
    return states


def _deviations(spec: TrainSpec) -> dict[str, Any]:
    """Where the run's configuration differs from the recipe (``{key: {"used", "recipe"}}``), plus
    the method's own deviations (e.g. DeFusion's iterations)."""
    cfg = _config_dict(spec.config)
    default = _config_dict(spec.default_config)
    deviations = {k: {"used": v, "recipe": default.get(k)} for k, v in cfg.items() if default.get(k) != v}
    deviations.update(spec.extra_card.get("deviations_from_recipe", {}))
    return deviations


#: a training folder's own description, copied into the card's ``data.about`` when present (a
#: JSON object; e.g. the recipe of a generated data set: ``scripts/focus_pairs_folder.py``)
DATASET_ABOUT = "dataset.json"


def data_card(data: str | Path | None, n_data: int | None) -> dict[str, Any]:
    """The card's ``data`` entry: the training folder (portable path, name), its sample count and,
    when the folder has one, its ``dataset.json`` as ``about``. Raises :class:`TrainingError` for a
    ``dataset.json`` that is not a JSON object."""
    if data is None:
        return {"path": None, "name": None, "pairs": n_data}
    card: dict[str, Any] = {"path": portable_path(data), "name": Path(data).name, "pairs": n_data}
    about = Path(data) / DATASET_ABOUT
    if about.is_file():
        try:
            doc = json.loads(about.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrainingError(f"{about}: not readable as JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise TrainingError(f"{about}: expected a JSON object, got {type(doc).__name__}")
        card["about"] = doc
    return card


def _card(spec, opts, data, total, history, wall, device, d) -> dict[str, Any]:
    cfg = _config_dict(spec.config)
    deviations = _deviations(spec)
    extra = {k: v for k, v in spec.extra_card.items() if k != "deviations_from_recipe"}
    done = history[-1]["epoch"] if history else 0
    return {
        "method": spec.method,
        "paper": spec.paper,
        "config": cfg,
        "data": data,
        "epochs": done,
        "epochs_planned": total,
        "reduced_scale": bool(deviations) or done < total,
        "deviations_from_recipe": deviations,
        "seed": opts.seed,
        "wall_time_s": round(wall, 1),
        "device": _device_name(device),
        "world_size": d.world,
        "threads": torch.get_num_threads(),
        **card_provenance(history),
        **extra,
    }


def loss_history(history: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Every epoch's row of ``losses.csv`` as columns (``{"epoch": [1, 2, ...], "total": [...]}``,
    floats to 6 significant digits), so a card shows whether its run had converged."""
    names: list[str] = []
    for row in history:
        names += [k for k in row if k not in names]
    return {
        k: [float(f"{row[k]:.6g}") if isinstance(row.get(k), float) else row.get(k) for row in history]
        for k in names
    }


def card_provenance(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The card fields every run shares: versions, last epoch's losses, every epoch's losses,
    creation time."""
    return {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "ivfuse": package_version(),
        "final_losses": {
            k: v
            for k, v in (history[-1] if history else {}).items()
            if k not in ("epoch", "stage", "seconds")
        },
        "loss_history": loss_history(history),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
        "metrics": None,
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def evaluate_on(spec: TrainSpec, model: nn.Module, test_dir: Path) -> dict[str, Any] | None:
    """Fuse every pair of ``test_dir`` with the trained model; mean metrics per profile.

    Sources are read as 8-bit gray, fused, and the result rounded to 8 bits before scoring
    (metrics work on the 0..255 scale), as a fused image written to disk would be.
    """
    if spec.fuser is None:
        return None
    from ..data.training import load_gray_crop, training_pairs
    from ..metrics import evaluate

    model.eval()
    fuser = spec.fuser(model)
    rows: dict[str, list[dict[str, float]]] = {prof: [] for prof, _ in spec.test_metrics}
    pairs = training_pairs(test_dir)
    for p in pairs:
        ir = load_gray_crop(p.ir, None)
        vi = load_gray_crop(p.vi, None)
        fused = np.round(fuser.fuse(ir, vi) * 255).astype(np.uint8)
        ir8 = np.round(ir * 255).astype(np.uint8)
        vi8 = np.round(vi * 255).astype(np.uint8)
        for prof, names in spec.test_metrics:
            rows[prof].append(evaluate(fused, ir8, vi8, names, profile=prof))
    result: dict[str, Any] = {"test_set": portable_path(test_dir), "pairs": len(pairs)}
    for prof, rs in rows.items():
        result[prof] = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} if rs else {}
    return result
