"""What a method hands to the generic trainer: its model, data set, losses and stages.

A method module exposes ``training_spec(config) -> TrainSpec``. The trainer
(:mod:`ivfuse.train.trainer`) owns everything else: seeding, devices, distribution, the loop,
checkpoints, logging and export.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

#: ``loss(model, batch) -> {"term": scalar, ..., "total": scalar}``. ``model`` may be wrapped in
#: DistributedDataParallel: call it (its ``forward``) exactly once per step.
LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class Stage:
    """One training stage: a number of epochs with its own loss, optimiser and schedule."""

    name: str
    epochs: int
    loss: LossFn
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    #: built on the stage's optimiser; stepped once at the end of every epoch
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None
    #: which parameters this stage trains (default: all of the model). It may also return
    #: parameter groups (dicts with ``"params"`` and optionally ``"lr"`` and ``"name"``) for a
    #: per-group learning rate; the trainer logs each named group's rate as ``lr_<name>``.
    parameters: Callable[[nn.Module], Iterable[nn.Parameter] | Iterable[dict[str, Any]]] | None = None


@dataclass
class TrainSpec:
    """Everything method-specific the trainer needs."""

    method: str
    config: Any  # a dataclass; saved in checkpoints and in the card
    default_config: Any  # the paper/official recipe, to flag reduced-scale runs
    build_model: Callable[[], nn.Module]  # called after seeding
    dataset: Callable[[Path], Dataset]
    stages: list[Stage]
    batch_size: int
    shuffle: bool = True
    drop_last: bool = False
    #: tensors written to weights.safetensors (default: the model's state_dict)
    export: Callable[[nn.Module], dict[str, torch.Tensor]] | None = None
    #: ``fuser(model) -> object with fuse(ir, vi)``, used for test-set metrics in the card
    fuser: Callable[[nn.Module], Any] | None = None
    #: test-set metrics for the card: (profile, metric names or None for the profile default)
    test_metrics: list[tuple[str, list[str] | None]] = field(default_factory=lambda: [("vifb", None)])
    paper: str = ""
    extra_card: dict[str, Any] = field(default_factory=dict)

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)


def stage_at(stages: list[Stage], epoch: int) -> tuple[int, int]:
    """(stage index, epoch inside that stage) of the 0-based global ``epoch``."""
    start = 0
    for i, s in enumerate(stages):
        if epoch < start + s.epochs:
            return i, epoch - start
        start += s.epochs
    raise IndexError(f"epoch {epoch} is past the last stage")


def to_numpy_image(t: torch.Tensor) -> np.ndarray:
    """(1, 1, H, W) or (H, W) tensor -> float32 (H, W) array."""
    return t.detach().reshape(t.shape[-2], t.shape[-1]).float().cpu().numpy()


def for_ablation(spec: TrainSpec, ablation: Any) -> TrainSpec:
    """``spec`` as the run of one of the paper's ablation rows (an
    :class:`ivfuse.methods._config.Ablation`): the variant's own fields are part of its recipe, so
    the card does not list them as reductions of the paper's, and the card names the row."""
    spec.default_config = dataclasses.replace(spec.default_config, **ablation.overrides)
    spec.extra_card = {
        **spec.extra_card,
        "ablation": {
            "name": ablation.name, "row": ablation.row, "table": ablation.table,
            "overrides": dict(ablation.overrides),
        },
    }  # fmt: skip
    return spec
