#!/usr/bin/env python
"""Is the entropy model, or the transforms, what holds the shipped checkpoint back? Two probes.

    .venv/bin/python scripts/entropy_probe.py finetune --minutes 25 --out benchmarks/train/entropy_only.json
    .venv/bin/python scripts/entropy_probe.py finetune --minutes 25 --extra-depth 2 --out ...
    .venv/bin/python scripts/entropy_probe.py rounding

``finetune`` trains only the entropy side (h_a, the EntropyBottleneck, h_s, the mixer and the
hyper gains) of a checkpoint for the rate alone, with g_a, g_s and the latent gains frozen.
y = round(g_a(x) * gain) is then fixed, so the distortion is too and every bit saved is a pure
BD-rate gain. Without g_s and without a backward pass through g_a a step costs about a quarter of
a campaign step, so the probe gives the entropy model about four times the updates per minute.
``--extra-depth K`` first appends K (inner, cross) mixer pairs whose residual branches start at
zero (the model's function is unchanged at step 0): does more depth, the paper's larger
configurations, buy rate? Validation: estimated bpp (likelihoods, no noise) of 12 Kodak centre
crops at every rate point, at the default partition and at G=1, every 5 minutes.

``rounding`` measures what zero-centred quantisation (y_hat = round(y), design note section 5)
costs against mean-shifted rounding (round(y - mean) + mean, which needs G sequential training
passes) under the same predicted parameters, on four Kodak images at q3.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gm_core.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, load_state, model_id  # noqa: E402
from gm_core.data import ImageBank, center_crops  # noqa: E402
from gm_core.entropy_coding import gaussian_likelihood  # noqa: E402
from gm_core.images import load_image  # noqa: E402
from gm_core.mixer import InnerGroupMixer  # noqa: E402
from gm_core.model import GroupedMixerModel, bpp_of  # noqa: E402
from gm_core.partition import GroupPartition  # noqa: E402
from gm_core.train import lr_at, partition_menu  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"


def grow_mixer(model: GroupedMixerModel, extra: int) -> GroupedMixerModel:
    """A copy with ``extra`` more (inner, cross) pairs after the existing ones; their attention,
    MLP and positional branches start at zero, so the grown model computes what ``model`` does."""
    big = GroupedMixerModel(dataclasses.replace(model.cfg, depth=model.cfg.depth + extra))
    load_state(big, model.state_dict(), strict=False)
    for blk in big.latent.mixer.blocks[2 * model.cfg.depth:]:
        branches = [blk.proj, blk.mlp.fc2] + ([blk.pos] if isinstance(blk, InnerGroupMixer) else [])
        for m in branches:
            torch.nn.init.zeros_(m.weight)
            torch.nn.init.zeros_(m.bias)
    return big


def crop_rates(model, y0: torch.Tensor, part: GroupPartition, q: float, pixels: int) -> torch.Tensor:
    """Estimated bits per pixel of each crop (likelihoods of y_hat = round(y), and of z)."""
    gain, _, hgain, hinv = model.gains(torch.full((len(y0),), float(q)))
    y = y0 * gain
    psi, z_lik = model.hyper(y, hgain, hinv)
    _, y_lik = model.latent(y, psi, part, noise=False)
    return bpp_of({"y": y_lik, "z": z_lik}, pixels)


def finetune(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    model, start_id, meta = load_checkpoint(args.checkpoint)
    if args.extra_depth:
        model = grow_mixer(model, args.extra_depth)
    cfg = model.cfg
    for p in model.parameters():
        p.requires_grad_(False)
    side = list(model.hyper.named_parameters()) + list(model.latent.named_parameters())
    params = [p for n, p in side if not n.endswith("quantiles")]
    params += [model.log_hyper_gain, model.log_hyper_inv_gain]
    quantiles = model.hyper.entropy_bottleneck.quantiles
    for p in params + [quantiles]:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=args.lr)
    aux_opt = torch.optim.Adam([quantiles], lr=1e-3)

    bank = ImageBank(args.data, min_side=args.crop)
    val = center_crops(args.val, 256, limit=args.val_images)
    gen = torch.Generator().manual_seed(args.seed)
    rng = random.Random(args.seed)
    menu = partition_menu(cfg.M)
    parts = {"default": GroupPartition.parse(cfg.default_partition, cfg.M),
             "g1": GroupPartition.parse("g1", cfg.M)}
    with torch.no_grad():
        y_val = model.g_a(val)

    @torch.no_grad()
    def validate() -> dict:
        model.eval()
        res = {name: [round(torch.cat([crop_rates(model, y_val[i:i + 4], part, q, val.shape[-2] * val.shape[-1])
                                       for i in range(0, len(y_val), 4)]).mean().item(), 5)
                      for q in range(model.num_rates)] for name, part in parts.items()}
        model.train()
        return res

    model.train()
    log = [{"step": 0, "minutes": 0.0, "val": validate()}]
    print(json.dumps(log[-1]), flush=True)
    budget = args.minutes * 60
    t0 = last = time.time()
    step, bpp_sum = 0, 0.0
    while (now := time.time()) - t0 < budget:
        for g in opt.param_groups:
            g["lr"] = lr_at(args.lr, step, args.warmup, (now - t0) / budget, args.decay_frac)
        part = parts["default"] if rng.random() < args.default_prob else rng.choice(menu)
        x = bank.batch(args.batch, args.crop, gen)
        q = torch.randint(model.num_rates, (args.batch,), generator=gen).float()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            y0 = model.g_a(x).float()  # frozen: only its output is needed
        gain, _, hgain, hinv = model.gains(q)
        y = y0 * gain
        psi, z_lik = model.hyper(y, hgain, hinv)
        _, y_lik = model.latent(y, psi, part)
        bpp = bpp_of({"y": y_lik, "z": z_lik}, args.crop ** 2).mean()
        aux = model.aux_loss()
        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        (bpp + aux).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        aux_opt.step()
        step += 1
        bpp_sum += bpp.item()
        if time.time() - last > args.val_minutes * 60:
            last = time.time()
            log.append({"step": step, "minutes": round((last - t0) / 60, 1),
                        "train_bpp": round(bpp_sum / step, 5), "val": validate()})
            print(json.dumps(log[-1]), flush=True)
    log.append({"step": step, "minutes": round((time.time() - t0) / 60, 1),
                "train_bpp": round(bpp_sum / max(step, 1), 5), "val": validate()})
    first, final = log[0]["val"], log[-1]["val"]
    change = {name: [round(100 * (b / a - 1), 2) for a, b in zip(first[name], final[name])]
              for name in first}
    report = {"probe": "entropy-only fine-tune", "checkpoint": str(args.checkpoint),
              "start_model_id": start_id, "start_steps": meta.get("steps"),
              "extra_depth": args.extra_depth, "depth": model.cfg.depth,
              "options": {k: v for k, v in vars(args).items() if k not in ("func", "out")},
              "steps": step, "val_crops": len(val), "log": log,
              "bpp_change_percent": change,
              "context_gain_percent": {"start": _gains(first), "final": _gains(final)}}
    if args.save:
        torch.save(model.state_dict(), args.save)
    return report


def _gains(v: dict) -> list[float]:
    """Estimated rate of the default partition against G=1, per rate point, in per cent."""
    return [round(100 * (a / b - 1), 2) for a, b in zip(v["default"], v["g1"])]


@torch.no_grad()
def rounding(args) -> dict:
    torch.set_num_threads(args.threads)
    model, mid, _ = load_checkpoint(args.checkpoint)
    out = {"probe": "zero-centred against mean-shifted rounding", "model_id": mid,
           "quality": args.quality, "images": args.images, "partitions": {}}
    for spec in (model.cfg.default_partition, "g1"):
        part = GroupPartition.parse(spec, model.cfg.M)
        bits = {"zero_centred": 0.0, "mean_shifted": 0.0}
        pixels = 0
        for name in args.images:
            img, _ = load_image(KODAK / name)
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
            gain = model.gains(torch.tensor([args.quality]))[0]
            y = model.g_a(x) * gain
            trace = model.compress(x, part, args.quality)
            mean, scale = trace["mean"].float(), trace["scale"].float()
            bits["zero_centred"] += -torch.log2(gaussian_likelihood(torch.round(y), mean, scale)).sum().item()
            bits["mean_shifted"] += -torch.log2(gaussian_likelihood(
                torch.round(y - mean), torch.zeros_like(mean), scale)).sum().item()
            pixels += x.shape[-2] * x.shape[-1]
        row = {k: round(v / pixels, 5) for k, v in bits.items()}
        row["mean_shifted_vs_zero_centred_percent"] = round(
            100 * (bits["mean_shifted"] / bits["zero_centred"] - 1), 2)
        out["partitions"][part.to_spec()] = row
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(required=True)
    f = sub.add_parser("finetune", help="train the entropy side alone for the rate")
    f.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    f.add_argument("--extra-depth", type=int, default=0)
    f.add_argument("--minutes", type=float, default=25)
    f.add_argument("--lr", type=float, default=2e-4)
    f.add_argument("--warmup", type=int, default=100)
    f.add_argument("--decay-frac", type=float, default=0.4)
    f.add_argument("--batch", type=int, default=8)
    f.add_argument("--crop", type=int, default=256)
    f.add_argument("--default-prob", type=float, default=0.7)
    f.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train"))
    f.add_argument("--val", default=str(KODAK))
    f.add_argument("--val-images", type=int, default=12)
    f.add_argument("--val-minutes", type=float, default=5)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--threads", type=int, default=1)
    f.add_argument("--save", default=None, help="write the fine-tuned state_dict here (torch.save)")
    f.add_argument("--out", default=None, help="write the report (JSON) here")
    f.set_defaults(func=finetune)
    r = sub.add_parser("rounding", help="what zero-centred rounding costs in rate")
    r.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    r.add_argument("--quality", type=float, default=3.0)
    r.add_argument("--images", nargs="+", default=["kodim01.png", "kodim05.png", "kodim13.png", "kodim23.png"])
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--out", default=None)
    r.set_defaults(func=rounding)
    args = ap.parse_args()
    report = args.func(args)
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "log"}, indent=1))


if __name__ == "__main__":
    main()
