#!/usr/bin/env bash
# A training job that fits a GPU loan: pack it into one small folder, copy that folder to any CUDA
# machine, run it there within a time budget; the weights and the card come back in one folder.
#
#   scripts/gpu_job.sh METHOD BUDGET [--data ROOT] [--dir DIR] [--subset N] [--scratch] [--fit S] [--run] [-- TRAIN OPTIONS...]
#
#   METHOD   didfuse | jcae | sslwaeie | ifesnet | defusion
#   BUDGET   seconds the whole job may take on the GPU machine (start-up and writing included: the
#            training loop gets BUDGET - 60 s, at least half of BUDGET)
#   --data   the data root (default ../shared/data; see its README): flir_train (didfuse, jcae,
#            ifesnet), tno + splits/tno_train16.txt (sslwaeie), natural/BSDS500 (defusion)
#   --dir    the job folder (default gpu_job_METHOD); it holds
#              code/      ivfuse's source (src/ivfuse without the other methods' weights) + pyproject.toml
#              data/      the training subset
#              init.safetensors  the shipped weights of METHOD: the run starts from them (--init)
#              run.sh     what runs on the GPU machine
#              out/       after the run: weights.safetensors, card.json, checkpoint.pt, losses.csv, train.log
#   --subset N  only the first N training pairs/images (default: all; tens of MB)
#   --scratch   start from a random initialisation (the paper's recipe from the start) instead of the
#               shipped weights; no init.safetensors is packed
#   --fit S  a first run (no checkpoint yet) starts with an S-second probe of the same training,
#            reads its epoch time and sets --epochs so that the run ends inside the budget: the
#            schedule (learning-rate steps, loss phases) then fits what the GPU reaches instead of
#            being cut off by the budget (scripts/gpu_trip.py fit)
#   --run    run the job here right after packing (this machine has the GPU)
#   after -- : more `ivfuse train` options (e.g. --batch-size 32 --precision bf16 --fast)
#
# On the GPU machine (python 3.10+ with torch (CUDA build), numpy, pillow, safetensors, typer, rich):
#   bash DIR/run.sh            # trains within the budget, writes DIR/out/
#   bash DIR/run.sh            # again on the next loan: resumes DIR/out/checkpoint.pt
# Copy DIR/out/ back; DIR/out/weights.safetensors loads with ivfuse.load(METHOD, weights=...).
set -euo pipefail
usage() { sed -n '2,31p' "$0" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
method=${1:-}; budget=${2:-}
[[ -n $method && -n $budget ]] || usage
shift 2
data=$repo/../shared/data
dir=gpu_job_$method
subset=0
run_here=0
scratch=0
fit=0
extra=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --data) data=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --subset) subset=$2; shift 2 ;;
        --run) run_here=1; shift ;;
        --scratch) scratch=1; shift ;;
        --fit) fit=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) usage ;;
    esac
done
case $method in didfuse|jcae|sslwaeie|ifesnet|defusion) ;; *) echo "unknown method $method" >&2; exit 2 ;; esac
[[ $budget =~ ^[0-9]+$ && $budget -ge 60 ]] || { echo "BUDGET: whole seconds, at least 60" >&2; exit 2; }
[[ $fit =~ ^[0-9]+$ ]] || { echo "--fit: whole seconds" >&2; exit 2; }
[[ -d $data ]] || { echo "no data root at $data (--data ROOT)" >&2; exit 2; }
weights=$repo/src/ivfuse/weights/$method.safetensors
(( scratch )) || [[ -f $weights ]] || { echo "no shipped weights $weights to start from (--scratch?)" >&2; exit 2; }

rm -rf "$dir"
mkdir -p "$dir/code/src" "$dir/data"
# code: the package without the shipped weights of other methods (and no caches), and the fit helper
tar -C "$repo/src" --exclude='__pycache__' --exclude='*.pyc' --exclude='weights/*.safetensors' -cf - ivfuse \
    | tar -C "$dir/code/src" -xf -
cp "$repo/scripts/gpu_trip.py" "$dir/code/"
cp "$repo/pyproject.toml" "$dir/code/"
(( scratch )) || cp "$weights" "$dir/init.safetensors"

