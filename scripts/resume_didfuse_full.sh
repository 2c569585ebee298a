#!/usr/bin/env bash
# (Re)start or resume the full official-recipe DIDFuse training in the background.
# Log: runs/didfuse_full.log; per-epoch losses: runs/didfuse_full/losses.csv.
# runs/ is not kept between development sessions, so scripts/save_didfuse_state.sh commits the
# latest checkpoint to training_state/didfuse_full/; this script restores it from there when
# runs/didfuse_full has none (or an older one).
# When the 120 epochs are done: python scripts/ship_weights.py didfuse runs/didfuse_full
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/ivfuse ]]; then
    echo "no .venv/bin/ivfuse: python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -e ." >&2
    exit 1
fi
mkdir -p runs/didfuse_full
saved=training_state/didfuse_full
if [[ -f $saved/checkpoint.pt && ( ! -f runs/didfuse_full/checkpoint.pt || $saved/checkpoint.pt -nt runs/didfuse_full/checkpoint.pt ) ]]; then
    cp -p "$saved/checkpoint.pt" "$saved/losses.csv" runs/didfuse_full/
    [[ -f $saved/didfuse_full.log ]] && cp -p "$saved/didfuse_full.log" runs/didfuse_full.log
    if [[ -d $saved/snapshots ]]; then
        mkdir -p runs/didfuse_full/snapshots
        cp -p "$saved"/snapshots/*.safetensors runs/didfuse_full/snapshots/
    fi
    echo "restored checkpoint from $saved"
fi
OMP_NUM_THREADS=2 setsid nohup .venv/bin/ivfuse train didfuse \
    --data /work/shared/data/flir_train --out runs/didfuse_full \
    --seed 0 --threads 2 --no-progress --resume --snapshot-every 10 \
    >> runs/didfuse_full.log 2>&1 < /dev/null &
echo "started pid $!"
