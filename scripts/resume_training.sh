#!/usr/bin/env bash
# (Re)start or resume a training run in the background, restoring its checkpoint from
# training_state/NAME/ (committed by scripts/save_training_state.sh) when runs/NAME has none
# or an older one.
#
#   scripts/resume_training.sh METHOD NAME [ivfuse train options...]
#   e.g. scripts/resume_training.sh jcae jcae --data ../shared/data/flir_train --epochs 40 \
#            --threads 1 --snapshot-every 10 --test ../shared/data/tno
#
# Log: runs/NAME.log (appended); per-epoch losses: runs/NAME/losses.csv. The run's settings come
# from its checkpoint; only --epochs may differ. When it is done:
#   python scripts/ship_weights.py METHOD runs/NAME
set -euo pipefail
cd "$(dirname "$0")/.."
method=${1:?usage: scripts/resume_training.sh METHOD NAME [options]}
name=${2:?usage: scripts/resume_training.sh METHOD NAME [options]}
shift 2
if [[ ! -x .venv/bin/ivfuse ]]; then
    echo "no .venv/bin/ivfuse: python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -e ." >&2
    exit 1
fi
run=runs/$name
saved=training_state/$name
mkdir -p "$run"
if [[ -f $saved/compact.pt && ( ! -f $run/checkpoint.pt || $saved/compact.pt -nt $run/checkpoint.pt ) ]]; then
    .venv/bin/python scripts/compact_checkpoint.py unpack "$saved/compact.pt" "$run/checkpoint.pt"
    touch -r "$saved/compact.pt" "$run/checkpoint.pt"
    cp -p "$saved/losses.csv" "$run/"
    [[ -f $saved/$name.log ]] && cp -p "$saved/$name.log" "runs/$name.log"
    echo "restored checkpoint from $saved/compact.pt (packed: Adam's first moment restarts at zero)"
elif [[ -f $saved/checkpoint.pt && ( ! -f $run/checkpoint.pt || $saved/checkpoint.pt -nt $run/checkpoint.pt ) ]]; then
    cp -p "$saved/checkpoint.pt" "$saved/losses.csv" "$run/"
    [[ -f $saved/$name.log ]] && cp -p "$saved/$name.log" "runs/$name.log"
    if [[ -d $saved/snapshots ]]; then
        mkdir -p "$run/snapshots"
        cp -p "$saved"/snapshots/*.safetensors "$run/snapshots/"
    fi
    echo "restored checkpoint from $saved"
fi
resume=()
[[ -f $run/checkpoint.pt ]] && resume=(--resume)
setsid nohup .venv/bin/ivfuse train "$method" --out "$run" --seed 0 --no-progress "${resume[@]}" "$@" \
    >> "runs/$name.log" 2>&1 < /dev/null &
echo "started pid $! ($method, $run${resume:+, resumed})"
