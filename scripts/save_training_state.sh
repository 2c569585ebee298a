#!/usr/bin/env bash
# Commit the latest checkpoint of a running (or stopped) training to training_state/NAME/ so that
# a later session can resume it with scripts/resume_training.sh (runs/ is not kept between
# development sessions).
#
#   scripts/save_training_state.sh NAME        # NAME: the run folder runs/NAME (log: runs/NAME.log)
#
# Copies checkpoint.pt (model + optimiser + RNG states + loss history), losses.csv, the log and
# any weight snapshots. A checkpoint over 40 MB (e.g. DeFusion's 95 MB) is stored packed instead,
# as compact.pt (scripts/compact_checkpoint.py: exact weights, Adam's second moment in 8 bits, first
# moment dropped; the resumed run continues closely, not bit-identically).
# Delete training_state/NAME once the run has shipped its weights.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/save_training_state.sh NAME}
run=runs/$name
saved=training_state/$name
[[ -f $run/checkpoint.pt ]] || { echo "no $run/checkpoint.pt" >&2; exit 1; }
mkdir -p "$saved"
if (( $(stat -c %s "$run/checkpoint.pt") > 40000000 )); then
    .venv/bin/python scripts/compact_checkpoint.py pack "$run/checkpoint.pt" "$saved/compact.pt"
    touch -r "$run/checkpoint.pt" "$saved/compact.pt"
    rm -f "$saved/checkpoint.pt"
    cp -p "$run/losses.csv" "$saved/"
else
    cp -p "$run/checkpoint.pt" "$run/losses.csv" "$saved/"
    rm -f "$saved/compact.pt"
fi
[[ -f runs/$name.log ]] && cp -p "runs/$name.log" "$saved/$name.log"
if compgen -G "$run/snapshots/*.safetensors" > /dev/null; then
    mkdir -p "$saved/snapshots"
    cp -p "$run"/snapshots/*.safetensors "$saved/snapshots/"
fi
epoch=$(tail -n 1 "$saved/losses.csv" | cut -d, -f1)
git add -f "$saved"
git commit -q -m "training state: $name at epoch $epoch" -- "$saved"
echo "committed $saved at epoch $epoch ($(du -sh "$saved" | cut -f1))"
