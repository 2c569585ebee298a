"""Copy the DIDFuse training run into the package: ivfuse/weights/didfuse.{safetensors,json}.

    python scripts/ship_didfuse_weights.py [RUN] [--metrics metrics.json] [--dest DIR]

RUN defaults to runs/didfuse_full. Works on a finished run and on a checkpoint of an
unfinished one (the card then says how many of the 120 epochs were done, reduced_scale true).
``--metrics`` adds a JSON object of test-set metrics to the card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ivfuse.methods.didfuse import PAPER, Config
from ivfuse.train.export import export_run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", default=str(ROOT / "runs" / "didfuse_full"))
    ap.add_argument("--metrics", default=None, help="JSON file with test-set metrics")
    ap.add_argument("--dest", default=str(ROOT / "src" / "ivfuse" / "weights"), help="target folder")
    args = ap.parse_args()
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else None
    card = export_run(
        args.run,
        dest / "didfuse.safetensors",
        dest / "didfuse.json",
        "didfuse",
        recipe_epochs=Config().epochs,
        metrics=metrics,
        paper=PAPER,
    )
    print(
        f"shipped {card['epochs']}/{card.get('recipe_epochs')} epochs "
        f"(reduced_scale={card['reduced_scale']}) to {dest}"
    )


if __name__ == "__main__":
    main()
