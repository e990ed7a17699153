#!/usr/bin/env bash
# Runs ON the lent GPU machine (device tool), in the repository copy, with .gpu carried
# (scripts/gpu_pack.py). In one call, one thing after another (never side by side: a concurrent
# check on the machine's CPU once cut training from 27 to 5 steps/s, since the training loop's
# crops and launches need a core):
#   1. continues the shipped checkpoint for MINUTES with a fresh Adam (warm-up), 16 x 256x256 crops
#      and a cosine anneal;
#   2. with RECIPE_MINUTES > 0, trains issue 8's benchmark recipe (lmbda0.013_dp1.0: one rate
#      point, the default partition, 8 x 128x128 crops) from scratch for that budget, so that
#      `train-bench --evaluate-only` can measure it on Kodak back on the CPU;
#   3. checks CPU<->CUDA cross-decoding of the new weights and measures latency on kodim23.
# Leaves in $OUT the weights split into 15 MB parts (the tool brings back files up to 16 MB, at
# most 8 files and 64 MB). Without a recipe it also leaves the campaign's bf16 optimizer state;
# with one there is no room for it, and the next CPU stage starts a fresh Adam.
#   usage: bash scripts/gpu_train.sh MINUTES [RECIPE_MINUTES] [extra train args for step 1]
set -o pipefail
minutes=${1:-7}; shift || true
recipe_minutes=${1:-0}; shift || true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
device=${GPU_TRAIN_DEVICE:-cuda}  # cpu to dry-run this script
L=$OUT/log.txt
nvidia-smi -L 2>&1 | tee -a "$L"
date -u +"campaign start %T" | tee -a "$L"
python3 -m gm_core train --config tiny --init assets/gmx_tiny.safetensors --data .gpu/data \
    --val .gpu/kodak --val-images 4 --val-every 1000 --out /tmp/run --minutes "$minutes" \
    --decay-frac 0.4 --batch 16 --crop 256 --lr 3e-4 --warmup 150 --save-minutes 1.5 \
    --log-every 50 --quiet --device "$device" "$@" 2>&1 | tail -n 30 | tee -a "$L"
cp /tmp/run/log.jsonl "$OUT/campaign_log.jsonl"
split -b 15000000 /tmp/run/model.safetensors "$OUT/model.part-"
if [ "$recipe_minutes" != 0 ]; then
    date -u +"recipe start %T" | tee -a "$L"
    python3 -m gm_core train --config tiny --data .gpu/data --val '' --out /tmp/recipe \
        --minutes "$recipe_minutes" --default-prob 1.0 --amp bf16 --lmbda 0.013 --seed 0 \
        --quiet --device "$device" 2>&1 | tail -n 20 | tee -a "$L"
    cp /tmp/recipe/log.jsonl "$OUT/recipe_log.jsonl"
    split -b 15000000 /tmp/recipe/model.safetensors "$OUT/recipe.part-"
else
    python3 -c "from pathlib import Path; from gm_core.train import export_opt_state as e; \
e(Path('/tmp/run'), Path('/tmp/opt.pt'))" && split -b 15000000 /tmp/opt.pt "$OUT/opt.part-"
fi
date -u +"cross-device start %T" | tee -a "$L"
timeout "${CROSS_SECONDS:-100}" python3 scripts/cross_device.py --images .gpu/lat --qualities 0,5 \
    --repeats 3 --checkpoint /tmp/run/model.safetensors --gpu "$device" \
    --out "$OUT/cross_device.json" >> "$L" 2>&1
date -u +"end %T" | tee -a "$L"
tail -n 60 "$L"
