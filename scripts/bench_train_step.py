#!/usr/bin/env python
"""Training-step speed of the precision modes, measured in one run on the same batches.

    .venv/bin/python scripts/bench_train_step.py                       # tiny, 8 x 128x128, 1 thread
    .venv/bin/python scripts/bench_train_step.py --crop 256 --threads 2 --out benchmarks/x.json

Each mode (float32; bfloat16 autocast of g_a and g_s, the trainer's ``--amp bf16``; and
``bf16-compile``, the same with g_a and g_s under torch.compile, the trainer's ``--compile``)
runs a training step with the trainer's own ``train_step`` (forward, rate-distortion and
auxiliary loss, backward, clipping, both Adam updates) on the same training crops, partition
and rate points. The compiled mode trains its own copy of the same initial weights; its compile
time is paid once per run and left out of the step times (``compile_s``: its first two
steps, which trace and build the kernels). Modes alternate round by round, so a neighbour's
load falls on all alike; the median step time per mode and its ratios to float32 and to bf16
are printed as JSON. Speed only: whether a mode trains as well per step is for ``train-bench``
to say.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gm_core.config import get_config  # noqa: E402
from gm_core.data import ImageBank  # noqa: E402
from gm_core.model import GroupedMixerModel  # noqa: E402
from gm_core.partition import GroupPartition  # noqa: E402
from gm_core.train import compile_transforms, make_optimizers, native_bf16, train_step  # noqa: E402

MODES = {"fp32": None, "bf16": torch.bfloat16, "bf16-compile": torch.bfloat16}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="steps per mode per round")
    ap.add_argument("--modes", default="fp32,bf16", help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    cfg = get_config(args.config)
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        ap.error(f"unknown mode(s) {', '.join(sorted(unknown))}; choose from {', '.join(MODES)}")
    torch.manual_seed(0)
    model = GroupedMixerModel(cfg).to(device).train()
    eager = (model, *make_optimizers(model, lr=1e-5))  # small lr: the weights barely move
    trainers = {m: eager for m in modes if m != "bf16-compile"}
    if "bf16-compile" in modes:
        compiled = copy.deepcopy(model)
        compile_transforms(compiled, device)
        trainers["bf16-compile"] = (compiled, *make_optimizers(compiled, lr=1e-5))
    part = GroupPartition.parse(cfg.default_partition, cfg.M)
    gen = torch.Generator().manual_seed(0)
    bank = ImageBank(args.data, min_side=args.crop)
    batches = [bank.batch(args.batch, args.crop, gen).to(device) for _ in range(args.steps)]
    q = torch.arange(args.batch, device=device).float() % model.num_rates

    def step(x, mode):
        net, opt, aux_opt, main_params = trainers[mode]
        return train_step(net, net, x, part, q, opt, aux_opt, main_params, 1.0, amp=MODES[mode])["loss"]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = {m: [] for m in modes}
    losses = {m: [] for m in modes}
    compile_s = None
    for m in modes:  # warm-up: oneDNN picks and caches its kernels per shape and dtype
        t0 = time.perf_counter()
        step(batches[0], m)
        if m == "bf16-compile":
            step(batches[0], m)  # the first steps trace and build its kernels
            compile_s = round(time.perf_counter() - t0, 1)
    for _ in range(args.rounds):
        for m in modes:
            for x in batches:
                sync()
                t0 = time.perf_counter()
                losses[m].append(step(x, m))
                sync()
                times[m].append(time.perf_counter() - t0)
    med = {m: statistics.median(t) for m, t in times.items()}
    report = {
        "config": args.config, "batch": args.batch, "crop": args.crop, "threads": args.threads,
        "device": str(device), "cpu": platform.processor() or platform.machine(),
        # Which kernels this CPU gets, so a bf16 ratio can be read: emulated bf16 (no
        # AVX512-BF16/AMX) is tens of times slower than float32, native bf16 is faster.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(device),
        "steps_per_mode": len(times[modes[0]]),
        "median_step_s": {m: round(v, 4) for m, v in med.items()},
        "steps_per_minute": {m: round(60 / v, 1) for m, v in med.items()},
        "speedup_vs_fp32": {m: round(med["fp32"] / v, 3) for m, v in med.items()} if "fp32" in med else None,
        "speedup_vs_bf16": {m: round(med["bf16"] / v, 3) for m, v in med.items()} if "bf16" in med else None,
        "compile_s": compile_s,
        "mean_loss": {m: round(statistics.fmean(v), 4) for m, v in losses.items()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
