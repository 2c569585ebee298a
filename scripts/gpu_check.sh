#!/usr/bin/env bash
# Issue 25's checks on a GPU machine, in one run (budget: about 10 minutes on one GPU).
#
# On the CPU machine first (packs a 2-minute DIDFuse training job into the repository root; git
# ignores gpu_job_*/, so a borrowed machine's call carries it: scripts/gpu_trip.py):
#   scripts/gpu_job.sh didfuse 150 --subset 40 --dir gpu_job_didfuse -- --batch-size 24 --precision bf16 --fast
# On the GPU machine, from the repository root:
#   bash scripts/gpu_check.sh            # PYTHON=... for another interpreter, OUT=... for the results
# Results (also printed): $OUT/pytest_cuda.txt, bench_gpu.txt + .json, gpu_job_didfuse/ (weights, card).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${OUT:-gpu_check_out}
mkdir -p "$out"
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/nvidia_smi.txt"
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' \
    2>&1 | tee "$out/torch.txt"
echo "== pytest -m cuda"
timeout 180 $PY -m pytest -q -p no:cacheprovider -m cuda tests/test_gpu_ready.py 2>&1 | tail -25 | tee "$out/pytest_cuda.txt"
echo "== bench_gpu"
data=()
[[ -d ../shared/data/tno ]] && data=(--data ../shared/data)
[[ -d shared/data/tno ]] && data=(--data shared/data)
timeout 330 $PY -m benchmarks.bench_gpu "${data[@]}" --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.txt"
if [[ -x gpu_job_didfuse/run.sh ]]; then
    echo "== gpu_job didfuse"
    rm -rf gpu_job_didfuse/out
    PYTHON=$PY timeout 200 bash gpu_job_didfuse/run.sh 2>&1 | tail -15 | tee "$out/gpu_job.txt"
    mkdir -p "$out/gpu_job_didfuse"
    cp gpu_job_didfuse/out/card.json gpu_job_didfuse/out/losses.csv gpu_job_didfuse/out/train.log \
        "$out/gpu_job_didfuse/" 2>/dev/null
fi
ls -l "$out"
