"""Training: rate-distortion loss over random partitions and rate points; resumable; DDP-ready.

Run ``python -m gm_core train --config tiny --data DIR --out RUN_DIR --minutes 60`` or under
``torchrun --nproc_per_node=N`` (gloo on the CPU, nccl on CUDA): the same script.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from .checkpoint import (CheckpointError, load_checkpoint, load_state, save_checkpoint,
                         select_rate_points)
from .config import get_config
from .data import ImageBank, center_crops
from .model import GroupedMixerModel, bpp_of
from .partition import GroupPartition


def partition_menu(M: int) -> list[GroupPartition]:
    """What the shared checkpoint is trained to code: the app's menu and then some."""
    slicings = [(M // k,) * k for k in (1, 2, 4, 8) if M % k == 0]
    if M % 12 == 0:
        slicings += [(M // 6, M // 6, M // 3, M // 3), (M // 12, M // 12, M // 6, M // 3, M // 3)]
    out = []
    for sl in slicings:
        for grid in ((1, 1), (2, 2), (4, 4)):
            for order in ("slice-major", "phase-major"):
                if order == "phase-major" and (grid == (1, 1) or len(sl) == 1):
                    continue
                out.append(GroupPartition.build(M, slices=sl, grid=grid, order=order))
    out.append(GroupPartition.build(M, slices=slicings[2] if len(slicings) > 2 else slicings[0],
                                    grid=(2, 2), phases="raster"))
    return out


def _cast_opt(state: dict, dtype) -> dict:
    """An optimizer state dict with its floating tensors (Adam moments) cast to ``dtype``."""
    def cast(v):
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() > 0:
            return v.to(dtype)
        if isinstance(v, dict):
            return {k: cast(x) for k, x in v.items()}
        return v
    return cast(state)


def _select_rate_rows(opt_state: dict, model: GroupedMixerModel, rows: list[int]) -> dict:
    """Adam moments of the main optimizer with the gain tables cut to ``rows`` (see
    ``select_rate_points``); its parameters are indexed in ``make_optimizers``' order."""
    names = [n for n, _ in model.named_parameters() if not n.endswith(".quantiles")]
    state = {k: dict(v) for k, v in opt_state["state"].items()}
    for i, n in enumerate(names):
        if n in GroupedMixerModel.RATE_TABLES and i in state:
            for k in ("exp_avg", "exp_avg_sq"):
                state[i][k] = state[i][k][rows].clone()
    return {**opt_state, "state": state}


def export_opt_state(run_dir: Path, out: Path, step: int | None = None) -> int:
    """Compact optimizer state of a run (bf16 moments) to resume the campaign elsewhere.

    With `step`, refuses (ValueError, nothing written) a last.pt from another step: moments that
    do not belong to the shipped weights would be refused by the next --opt-state anyway."""
    st = torch.load(Path(run_dir) / "last.pt", map_location="cpu", weights_only=True)
    if step is not None and st["step"] != step:
        raise ValueError(f"{Path(run_dir) / 'last.pt'} is from step {st['step']}, not {step}")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"steps": st["step"], "opt": _cast_opt(st["opt"], torch.bfloat16),
                "aux_opt": _cast_opt(st["aux_opt"], torch.bfloat16)}, out)
    return st["step"]


def rd_loss(out, x, lmbda, metric: str = "mse"):
    B, _, H, W = x.shape
    bpp = bpp_of(out["likelihoods"], H * W)
    mse = (out["x_hat"] - x).pow(2).flatten(1).mean(1)
    if metric == "ms-ssim":
        from pytorch_msssim import ms_ssim
        dist_term = 1 - ms_ssim(out["x_hat"].clamp(0, 1), x, data_range=1.0, size_average=False)
    else:
        dist_term = 255 ** 2 * mse
    loss = (lmbda * dist_term + bpp).mean()
    return loss, bpp.mean(), mse.mean()


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def validate(model: GroupedMixerModel, crops: torch.Tensor, part: GroupPartition, device) -> dict:
    model.eval()
    res = {}
    for q in range(model.num_rates):
        bpps, mses = [], []
        for i in range(0, len(crops), 4):
            x = crops[i:i + 4].to(device)
            out = model(x, part, torch.full((len(x),), float(q), device=device))
            bpps.append(bpp_of(out["likelihoods"], x.shape[-2] * x.shape[-1]))
            mses.append((out["x_hat"].clamp(0, 1) - x).pow(2).flatten(1).mean(1))
        bpp, mse = torch.cat(bpps).mean().item(), torch.cat(mses).mean().item()
        res[q] = {"bpp": round(bpp, 4), "psnr": round(psnr(mse), 3)}
    model.train()
    return res


def lr_at(base: float, steps_since_fresh: int, warmup: int, progress: float,
          decay_frac: float) -> float:
    """The learning rate: linear warm-up of fresh Adam moments, constant, then a cosine anneal
    to 0.1x over the last ``decay_frac`` of the run (``progress`` in [0, 1])."""
    lr = base * min(1.0, (steps_since_fresh + 1) / max(warmup, 1))
    if decay_frac > 0:
        frac = (progress - (1 - decay_frac)) / decay_frac
        if frac > 0:
            lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    return lr


def train_step(net, model: GroupedMixerModel, x: torch.Tensor, part: GroupPartition,
               q: torch.Tensor, opt, aux_opt, main_params, clip: float, metric: str = "mse",
               amp=None) -> dict[str, float]:
    """One optimisation step as the trainer takes it: RD loss plus the EntropyBottleneck's aux
    loss, backward, clipping, both Adam updates. ``net`` is ``model`` or its DDP wrapper."""
    out = net(x, part, q, amp=amp)
    loss, bpp, mse = rd_loss(out, x, model.lmbda(q), metric)
    aux = model.aux_loss()
    opt.zero_grad(set_to_none=True)
    aux_opt.zero_grad(set_to_none=True)
    (loss + aux).backward()
    torch.nn.utils.clip_grad_norm_(main_params, clip)
    opt.step()
    aux_opt.step()
    return {"loss": loss.item(), "bpp": bpp.item(), "mse": mse.item(), "aux": aux.item()}


def make_optimizers(model: GroupedMixerModel, lr: float):
    """Adam for the network, and a separate Adam for the EntropyBottleneck's quantiles (aux)."""
    main_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return torch.optim.Adam(main_params, lr=lr), torch.optim.Adam(aux_params, lr=1e-3), main_params


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 convolutions run natively here: CUDA with bf16, or a CPU whose oneDNN
    has AVX512-BF16/AMX kernels (elsewhere they are emulated, slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_amp(choice: str, device: torch.device) -> torch.dtype | None:
    """``--amp``: ``auto`` is bf16 where it runs natively (1.6x the steps per hour on this
    project's AVX512-BF16 CPU at the same loss per step; benchmarks/train/README.md), float32
    elsewhere."""
    if choice == "auto":
        choice = "bf16" if native_bf16(device) else "off"
    return {"off": None, "bf16": torch.bfloat16}[choice]


def has_cpp_compiler() -> bool:
    """Whether torch.compile can build CPU kernels here (inductor compiles them with C++)."""
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def compile_transforms(model: GroupedMixerModel, device: torch.device) -> None:
    """``--compile``: torch.compile g_a and g_s in place (their state_dict keys stay as they are).

    Their convolutions are most of a step's time, and inductor fuses the GDN arithmetic between
    them: 1.19x the steps per minute at 128x128 crops, 1.29x at 256x256 on one CPU thread
    (``scripts/bench_train_step.py``, benchmarks/train/README.md). The entropy side stays eager:
    its shapes change with every partition drawn, and compiling it bought nothing measurable.
    """
    if device.type == "cpu":
        if not has_cpp_compiler():
            raise SystemExit("--compile needs a C++ compiler on the CPU (torch.compile builds its "
                             "kernels with one): install g++, or train without --compile")
        # Inductor's CPU build probes for CUDA and warns that there is none.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    model.g_a.compile()
    model.g_s.compile()


def _run_fraction(run_s: float, budget: float, step: int, args) -> float:
    """How far this run is through its budget: by wall time, or by steps without --minutes."""
    if budget < float("inf"):
        return run_s / budget
    if args.steps:
        return step / args.steps
    return 0.0


def train(args) -> Path:
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = torch.device(args.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    rank = 0
    if ddp:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # subnormals from GELU tails are slow and carry no signal
    if device.type == "cuda":  # TF32 convs/matmuls: training noise dwarfs their rounding
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "last.pt"

    cfg = get_config(args.config)
    if args.lmbda:
        cfg = dataclasses.replace(cfg, lambdas=tuple(args.lmbda))
    torch.manual_seed(args.seed + rank)
    model = GroupedMixerModel(cfg).to(device)
    opt, aux_opt, main_params = make_optimizers(model, args.lr)
    step, elapsed_total = 0, 0.0
    fresh_opt = True  # fresh Adam moments need a warm-up, also when the weights are not fresh
    if state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        load_state(model, st["model"])
        opt.load_state_dict(st["opt"])
        aux_opt.load_state_dict(st["aux_opt"])
        step, elapsed_total = st["step"], st["elapsed"]
        fresh_opt = False
        if rank == 0:
            print(f"resumed {state_path} at step {step} ({elapsed_total / 60:.1f} min trained)")
    elif args.init:
        init, _, meta = load_checkpoint(args.init)
        rows = None
        if args.lmbda and init.cfg != cfg and dataclasses.replace(init.cfg, lambdas=cfg.lambdas) == cfg:
            # Fine-tune some of a variable-rate checkpoint's rate points on their own.
            try:
                init, rows = select_rate_points(init, cfg.lambdas)
            except CheckpointError as e:
                raise SystemExit(f"--init {args.init}: {e}") from None
        if init.cfg != cfg:
            raise SystemExit(f"--init {args.init} has config {init.cfg.name} with other sizes")
        load_state(model, init.state_dict())
        step, elapsed_total = int(meta.get("steps", 0)), float(meta.get("train_minutes", 0)) * 60
        if args.opt_state:
            # The campaign's optimizer moments, committed beside the shipped weights (bf16).
            st = torch.load(args.opt_state, map_location="cpu", weights_only=True)
            if st.get("steps") != step:
                raise SystemExit(f"--opt-state is from step {st.get('steps')}, --init from step {step}")
            opt_state = _cast_opt(st["opt"], torch.float32)
            if rows is not None:
                opt_state = _select_rate_rows(opt_state, model, rows)
            opt.load_state_dict(opt_state)
            aux_opt.load_state_dict(_cast_opt(st["aux_opt"], torch.float32))
            fresh_opt = False
        if rank == 0:
            print(f"initialised from {args.init} (step {step})")
    for g in opt.param_groups:
        g["lr"] = args.lr
    model.to(device).train()
    amp = resolve_amp(args.amp, device)
    if amp is not None and device.type == "cpu" and rank == 0 and not native_bf16(device):
        print("note: this CPU has no native bfloat16 (AVX512-BF16/AMX); --amp bf16 may be slower than float32")
    if args.compile:
        compile_transforms(model, device)
    net = torch.nn.parallel.DistributedDataParallel(model) if ddp else model

    big = max(args.crop, args.final_crop or 0)
    bank = ImageBank(args.data, min_side=big if not args.small_ok else 0)
    gen = torch.Generator().manual_seed(args.seed * 1000 + rank * 7919 + step)
    part_rng = random.Random(args.seed + step)  # same on every rank: DDP needs equal graphs
    menu = partition_menu(cfg.M)
    default_part = GroupPartition.parse(cfg.default_partition, cfg.M)
    g1_part = GroupPartition.parse("g1", cfg.M)
    val_crops = center_crops(args.val, 256, limit=args.val_images) if (args.val and rank == 0) else None
    log = open(out_dir / "log.jsonl", "a") if rank == 0 else None

    warm_from = step if fresh_opt else 0
    budget = args.minutes * 60 if args.minutes else float("inf")
    t_start = time.time()
    last_save = t_start
    bar = tqdm(total=args.steps or None, initial=step, disable=rank != 0 or args.quiet,
               dynamic_ncols=True)
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "aux": 0.0, "n": 0}
    interrupted = []  # set by SIGTERM/SIGINT (below)

    def save(final=False):
        if rank != 0:
            return
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(),
                    "step": step, "elapsed": elapsed_total + time.time() - t_start,
                    "config": cfg.to_dict()}, state_path.with_suffix(".tmp"))
        os.replace(state_path.with_suffix(".tmp"), state_path)
        meta = {"steps": step, "train_minutes": round((elapsed_total + time.time() - t_start) / 60, 1),
                "data": str(args.data), "crop": args.crop, "batch": args.batch,
                **({"final_crop": args.final_crop, "final_batch": args.final_batch or args.batch,
                    "final_frac": args.final_frac} if args.final_crop else {}),
                **({"g1_frac": args.g1_frac} if args.g1_frac else {}),
                "metric": args.metric, "lambdas": list(cfg.lambdas),
                "amp": "bf16" if amp is not None else "off",
                **({"compile": True} if args.compile else {})}
        if interrupted:  # stopped before its budget: whoever measures it must know
            meta["interrupted"] = True
        save_checkpoint(model, out_dir / "model.safetensors", meta)
        model.train()

    # SIGTERM/SIGINT end the run cleanly at the next step, with a checkpoint.
    import signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: interrupted.append(True))

    while True:
        run_s = time.time() - t_start
        progress = _run_fraction(run_s, budget, step, args)
        stop = torch.tensor([float(run_s >= budget or bool(args.steps and step >= args.steps)
                                   or bool(interrupted))])
        if ddp:
            dist.all_reduce(stop)
        if stop.item() > 0:
            break
        lr = lr_at(args.lr, step - warm_from, args.warmup,
                   progress if budget < float("inf") else 0.0, args.decay_frac)
        for g in opt.param_groups:
            g["lr"] = lr

        crop, batch = args.crop, args.batch
        if args.final_crop and progress >= 1 - args.final_frac:
            # Small crops teach local statistics cheaply; the last part of the run sees the
            # larger context that full images have (design note, section 8).
            crop, batch = args.final_crop, args.final_batch or args.batch
        part = default_part if part_rng.random() < args.default_prob else part_rng.choice(menu)
        if progress < args.g1_frac:
            # Warm start as a plain hyperprior: a quarter of the default partition's mixer
            # tokens per step. Whether transforms first trained this way give the context
            # model a better start is what the recipe measures.
            part = g1_part
        x = bank.batch(batch, crop, gen).to(device)
        q = torch.randint(model.num_rates, (batch,), generator=gen).float().to(device)
        stats = train_step(net, model, x, part, q, opt, aux_opt, main_params, args.clip,
                           args.metric, amp)
        step += 1
        bar.update(1)
        for k, v in stats.items():
            acc[k] += v
        acc["n"] += 1
        if rank == 0 and step % args.log_every == 0:
            n = acc.pop("n")
            rec = {k: round(v / n, 5) for k, v in acc.items()}
            rec.update(step=step, lr=lr, psnr=round(psnr(rec["mse"]), 3),
                       minutes=round((elapsed_total + time.time() - t_start) / 60, 2))
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(loss=rec["loss"], bpp=rec["bpp"], psnr=rec["psnr"])
            acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "aux": 0.0, "n": 0}
        if rank == 0 and val_crops is not None and step % args.val_every == 0:
            res = validate(model, val_crops, default_part, device)
            log.write(json.dumps({"val": res, "step": step}) + "\n")
            log.flush()
            tqdm.write(f"step {step} val " + " ".join(f"q{q}:{r['bpp']:.3f}bpp/{r['psnr']:.2f}dB"
                                                      for q, r in res.items()))
        if time.time() - last_save > args.save_minutes * 60:
            save()
            last_save = time.time()
    save(final=True)
    bar.close()
    if ddp:
        dist.destroy_process_group()
    return out_dir


