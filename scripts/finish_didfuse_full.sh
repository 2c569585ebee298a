#!/usr/bin/env bash
# After the full DIDFuse run has finished: score it on TNO, ship weights + card into the package,
# then score every snapshot (metric trajectory), the BatchNorm variants and the other fusion
# rules of the final weights. Everything lands in RUN/eval/ (JSON + logs), and the README tables
# made from those JSON files in RUN/eval/report.md (scripts/didfuse_report.py).
#
#   scripts/finish_didfuse_full.sh [RUN] [DEST]     RUN: runs/didfuse_full, DEST: the package
#   LIMIT=3 scripts/finish_didfuse_full.sh RUN /tmp/dest    a quick dry run on 3 TNO pairs
#   ONLY_FINAL=1 scripts/finish_didfuse_full.sh                score + ship the final weights only
#   (about 2 minutes; the snapshots, rules and BN variants take another 30-40 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/didfuse_full}
dest=${2:-src/ivfuse/weights}
py=.venv/bin/python
limit=()
[[ -n ${LIMIT:-} ]] && limit=(--limit "$LIMIT")
if [[ ! -f $run/weights.safetensors ]]; then
    echo "$run has no weights.safetensors: the run has not finished" >&2
    exit 1
fi
mkdir -p "$run/eval"
tno() {  # tno NAME ARGS...: score on TNO into RUN/eval/NAME.{json,log}
    local name=$1
    shift
    "$py" scripts/eval_didfuse_tno.py "${limit[@]}" "$@" --json "$run/eval/$name.json" > "$run/eval/$name.log"
    tail -n 9 "$run/eval/$name.log" | head -n 7
}
echo "== final weights"
tno final --weights "$run/weights.safetensors"
"$py" scripts/ship_weights.py didfuse "$run" --metrics "$run/eval/final.json" --dest "$dest"
report() {
    "$py" scripts/didfuse_report.py "$run" > "$run/eval/report.md"
    echo "all results in $run/eval; README tables in $run/eval/report.md"
}
if [[ -n ${ONLY_FINAL:-} ]]; then
    report
    exit 0
fi
for s in "$run"/snapshots/epoch_*.safetensors; do
    name=$(basename "$s" .safetensors)
    [[ -f $s && ! -f $run/eval/$name.json ]] || continue  # scored already (or no snapshots)
    echo "== $name"
    tno "$name" --weights "$s"
done
for rule in average l1; do
    echo "== rule $rule"
    tno "rule_$rule" --weights "$run/weights.safetensors" --rule "$rule"
done
"$py" scripts/didfuse_bn_study.py --weights "$run/weights.safetensors" --out "$run/bn_study"
for v in pop-both pop-ir pop-vi; do
    echo "== BN $v"
    tno "bn_$v" --weights "$run/bn_study/didfuse_$v.safetensors"
done
report
