#!/usr/bin/env bash
# (Re)start or resume the full official-recipe DIDFuse training in the background.
# Log: runs/didfuse_full.log; per-epoch losses: runs/didfuse_full/losses.csv.
# When the 120 epochs are done: python scripts/ship_didfuse_weights.py
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
OMP_NUM_THREADS=2 setsid nohup .venv/bin/ivfuse train didfuse \
    --data /work/shared/data/flir_train --out runs/didfuse_full \
    --seed 0 --threads 2 --no-progress --resume \
    >> runs/didfuse_full.log 2>&1 < /dev/null &
echo "started pid $!"
