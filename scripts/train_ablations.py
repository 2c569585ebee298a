"""Train the variants of a paper's ablation rows, one after the other, at the shipped default's scale.

    python scripts/train_ablations.py METHOD --data DIR [--runs runs/ablations] [--only a,b]
                                      [--dry-run] [-- extra `ivfuse train` options]

    python scripts/train_ablations.py sslwaeie --data runs/sslwaeie_data/tno_train16 --dry-run
    python scripts/train_ablations.py jcae --data ../data/flir_train --only mse-only -- --threads 1

For every ablation the method declares (``ivfuse methods --json`` lists them; e.g. SSL-WAEIE's
Tables 3-4, IFESNet's Tables III-VI, JCAE's Fig. 4-5) this runs

    ivfuse train METHOD --ablation NAME --data DIR --out RUNS/METHOD/NAME --set K=V ... [--resume]

where the ``--set`` items are the shipped weights' training configuration wherever it differs
from the method's ``Config`` defaults (epochs, crops, ...), so each variant differs from the
shipped default only in its ablation's fields and the rows compare like with like. A variant
whose run folder already has a finished card is skipped; one with a checkpoint is resumed, so the
script can be stopped and started again (one training at a time, never in parallel).
``ivfuse bench --paper METHOD`` reads the variants' weights from ``RUNS/METHOD/NAME``.

The default recipe is trained first, as ``RUNS/METHOD/default`` (the same command without
``--ablation``), unless one of the declared variants already is the default recipe: the same
recipe on two machines, or in two precisions, differs by about as much as some ablations do, so
the rows compare like with like only beside a default trained the same way. ``bench --paper``
shows it as its own row of every ablation table. ``--only default`` trains it alone.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from ivfuse.bench.paper import DEFAULT_VARIANT  # the run folder bench --paper reads the default from


def default_scale(method: str) -> dict[str, Any]:
    """The shipped weights' training configuration where it differs from ``Config()``."""
    from ivfuse.methods import registry

    info = registry.info(method)
    config_cls, _ = registry.training(method)
    card = info.weights_card or {}
    shipped = card.get("config") or {}
    if isinstance(shipped, str):
        shipped = json.loads(shipped)
    base = config_cls().to_dict()
    used = config_cls.from_dict(shipped).to_dict() if shipped else base
    return {k: v for k, v in used.items() if v != base[k]}


def _is_default(method: str, scale: dict[str, Any], overrides: dict[str, Any]) -> bool:
    """Whether a variant's overrides leave the default recipe (``scale`` over ``Config()``) as it is."""
    from ivfuse.methods import registry

    config_cls, _ = registry.training(method)
    base = config_cls.from_dict({**config_cls().to_dict(), **scale}).to_dict()
    return config_cls.from_dict({**base, **overrides}).to_dict() == base


def commands(method: str, data: Path, runs: Path, only: set[str] | None, extra: list[str]) -> list[list[str]]:
    """One ``ivfuse train`` command per ablation still to train (finished runs left out)."""
    from ivfuse.methods import registry

    info = registry.info(method)
    if not info.ablations:
        raise SystemExit(f"error: method {method!r} declares no ablations")
    names = {a.name for a in info.ablations} | {DEFAULT_VARIANT}
    unknown = sorted((only or set()) - names)
    if unknown:
        listed = ", ".join(sorted(names))
        raise SystemExit(f"error: {method} has no ablation {unknown[0]!r} (its ablations: {listed})")
    scale = default_scale(method)
    out: list[list[str]] = []
    runs_of = [(a.name, a.overrides) for a in info.ablations]
    if not any(_is_default(method, scale, ov) for _, ov in runs_of):
        runs_of.insert(0, (DEFAULT_VARIANT, {}))
    for name, overrides in runs_of:
        if only and name not in only:
            continue
        run = runs / method / name
        card = run / "card.json"
        budget = json.loads(card.read_text()).get("time_budget") or {} if card.is_file() else {}
        if card.is_file() and not budget.get("stopped_by_budget"):
            print(f"{name}: done ({card})")
            continue
        sets = [f"{k}={json.dumps(v)}" for k, v in scale.items() if k not in overrides]
        which = [] if name == DEFAULT_VARIANT else ["--ablation", name]
        cmd = ["ivfuse", "train", method, *which, "--data", str(data), "--out", str(run)]
        for s in sets:
            cmd += ["--set", s]
        if (run / "checkpoint.pt").is_file():
            cmd.append("--resume")
        out.append(cmd + extra)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method")
    ap.add_argument("--data", type=Path, required=True, help="training pairs (as for the shipped default)")
    ap.add_argument("--runs", type=Path, default=Path("runs/ablations"))
    ap.add_argument("--only", default=None, help="comma list of ablation names")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",")} if args.only else None
    cmds = commands(args.method, args.data, args.runs, only, extra)
    for cmd in cmds:
        print("$ " + shlex.join(cmd), flush=True)
        if not args.dry_run:
            rc = subprocess.call(cmd)
            if rc != 0:
                print(f"error: exit {rc}; rerun the script to resume", file=sys.stderr)
                return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
