"""``ivfuse train METHOD --data DIR --out RUN``: train a method with the generic trainer."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import TrainingError, did_you_mean
from ..methods.registry import module_methods

#: options that map onto the method's Config fields of the same name
_OVERRIDES = ("epochs", "batch_size", "lr", "crop")


def build_spec(method: str, overrides: dict[str, Any], out: Path, resume: bool, ablation: Any = None):
    """The method's TrainSpec with ``overrides`` applied (on resume, on top of the checkpoint); with
    ``ablation`` (one of the method's :class:`~ivfuse.methods._config.Ablation`), that variant's run."""
    from ..methods import registry
    from ..train.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from ..train.spec import for_ablation

    info = registry.info(method)
    config_cls, training_spec = registry.training(info.name)
    known = [f.name for f in dataclasses.fields(config_cls)]
    for k in overrides:
        if k in (*_OVERRIDES, "vgg19") and k not in known:  # a flag of `ivfuse train`
            raise TrainingError(f"--{k.replace('_', '-')} is not an option of method {info.name!r}")
        if k not in known:  # a --set KEY
            raise TrainingError(
                f"method {info.name!r} has no training option {k!r}{did_you_mean(k, known)}; its options"
                " (--set KEY=VALUE): " + ", ".join(known)
            )
    ck_path = out / CHECKPOINT_NAME
    seed = None
    if resume and ck_path.is_file():
        ck = load_checkpoint(ck_path, info.name)
        base = ck["config"]
        seed = ck["seed"]
        for k, v in overrides.items():
            if k != "epochs" and k in base and base[k] != v:
                raise TrainingError(
                    f"--{k.replace('_', '-')} {v} differs from the checkpoint's {base[k]}; "
                    "a resumed run keeps its settings (only --epochs may change)"
                )
        cfg = config_cls.from_dict({**base, **overrides})
    else:
        cfg = config_cls(**overrides)
    spec = training_spec(cfg)
    return (for_ablation(spec, ablation) if ablation is not None else spec), seed


def _settings(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` items -> Config overrides (values read as JSON, else as strings)."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TrainingError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def train_command(
    method: Annotated[str, typer.Argument(help=f"Method to train: {', '.join(module_methods())}.")],
    data: Annotated[
        Path, typer.Option(help="Training pairs folder (ir/ + vi/, same stems); defusion: natural images.")
    ],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint, losses.csv, weights, card.")],
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the paper's).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size per process.")] = None,
    lr: Annotated[float | None, typer.Option(help="Initial learning rate.")] = None,
    crop: Annotated[int | None, typer.Option(help="Crop size of training images.")] = None,
    vgg19: Annotated[
        Path | None,
        typer.Option(help="Local VGG19 ImageNet weights (.pth state dict or .safetensors) for the encoder."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (weights init, sampling).")] = 0,
    device: Annotated[
        str, typer.Option(help="cpu (default), auto (CUDA when torch sees a GPU), cuda or cuda:N.")
    ] = "cpu",
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its checkpoint.")] = False,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    test: Annotated[Path | None, typer.Option(help="Test pairs folder: metrics in the card.")] = None,
    stop_after: Annotated[
        int | None, typer.Option(help="Stop after this many epochs in total (resume later).")
    ] = None,
    snapshot_every: Annotated[
        int, typer.Option(help="Also save the weights every N epochs to snapshots/epoch_NNN.safetensors.")
    ] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    precision: Annotated[
        str, typer.Option(help="fp32 (default) or bf16: autocast forward/loss, fp32 master weights.")
    ] = "fp32",
    fast: Annotated[
        bool,
        typer.Option("--fast", help="GPU: cuDNN benchmark, non-deterministic (default: deterministic)."),
    ] = False,
    log_every: Annotated[
        int,
        typer.Option("--log-every", help="Read the losses back every N steps (0: 1 on CPU, 50 on CUDA)."),
    ] = 0,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Data loader worker processes (default: 0 on CPU, 4 on CUDA)."),
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            help="Stop cleanly before this many seconds: checkpoint, weights and card written; "
            "--resume continues.",
        ),
    ] = None,
    device_augment: Annotated[
        bool,
        typer.Option(
            "--device-augment",
            help="defusion: CUD augmentation in batched torch ops on the training device (uint8 cache).",
        ),
    ] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init", help="Start from these weights (a weights.safetensors of the method), fresh optimiser."
        ),
    ] = None,
    ablation: Annotated[
        str | None,
        typer.Option(
            "--ablation",
            help="Train the variant of one of the paper's ablation rows (listed by `ivfuse methods --json`).",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE: any field of the method's Config (JSON values: 9.5, false, [16,32]).",
        ),
    ] = None,
) -> None:
    """Train METHOD on a pairs folder (resumable, distributed under torchrun); export weights + card."""
    from rich.console import Console

    from ..train.trainer import RunOptions, train

    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "crop": crop}
    from ..methods import registry

    variant = registry.info(method).ablation(ablation) if ablation is not None else None
    overrides: dict[str, Any] = {**(dict(variant.overrides) if variant else {}), **_settings(set_)}
    overrides.update({k: v for k, v in given.items() if v is not None})
    if log_every < 0:
        raise TrainingError(f"--log-every must be 0 (auto) or positive, got {log_every}")
    if workers is not None and workers < 0:
        raise TrainingError(f"--workers must be 0 or more, got {workers}")
    if snapshot_every < 0:
        raise TrainingError(f"--snapshot-every must be 0 (never) or positive, got {snapshot_every}")
    for k in given:
        if k in overrides and overrides[k] <= 0:
            raise TrainingError(f"--{k.replace('_', '-')} must be positive, got {overrides[k]}")
    if device_augment:  # a field of the method's Config (defusion); refused by methods without it
        overrides["augment"] = "device"
    if vgg19 is not None:  # a field of the method's Config (jcae); refused by methods without it
        overrides["vgg19"] = str(vgg19)
    spec, ck_seed = build_spec(method, overrides, out, resume, variant)
    if ck_seed is not None and seed not in (0, ck_seed):
        raise TrainingError(f"--seed {seed} differs from the checkpoint's seed {ck_seed}")
    opts = RunOptions(
        data=data,
        out=out,
        seed=ck_seed if ck_seed is not None else seed,
        device=device,
        resume=resume,
        threads=threads,
        progress=progress,
        test_data=test,
        stop_after=stop_after,
        snapshot_every=snapshot_every,
        precision=precision,
        fast=fast,
        log_every=log_every,
        workers=workers,
        time_budget=time_budget,
        init=init,
    )
    result = train(spec, opts)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        console = Console(stderr=True)
        if "stopped_at" in result:
            console.print(
                f"stopped after epoch {result['stopped_at']}; continue with --resume", highlight=False
            )
        elif (result.get("time_budget") or {}).get("stopped_by_budget"):
            console.print(
                f"{spec.method}: time budget of {time_budget:g} s reached after {result['iterations']} "
                f"iterations; weights in {out / 'weights.safetensors'}; continue with --resume",
                highlight=False,
            )
        else:
            console.print(
                f"{spec.method}: {result['epochs']} epochs in {result['wall_time_s']:.0f} s; "
                f"weights in {out / 'weights.safetensors'}",
                highlight=False,
            )
