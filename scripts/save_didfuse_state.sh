#!/usr/bin/env bash
# Commit the running DIDFuse training's latest checkpoint (about 3 MB) and weight snapshots to
# training_state/didfuse_full/ so that a later session can resume it with
# scripts/resume_didfuse_full.sh. Removed once the full run has shipped its weights.
set -euo pipefail
cd "$(dirname "$0")/.."
saved=training_state/didfuse_full
mkdir -p "$saved"
cp -p runs/didfuse_full/checkpoint.pt runs/didfuse_full/losses.csv "$saved/"
cp -p runs/didfuse_full.log "$saved/didfuse_full.log"
if [[ -d runs/didfuse_full/snapshots ]]; then  # 1 MB each, every 10th epoch
    mkdir -p "$saved/snapshots"
    cp -p runs/didfuse_full/snapshots/*.safetensors "$saved/snapshots/"
fi
epoch=$(tail -n 1 "$saved/losses.csv" | cut -d, -f1)
git add -f "$saved"
git commit -q -m "training state: DIDFuse full recipe at epoch $epoch of 120" -- "$saved"
echo "committed $saved at epoch $epoch"