take() {  # take N: the first N lines of stdin (all when N is 0)
    if [[ $1 -gt 0 ]]; then head -n "$1"; else cat; fi
}
case $method in
    defusion)
        # BSDS500 train + test splits (val holds BSD100/BSD68), with the splits table
        mkdir -p "$dir/data/BSDS500"
        grep -E ',(train|test)$' "$data/natural/bsds500_splits.csv" | take "$subset" > "$dir/data/list.csv"
        { echo "file,split"; cat "$dir/data/list.csv"; } > "$dir/data/bsds500_splits.csv"
        cut -d, -f1 "$dir/data/list.csv" | while read -r f; do cp "$data/natural/$f" "$dir/data/$f"; done
        rm "$dir/data/list.csv"
        train_data=data/BSDS500 ;;
    sslwaeie)
        mkdir -p "$dir/data/train/ir" "$dir/data/train/vi"
        take "$subset" < "$data/splits/tno_train16.txt" | while read -r line; do
            stem=${line#tno/}
            cp "$data"/tno/ir/"$stem".* "$dir/data/train/ir/"
            cp "$data"/tno/vi/"$stem".* "$dir/data/train/vi/"
        done
        train_data=data/train ;;
    *)
        mkdir -p "$dir/data/train/ir" "$dir/data/train/vi"
        (cd "$data/flir_train/ir" && ls) | take "$subset" | while read -r f; do
            stem=${f%.*}
            cp "$data/flir_train/ir/$f" "$dir/data/train/ir/"
            cp "$data"/flir_train/vi/"$stem".* "$dir/data/train/vi/"
        done
        train_data=data/train ;;
esac

loop=$(( budget - 60 ))
(( loop < budget / 2 )) && loop=$(( budget / 2 ))
{
    echo '#!/usr/bin/env bash'
    echo "# ivfuse GPU job: $method, budget $budget s (training loop $loop s). Run: bash run.sh"
    echo 'set -euo pipefail'
    echo 'cd "$(dirname "$0")"'
    echo 'export PYTHONPATH=$PWD/code/src${PYTHONPATH:+:$PYTHONPATH}'
    echo 'PY=${PYTHON:-python3}'
    echo '$PY - <<'"'"'CHECK'"'"
    echo 'import importlib.util, sys'
    echo 'missing = [m for m in ("torch", "numpy", "PIL", "safetensors", "typer", "rich") if importlib.util.find_spec(m) is None]'
    echo 'if missing: sys.exit("missing Python packages: " + ", ".join(missing))'
    echo 'import torch'
    echo 'print("torch", torch.__version__, "cuda", torch.version.cuda, "GPU:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'
    echo 'CHECK'
    echo 'mkdir -p out'
    echo 'if [[ -f out/checkpoint.pt ]]; then start=(--resume); elif [[ -f init.safetensors ]]; then start=(--init init.safetensors); else start=(); fi'
    echo "loop=$loop"
    echo 'fitted=()'
    if (( fit > 0 )); then
        echo "if [[ ! -f out/checkpoint.pt ]]; then  # --fit: probe $fit s, then the epochs that fill the rest"
        echo '    t0=$SECONDS; rm -rf probe'
        printf '    $PY -m ivfuse train %q --data %q --out probe --device "${DEVICE:-cuda}" --time-budget %q --epochs 100000 --no-progress "${start[@]}"' \
            "$method" "$train_data" "$fit"
        for a in "${extra[@]}"; do printf ' %q' "$a"; done
        echo ' "$@" > probe.log 2>&1 || { tail -20 probe.log; exit 1; }'
        echo '    wall=$(( SECONDS - t0 )); loop=$(( loop - wall ))'
        echo '    epochs=$($PY code/gpu_trip.py fit probe/losses.csv --wall "$wall" --left "$loop")'
        echo '    echo "probe: $wall s; $epochs epochs fit in the $loop s left" | tee -a out/train.log'
        echo '    fitted=(--epochs "$epochs"); rm -rf probe'
        echo 'fi'
    fi
    printf '$PY -m ivfuse train %q --data %q --out out --device "${DEVICE:-cuda}" --time-budget "$loop" --no-progress "${start[@]}"' \
        "$method" "$train_data"
    for a in "${extra[@]}"; do printf ' %q' "$a"; done
    echo ' "$@" "${fitted[@]}" 2>&1 | tee -a out/train.log'
    echo 'ls -l out'
} > "$dir/run.sh"
chmod +x "$dir/run.sh"
init_note="init weights"; (( scratch )) && init_note="from scratch"
echo "packed $dir: $(du -sh "$dir" | cut -f1) (code, $(find "$dir/data" -type f | wc -l) data files, $init_note)"
echo "on a CUDA machine: bash $dir/run.sh   (DEVICE=cuda:N to pick a GPU; PYTHON=... for another interpreter)"
if (( run_here )); then
    bash "$dir/run.sh"
fi
