"""Ship a training run (finished, or a snapshot of an unfinished one) as the weights users load.

``export_run(run_dir, weights_out, card_out)`` writes ``weights.safetensors``-style tensors and
a card. A finished run's own card is reused; for an unfinished run the card is built from the
checkpoint and says so (``"reduced_scale": true``, epochs done of epochs planned, the deviations
from the recipe the checkpoint stored). ``chain_stages`` records, for a run started (``--init``)
from the weights it replaces, every training stage behind the new weights.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from ..errors import TrainingError
from .checkpoint import CHECKPOINT_NAME, atomic_write_text, export_safetensors, load_checkpoint
from .trainer import CARD_NAME, WEIGHTS_NAME, card_provenance, data_card, loss_history


def export_run(
    run_dir: str | Path,
    weights_out: str | Path,
    card_out: str | Path,
    method: str,
    *,
    recipe_epochs: int | None = None,
    metrics: dict[str, Any] | None = None,
    paper: str = "",
) -> dict[str, Any]:
    """Write the run's model to ``weights_out`` (safetensors) and its card to ``card_out``."""
    run = Path(run_dir)
    ck_path = run / CHECKPOINT_NAME
    if not ck_path.is_file():
        raise TrainingError(f"{run}: no {CHECKPOINT_NAME} to export")
    ck = load_checkpoint(ck_path, method)
    done, planned = int(ck["epoch"]), int(ck["total_epochs"])
    run_card = None
    if (run / CARD_NAME).is_file() and (run / WEIGHTS_NAME).is_file():
        run_card = json.loads((run / CARD_NAME).read_text())
    # finished: the run wrote its card after its last epoch. A run resumed with a lower --epochs
    # (stopped for good where it stands) writes a finished card while its checkpoint keeps the
    # epochs first planned, so the card's own count decides.
    finished = run_card is not None and int(run_card.get("epochs", -1)) == done
    finished = finished and done >= int(run_card.get("epochs_planned", planned))
    # stopped by --time-budget: the run's own card (time budget, iterations) describes the weights
    # the checkpoint holds, as long as no step ran after it was written
    budget = (run_card or {}).get("time_budget") or {}
    stopped = bool(budget.get("stopped_by_budget")) and run_card.get("iterations") == ck.get("iterations")
    if finished or stopped:
        card = run_card
        if stopped:
            card["reduced_scale"] = True
            card["note"] = (
                f"stopped by the time budget of {budget.get('seconds')} s after {card.get('iterations')} "
                f"of {card.get('iterations_planned')} planned iterations ({done} whole epochs)"
            )
            card["deviations_from_recipe"] = _as_seen(
                card.get("deviations_from_recipe"), done, card.get("iterations")
            )
    else:
        history = ck["history"]
        pairs = ck.get("data_pairs")
        if pairs is None and ck.get("data") and Path(ck["data"]).is_dir():
            from ..data.training import training_pairs

            pairs = len(training_pairs(ck["data"]))
        card = {
            "method": method,
            "paper": paper,
            "config": ck["config"],
            "data": data_card(ck.get("data") or None, pairs),
            "epochs": done,
            "epochs_planned": planned,
            "reduced_scale": True,
            "deviations_from_recipe": _as_seen(ck.get("deviations_from_recipe"), done, ck.get("iterations")),
            "iterations": ck.get("iterations"),
            "init_weights": ck.get("init"),
            "note": (
                f"snapshot of an unfinished run: {done} of {planned} epochs; the run continues "
                "with `ivfuse train ... --resume`"
            ),
            "seed": ck["seed"],
            "wall_time_s": round(float(ck["wall_time_s"]), 1),
            "device": f"cpu ({platform.machine()})",
            "world_size": ck["world_size"],
            **card_provenance(history),
        }
    card.setdefault("loss_history", loss_history(ck["history"]))  # cards written before it existed
    if recipe_epochs is not None:
        card["recipe_epochs"] = recipe_epochs
        card["reduced_scale"] = bool(card.get("reduced_scale")) or done < recipe_epochs
    if metrics is not None:
        card["metrics"] = metrics
    card["source_run"] = str(run)
    export_checkpoint_weights(ck, weights_out, card.get("config", ck["config"]))
    atomic_write_text(Path(card_out), json.dumps(card, indent=2) + "\n")
    return card


def export_checkpoint_weights(ck: dict[str, Any], path: str | Path, config: Any = None) -> None:
    """The model of checkpoint ``ck`` as a weights file (what the loaders read), with its method,
    configuration (``config``, default the checkpoint's) and epochs in the metadata."""
    export_safetensors(
        Path(path),
        ck["model"],
        {
            "method": ck["method"],
            "config": ck["config"] if config is None else config,
            "format": "ivfuse-1",
            "epochs": str(int(ck["epoch"])),
        },
    )


def _as_seen(deviations: dict[str, Any] | None, epochs: int, iterations: int | None) -> dict[str, Any]:
    """A copy of the deviations from the recipe (a checkpoint written before they were stored has
    none) with ``epochs`` and ``iterations`` set to what the shipped weights saw."""
    seen = {k: dict(v) for k, v in (deviations or {}).items()}
    if "epochs" in seen:
        seen["epochs"]["used"] = epochs
    if "iterations" in seen and iterations is not None:
        seen["iterations"]["used"] = int(iterations)
    return seen


def _stage(card: dict[str, Any], weights: str, init: str | None) -> dict[str, Any]:
    cfg = card.get("config") or {}
    return {
        "weights": weights,
        "iterations": card.get("iterations"),
        "batch_size": cfg.get("batch_size"),
        "crop": cfg.get("crop"),
        "lr": cfg.get("lr"),
        "precision": card.get("precision"),
        "device": card.get("device"),
        "init": init,
    }


def chain_stages(
    card: dict[str, Any], previous: dict[str, Any] | None, previous_sha256: str | None, previous_label: str
) -> dict[str, Any]:
    """``card`` with the training stages behind its weights, when its run started (``--init``) from
    the weights it replaces: their card ``previous`` and the SHA-256 of their file identify them
    (``card["init_weights"]["sha256"]`` must be ``previous_sha256``; otherwise ``card`` is returned
    as it is).

    ``stages`` lists the previous card's stages (or the previous card as the first stage), its
    ``"this file"`` entry renamed ``previous_label`` (e.g. ``"<commit>:src/ivfuse/weights/x.safetensors"``),
    then this run: iterations, batch size, crop, learning rate, precision, device and the weights it
    started from. ``iterations_all_stages`` sums the iterations; ``samples_all_stages`` the
    iterations times the batch size (when every stage records it), which compares stages of
    different batch sizes. The card's own ``iterations`` and ``deviations_from_recipe`` stay this
    run's.
    """
    init = card.get("init_weights") or {}
    if previous is None or previous_sha256 is None or init.get("sha256") != previous_sha256:
        return card
    label = f"{previous_label} (sha256 {previous_sha256[:12]})"
    stages = [dict(s) for s in previous.get("stages") or []]
    if stages:
        for st in stages:
            if st.get("weights") == "this file":
                st["weights"] = label
    else:
        stages = [_stage(previous, label, (previous.get("init_weights") or {}).get("path"))]
    stages.append(_stage(card, "this file", label))
    out = dict(card)
    out["stages"] = stages
    out["iterations_all_stages"] = sum(int(st.get("iterations") or 0) for st in stages)
    if all(st.get("iterations") is not None and st.get("batch_size") for st in stages):
        out["samples_all_stages"] = sum(int(st["iterations"]) * int(st["batch_size"]) for st in stages)
    else:
        out.pop("samples_all_stages", None)
    return out
