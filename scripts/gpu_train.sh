#!/usr/bin/env bash
# Runs ON the lent GPU machine (device tool), in the repository copy, with .gpu carried
# (scripts/gpu_pack.py). Continues the shipped checkpoint for MINUTES with a fresh Adam (warm-up),
# 16 x 256x256 crops and a cosine anneal, then measures latency, and leaves in $OUT the weights and
# the bf16 optimizer state split into 15 MB parts (the tool brings back files up to 16 MB).
# Do not run CPU-heavy work beside it: a concurrent check on the machine's CPU cut training from
# 27 to 5 steps/s (the training loop's crops and launches need a core).
#   usage: bash scripts/gpu_train.sh MINUTES [extra train args]
set -o pipefail
minutes=${1:-7}; shift || true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
L=$OUT/log.txt
nvidia-smi -L | tee -a "$L"
python3 -m gm_core train --config tiny --init assets/gmx_tiny.safetensors --data .gpu/data \
    --val .gpu/kodak --val-images 4 --val-every 500 --out /tmp/run --minutes "$minutes" \
    --decay-frac 0.4 --batch 16 --crop 256 --lr 3e-4 --warmup 150 --save-minutes 1.5 \
    --log-every 50 --quiet --device cuda "$@" 2>&1 | tail -n 30 | tee -a "$L"
cp /tmp/run/log.jsonl "$OUT/"
timeout 120 python3 scripts/cross_device.py --images .gpu/lat --what latency --repeats 3 \
    --checkpoint /tmp/run/model.safetensors --out "$OUT/latency.json" >> "$L" 2>&1
split -b 15000000 /tmp/run/model.safetensors "$OUT/model.part-"
python3 -c "from pathlib import Path; from gm_core.train import export_opt_state as e; \
e(Path('/tmp/run'), Path('/tmp/opt.pt'))" && split -b 15000000 /tmp/opt.pt "$OUT/opt.part-"
tail -n 40 "$L"
