"""Copy a training run into the package: ivfuse/weights/<method>.{safetensors,json}.

    python scripts/ship_weights.py METHOD RUN [--metrics metrics.json] [--dest DIR]

Works for every trainable method (``ivfuse methods`` lists them), on a finished run and on the
checkpoint of an unfinished one (the card then says how many of the recipe's epochs were done,
``reduced_scale: true``). ``--metrics`` adds a JSON object of test-set metrics to the card.
``--half`` stores float16 tensors when the fused synthetic night scene stays within one gray level
of the float32 weights' (the card records the difference and ``stored_dtype``). A run started
with ``--init`` from the weights it replaces adds a stage to their card's ``stages``
(:func:`ivfuse.train.ship.chain_stages`).
The recipe's epoch count and the paper come from the method module (``Config``, ``PAPER``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
from pathlib import Path

from ivfuse.methods import registry
from ivfuse.train.checkpoint import atomic_write_text
from ivfuse.train.ship import chain_stages, export_run

ROOT = Path(__file__).resolve().parents[1]


def _head() -> str:
    """The repository's commit (short), which names the weights being replaced."""
    res = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return res.stdout.strip() or "unknown-commit"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method", help="trainable method, e.g. didfuse")
    ap.add_argument("run", help="run folder of `ivfuse train` (checkpoint.pt, card.json, weights)")
    ap.add_argument("--metrics", default=None, help="JSON file with test-set metrics")
    ap.add_argument("--dest", default=str(ROOT / "src" / "ivfuse" / "weights"), help="target folder")
    ap.add_argument(
        "--half",
        action="store_true",
        help="store float16 tensors (half the size), only if the fused output stays within 1 gray level",
    )
    args = ap.parse_args()
    info = registry.info(args.method)
    if not info.trainable or info.weights is None:
        raise SystemExit(f"error: {info.name} is not a trainable method with weights")
    config_cls, training_spec = registry.training(info.name)
    recipe = config_cls()
    recipe_epochs = getattr(recipe, "epochs", None)
    if recipe_epochs is None:
        recipe_epochs = training_spec(recipe).total_epochs
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    weights = dest / info.weights
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else None
    # the weights being replaced: a run started from them (--init) adds a stage to their history
    previous = (
        json.loads(weights.with_suffix(".json").read_text())
        if weights.with_suffix(".json").is_file()
        else None
    )
    previous_sha = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else None
    card = export_run(
        args.run,
        weights,
        weights.with_suffix(".json"),
        info.name,
        recipe_epochs=recipe_epochs,
        metrics=metrics,
        paper=info.paper,
    )
    chained = chain_stages(card, previous, previous_sha, f"{_head()}:{_relative(weights)}")
    if chained is not card:
        card = chained
        atomic_write_text(weights.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
        n, its = len(card["stages"]), card["iterations_all_stages"]
        print(f"stage {n} of the shipped weights ({its:,} iterations in all)")
    if args.half:
        from compact import halve_weights  # scripts/compact.py, beside this script

        try:
            card["float16_max_diff_gray"] = halve_weights(info.name, weights)
        except ValueError as e:
            raise SystemExit(f"error: {e}; shipped as float32") from None
        card["stored_dtype"] = "float16"
        atomic_write_text(weights.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
    print(
        f"shipped {info.name}: {card['epochs']}/{card.get('recipe_epochs')} epochs "
        f"(reduced_scale={card['reduced_scale']}) to {dest}"
    )


if __name__ == "__main__":
    main()
