"""Take a packed training job (scripts/gpu_job.sh) to a borrowed GPU machine and its run back.

A borrowed machine often limits what travels each way: the working tree that is sent (here 64 MiB)
and the files that come back (here at most 8, of at most 16 MiB each). The DeFusion job (400
BSDS500 images, 28 MiB, and the shipped weights to start from) does not fit beside the repository's
own 51 MiB of shipped and ablation weights, and its checkpoint (95 MB) does not fit through the way
back. This script closes both gaps; it is development plumbing, not part of the package.

Here, before the trip (the files stay on disk; only git's index forgets them until ``unslim``,
so run ``unslim`` before any commit). Packed jobs (``gpu_job_*/``) are ignored by git, so that no
training data is ever committed: the call names them among the paths it carries.

    python scripts/gpu_trip.py slim gpu_job_defusion    # shipped weights and ablations/ stay here
    python scripts/gpu_trip.py size gpu_job_defusion    # MiB that would travel, the job included

On the GPU machine, after ``bash gpu_job_METHOD/run.sh``:

    python scripts/gpu_trip.py collect gpu_job_METHOD/out $OUT/METHOD

writes the run's card, losses and log, and its checkpoint in compact form (exact weights, Adam's
second moment in 8 bits: scripts/compact.py) cut into parts of at most 15 MiB. Back here:

    python scripts/gpu_trip.py unslim                             # at once: the index is whole again
    python scripts/gpu_trip.py join DIR/METHOD runs/METHOD-gpu    # checkpoint.pt, weights, card, losses
    python scripts/ship_weights.py METHOD runs/METHOD-gpu --half  # if it beats the shipped weights

``join`` rebuilds a checkpoint that ``ivfuse train --resume`` continues (Adam's first moment
restarts at zero) and the weights file ``ivfuse bench --weights`` reads. ``fit`` is what a job
packed with ``gpu_job.sh --fit`` runs after its probe: the number of epochs that fill the rest of
the budget, from the probe's epoch times.

The DeFusion stage prepared for a 15-minute loan (one call of under 10 minutes; 47 MiB travel):

    scripts/gpu_job.sh defusion 540 --dir gpu_job_defusion --fit 60 -- --precision bf16 --fast \
        --batch-size 16 --lr 5e-4 --crop 256 --device-augment
    python scripts/gpu_trip.py slim gpu_job_defusion
    # on the GPU machine, carrying gpu_job_defusion:
    #   bash gpu_job_defusion/run.sh && PYTHONPATH=src python3 scripts/gpu_trip.py collect \
    #       gpu_job_defusion/out $OUT/defusion
    python scripts/gpu_trip.py unslim

DIDFuse's recipe matrix (docs/methods/didfuse.md, about 50 s a run on an H200) travels the same way:
``scripts/gpu_job.sh didfuse 300 --scratch --dir gpu_job_didfuse`` packs the 180 training pairs;
the call loops ``python3 -m ivfuse train didfuse --data gpu_job_didfuse/data/train --device cuda
--seed S ...`` over its runs and tars their weights and cards (no checkpoints) into ``$OUT``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: what ``slim`` keeps from travelling: large files a training job on the GPU machine does not read
SLIM_PATHS = ("src/ivfuse/weights/*.safetensors", "ablations")
SLIM_MARK = "# gpu_trip.py slim"
PART_BYTES = 15 * 2**20
#: the run's small files that travel back as they are
RUN_FILES = ("card.json", "losses.csv", "train.log")


# --------------------------------------------------------------------------------------------
# fit: epochs for the rest of a budget


def fit_epochs(losses_csv: str | Path, probe_wall: float, left: float, margin: float = 0.95) -> int:
    """Epochs of the probe's kind that fit in ``left`` seconds.

    The probe's ``losses.csv`` has one row per finished epoch with its ``seconds``. The epoch time
    is the median over the epochs after the first (the first holds the warm-up: cuDNN autotuning,
    caches); start-up is the probe's wall time ``probe_wall`` less that many epochs at the median
    time: the process start, data loading, the first epoch's warm-up (the run pays them again) and
    the probe's unfinished last epoch (so an overestimate). The result is
    ``floor(margin * (left - start-up) / epoch time)``, at least 1.
    """
    with open(losses_csv, newline="") as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    if len(seconds) < 2:
        raise ValueError(
            f"{losses_csv}: the probe finished {len(seconds)} epoch(s); it needs 2 (a longer probe)"
        )
    epoch_s = statistics.median(seconds[1:])
    startup = max(0.0, probe_wall - epoch_s * len(seconds))
    return max(1, math.floor(margin * (left - startup) / epoch_s))


# --------------------------------------------------------------------------------------------
# collect / join: a run through a narrow way back


def collect(run: str | Path, dest: str | Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """Write ``run``'s card, losses, log and compact checkpoint (in parts) to ``dest``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compact import pack_file  # scripts/compact.py, beside this script

    run, dest = Path(run), Path(dest)
    ck = run / "checkpoint.pt"
    if not ck.is_file():
        raise FileNotFoundError(f"{run}: no checkpoint.pt")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in RUN_FILES:
        if (run / name).is_file():
            shutil.copyfile(run / name, dest / name)
            written.append(dest / name)
    packed = dest / "compact.pt.tmp"
    pack_file(ck, packed)
    blob = packed.read_bytes()
    packed.unlink()
    parts = max(1, math.ceil(len(blob) / part_bytes))
    for i in range(parts):
        p = dest / f"compact.pt.part{i:02d}"
        p.write_bytes(blob[i * part_bytes : (i + 1) * part_bytes])
        written.append(p)
    manifest = {"parts": parts, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    (dest / "compact.json").write_text(json.dumps(manifest) + "\n")
    written.append(dest / "compact.json")
    return written


def join(src: str | Path, run: str | Path) -> Path:
    """Rebuild ``run`` (checkpoint.pt, weights.safetensors, card.json, losses.csv) from ``collect``'s
    files in ``src``; refuses parts that do not add up to the recorded SHA-256."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    from compact import unpack

    from ivfuse.train.checkpoint import CHECKPOINT_NAME, atomic_write_bytes
    from ivfuse.train.ship import export_checkpoint_weights
    from ivfuse.train.trainer import CARD_NAME, WEIGHTS_NAME

    src, run = Path(src), Path(run)
    manifest = json.loads((src / "compact.json").read_text())
    blob = b"".join((src / f"compact.pt.part{i:02d}").read_bytes() for i in range(manifest["parts"]))
    if len(blob) != manifest["bytes"] or hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        raise ValueError(f"{src}: the compact checkpoint's parts do not match compact.json")
    if (run / CHECKPOINT_NAME).exists():
        raise FileExistsError(f"{run / CHECKPOINT_NAME} exists: join into a new folder")
    run.mkdir(parents=True, exist_ok=True)
    packed = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    ck = unpack(packed)
    atomic_write_bytes(run / CHECKPOINT_NAME, lambda f: torch.save(ck, f))
    for name in RUN_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, run / name)
    card = json.loads((src / CARD_NAME).read_text()) if (src / CARD_NAME).is_file() else {}
    export_checkpoint_weights(ck, run / WEIGHTS_NAME, card.get("config"))
    return run


# --------------------------------------------------------------------------------------------
# slim / unslim / size: what travels


def _git(*args: str, check: bool = True) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=check, capture_output=True, text=True).stdout


def travel_bytes(carry: list[str] | tuple[str, ...] = ()) -> int:
    """Bytes of the tracked files, the untracked files git does not ignore and the ``carry`` paths
    (ignored folders sent along, such as packed jobs)."""
    names = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    files = {ROOT / n for n in names if n}
    for c in carry:
        p = ROOT / c
        files.update(p.rglob("*") if p.is_dir() else [p])
    return sum(f.stat().st_size for f in files if f.is_file())


def slim() -> None:
    exclude = ROOT / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    text = exclude.read_text() if exclude.is_file() else ""
    if SLIM_MARK not in text:
        lines = "".join(f"/{p}\n" for p in SLIM_PATHS)
        exclude.write_text(text + f"{SLIM_MARK}\n{lines}{SLIM_MARK} end\n")
    _git("rm", "-r", "-q", "--cached", "--ignore-unmatch", *SLIM_PATHS)


def unslim() -> None:
    exclude = ROOT / ".git" / "info" / "exclude"
    if exclude.is_file():
        text = exclude.read_text()
        if SLIM_MARK in text:
            head, _, rest = text.partition(f"{SLIM_MARK}\n")
            _, _, tail = rest.partition(f"{SLIM_MARK} end\n")
            exclude.write_text(head + tail)
    _git("reset", "-q", "--", *SLIM_PATHS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="epochs that fill the rest of a budget, from a probe run")
    f.add_argument("losses_csv")
    f.add_argument("--wall", type=float, required=True, help="the probe's wall time (s)")
    f.add_argument("--left", type=float, required=True, help="seconds left for the run")
    c = sub.add_parser("collect", help="GPU machine: a run's files in parts of at most 15 MiB")
    c.add_argument("run")
    c.add_argument("dest")
    j = sub.add_parser("join", help="here: rebuild a run from collect's files")
    j.add_argument("src")
    j.add_argument("run")
    for name, text in (
        ("slim", "here: keep the shipped and ablation weights from travelling"),
        ("unslim", "here: undo slim"),
        ("size", "here: MiB that would travel"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("carry", nargs="*", help="ignored folders that travel too (the packed jobs)")
    args = ap.parse_args(argv)
    if args.cmd == "fit":
        print(fit_epochs(args.losses_csv, args.wall, args.left))
    elif args.cmd == "collect":
        for p in collect(args.run, args.dest):
            print(f"{p}  {p.stat().st_size / 2**20:.1f} MiB")
    elif args.cmd == "join":
        print(f"rebuilt {join(args.src, args.run)}")
    elif args.cmd == "slim":
        slim()
        print(f"slim: {travel_bytes(args.carry) / 2**20:.1f} MiB would travel")
        print("the index now stages the removal of those files: run `unslim` before any commit")
    elif args.cmd == "unslim":
        unslim()
        print(f"unslim: {travel_bytes(args.carry) / 2**20:.1f} MiB would travel")
    else:
        print(f"{travel_bytes(args.carry) / 2**20:.1f} MiB would travel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