def build_parser():
    import argparse
    p = argparse.ArgumentParser(prog="python -m gm_core train")
    add_arguments(p)
    return p


def add_arguments(p) -> None:
    p.add_argument("--config", default="tiny")
    p.add_argument("--lmbda", type=float, nargs="*", default=None,
                   help="rate points (default: the config's variable-rate ladder); with --init, lambdas "
                        "of the checkpoint's ladder fine-tune those rate points on their own")
    p.add_argument("--metric", choices=("mse", "ms-ssim"), default="mse")
    p.add_argument("--data", default="../shared/data/train")
    p.add_argument("--val", default="../shared/data/kodak", help="validation images ('' for none)")
    p.add_argument("--val-images", type=int, default=12)
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--out", required=True)
    p.add_argument("--init", default=None, help="start from a safetensors checkpoint")
    p.add_argument("--opt-state", default=None,
                   help="with --init: the optimizer state exported beside it (train_state/)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this run")
    p.add_argument("--steps", type=int, default=None, help="stop at this total step count")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--final-crop", type=int, default=0,
                   help="crop size for the last --final-frac of the run (start small, finish larger)")
    p.add_argument("--final-batch", type=int, default=0, help="batch size with --final-crop (default: --batch)")
    p.add_argument("--final-frac", type=float, default=0.3)
    p.add_argument("--small-ok", action="store_true", help="upsample images smaller than the crop")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--decay-frac", type=float, default=0.15)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--default-prob", type=float, default=0.7,
                   help="share of batches coded with the config's default partition (the rest "
                        "draw from the partition menu)")
    p.add_argument("--g1-frac", type=float, default=0.0,
                   help="train the first part of the run at G=1 (a plain hyperprior) before "
                        "drawing partitions: a warm start of the entropy model")
    p.add_argument("--amp", choices=("auto", "off", "bf16"), default="auto",
                   help="bf16: g_a and g_s under bfloat16 autocast (the entropy side stays "
                        "float32); auto: bf16 where the hardware runs it natively")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the pixel transforms (faster steps after a minute or two of "
                        "compiling; needs a C++ compiler on the CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--save-minutes", type=float, default=10.0)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--quiet", action="store_true")
