"""Evaluate a trained checkpoint on Kodak with real bitstreams and ship it if it beats what ships.

    .venv/bin/python scripts/release.py runs/tiny_vr/model.safetensors [--force] [--limit N]

Writes assets/gmx_tiny.safetensors, assets/results/kodak_tiny.json (+ _g1 for the context gain),
assets/results/kodak_bd.json, assets/MODEL_CARD.md and, from the run's last.pt, train_state/<name>_opt.pt.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gm_core.codec import Codec  # noqa: E402
from gm_core.data import list_images  # noqa: E402
from gm_core.evaluate import bd_rate, classical_results, evaluate, load_reference  # noqa: E402
from gm_core.train import export_opt_state  # noqa: E402

RESULTS = ROOT / "assets" / "results"
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--name", default="tiny")
    ap.add_argument("--force", action="store_true", help="ship even if not better")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--card-only", action="store_true",
                    help="rewrite MODEL_CARD.md from the shipped results, evaluating nothing")
    args = ap.parse_args()
    if args.card_only:
        res = json.loads((RESULTS / f"kodak_{args.name}.json").read_text())
        g1 = json.loads((RESULTS / f"kodak_{args.name}_g1.json").read_text())
        table = json.loads((RESULTS / "kodak_bd.json").read_text())
        write_card(Codec.load(args.checkpoint), res, g1, table, res["images"])
        return 0
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    images = list_images(KODAK)[:args.limit]
    codec = Codec.load(args.checkpoint)
    t0 = time.time()
    res = evaluate(codec, images, progress=False)
    g1 = evaluate(codec, images, partition="g1", progress=False)
    print(f"evaluated in {time.time() - t0:.0f}s")
    for q, b, p in zip(res["qualities"], res["results"]["bpp"], res["results"]["psnr-rgb"]):
        print(f"  q{q}: {b:.4f} bpp {p:.2f} dB")
    shipped = RESULTS / f"kodak_{args.name}.json"
    if shipped.is_file() and not args.force:
        old = json.loads(shipped.read_text())
        d = bd_rate(old, res)
        print(f"BD-rate against the shipped checkpoint: {d}")
        if d is None or d >= 0:
            print("not better than what ships: nothing changed")
            return 1
    cpath = RESULTS / "kodak_classical.json"
    cres = json.loads(cpath.read_text()) if cpath.is_file() else classical_results(images, progress=False)
    if not cpath.is_file():
        cpath.write_text(json.dumps(cres, indent=1))
    ref = load_reference()
    table = {f"vs {k} (Pillow)": bd_rate(v, res) for k, v in cres.items()}
    table["vs VTM (published)"] = bd_rate(ref["VTM (VVC)"], res) if "VTM (VVC)" in ref else None
    table["context gain: default partition vs G=1, same checkpoint"] = bd_rate(g1, res)
    res["label"] = f"GroupedMixer-{args.name} ({res['partition']})"
    g1["label"] = f"GroupedMixer-{args.name} at G=1 (hyperprior only)"
    dst = ROOT / "assets" / f"gmx_{args.name}.safetensors"
    if Path(args.checkpoint).resolve() != dst.resolve():
        shutil.copyfile(args.checkpoint, dst)
    ship_opt_state(Path(args.checkpoint), codec.meta.get("steps"), args.name)
    shipped.write_text(json.dumps(res, indent=1))
    (RESULTS / f"kodak_{args.name}_g1.json").write_text(json.dumps(g1, indent=1))
    (RESULTS / "kodak_bd.json").write_text(json.dumps(table, indent=1))
    write_card(codec, res, g1, table, len(images))
    for k, v in table.items():
        print(f"BD-rate {k}: {'n/a' if v is None else f'{v:+.1f}%'}")
    return 0


def ship_opt_state(checkpoint: Path, steps, name: str) -> None:
    """Keep train_state/<name>_opt.pt in step with the shipped weights, so that the next stage's
    --opt-state matches its --init; the run's last.pt beside the checkpoint holds the moments."""
    out = ROOT / "train_state" / f"{name}_opt.pt"
    if steps is None or not (checkpoint.parent / "last.pt").is_file():
        # without the checkpoint's step count the moments could not be matched to the weights
        print(f"no last.pt or step count for {checkpoint}: {out.name} left as it is")
        return
    try:
        export_opt_state(checkpoint.parent, out, step=steps)
    except ValueError as e:
        print(f"{e}: {out.name} left as it is")
        return
    print(f"train_state/{out.name}: Adam state at step {steps}")


def write_card(codec, res, g1, table, n_images):
    m = codec.meta
    lines = [f"# Model card: GroupedMixer-{codec.cfg.name} (`assets/gmx_{codec.cfg.name}.safetensors`)", "",
             f"- Model id: `{codec.model_id}`",
             f"- Config: `{json.dumps(codec.cfg.to_dict())}`",
             f"- Parameters: {sum(p.numel() for p in codec.model.parameters()):,}",
             f"- Training: {m.get('steps')} steps, {m.get('train_minutes')} minutes in all, the last stage "
             f"with batch {m.get('batch')} of {m.get('crop')}x{m.get('crop')} random crops "
             "from BSDS500 + CID22 (see shared/data/README.md), Adam, partitions drawn at random per batch, "
             f"variable rate over lambdas {m.get('lambdas')} (one checkpoint, per-channel gain units). "
             "Stages, devices and recipes: `assets/TRAINING_HISTORY.md`.",
             f"- Distortion metric: {m.get('metric', 'mse')}.", "",
             f"## Kodak ({n_images} images, full size, real bitstreams, partition `{res['partition']}`)", "",
             "| quality | lambda | bpp | PSNR (dB) | MS-SSIM | bpp at G=1 | PSNR at G=1 |", "|---|---|---|---|---|---|---|"]
    lams = m.get("lambdas") or list(codec.cfg.lambdas)
    r, g = res["results"], g1["results"]
    for i, q in enumerate(res["qualities"]):
        lam = lams[int(q)] if int(q) < len(lams) else ""
        lines.append(f"| {q:g} | {lam} | {r['bpp'][i]:.4f} | {r['psnr-rgb'][i]:.2f} | {r['ms-ssim'][i]:.4f} "
                     f"| {g['bpp'][i]:.4f} | {g['psnr-rgb'][i]:.2f} |")
    lines += ["", "## BD-rate (PSNR, negative = fewer bits than the anchor at equal quality)", ""]
    for k, v in table.items():
        lines.append(f"- {k}: {'n/a (curves do not overlap)' if v is None else f'{v:+.1f}%'}")
    lines += ["", "Reproduce: `.venv/bin/python scripts/release.py assets/gmx_tiny.safetensors --force`",
              "(or `python -m gm_core eval --out r.json` and `python -m gm_core rd --results r.json ...`).",
              "", "This checkpoint is an early point of a training campaign and is far from the paper's "
              "models; every session resumes training and replaces it when a measurement says it is better."]
    (ROOT / "assets" / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
