"""Training benchmark: train from scratch for a fixed budget, then measure on Kodak for real.

``python -m gm_core train-bench --minutes 60 --recipe NAME`` writes
``benchmarks/train/NAME.json`` with the recipe, the training curve summary, bpp and PSNR per rate
point from real bitstreams, and the PSNR gap to Pillow's JPEG at the same bpp, so recipes can be
compared at equal compute and the history of what helped stays in the repo. With ``-- --init CK``
it measures a fine-tune instead: the report names the starting checkpoint and, when that is the
shipped one, each point's PSNR gain over its curve at the same bpp.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from . import train as train_mod
from .data import list_images
from .evaluate import classical_results, psnr_at

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "train"
CLASSICAL_CACHE = Path(__file__).resolve().parent.parent / "assets" / "results" / "kodak_classical.json"


def run_train_bench(args) -> dict:
    from .codec import Codec
    from .evaluate import evaluate
    out_dir = Path(args.out or (Path("runs") / f"bench_{args.recipe}"))
    if args.trained_on and not args.evaluate_only:
        raise SystemExit("--trained-on describes a run measured with --evaluate-only; this one trains here")
    if args.evaluate_only:
        if not (out_dir / "model.safetensors").is_file() or not (out_dir / "log.jsonl").is_file():
            raise SystemExit(f"--evaluate-only needs the run's model.safetensors and log.jsonl in {out_dir}")
    elif (out_dir / "last.pt").exists() and not args.resume:
        raise SystemExit(f"{out_dir} already holds a run; pick another --out or pass --resume")
    targs = train_mod.build_parser().parse_args(
        ["--out", str(out_dir), "--config", args.config, "--minutes", str(args.minutes),
         "--quiet", "--val", ""] + args.train_args)
    start = _start_point(targs.init) if targs.init else None  # read before anything is re-shipped
    t0 = time.time()
    if not args.evaluate_only:
        train_mod.train(targs)
    codec = Codec.load(out_dir / "model.safetensors")
    meta = codec.meta
    # a run trained elsewhere (a lent GPU) brings its own clock, in its checkpoint
    train_s = float(meta.get("train_minutes", 0)) * 60 if args.evaluate_only else time.time() - t0
    if meta.get("interrupted"):  # a recipe is only comparable at its full budget
        raise SystemExit(f"training was interrupted at step {meta.get('steps')} after "
                         f"{train_s / 60:.1f} of {args.minutes:g} minutes: nothing evaluated, no "
                         f"report written (the checkpoint is in {out_dir})")
    images = list_images(args.images)[:args.limit]
    qualities = list(range(codec.model.num_rates))
    res = evaluate(codec, images, qualities, progress=False)
    if args.images == str(DEFAULT_KODAK) and CLASSICAL_CACHE.is_file() and args.limit is None:
        jpeg = json.loads(CLASSICAL_CACHE.read_text())["JPEG"]
    else:
        jpeg = classical_results(images, codecs=("JPEG",), progress=False)["JPEG"]
    points = []
    for q, b, p in zip(qualities, res["results"]["bpp"], res["results"]["psnr-rgb"]):
        j = psnr_at(b, jpeg)
        points.append({"quality": q, "bpp": round(b, 4), "psnr": round(p, 3),
                       "jpeg_psnr_at_bpp": round(j, 3), "gap_to_jpeg_db": round(p - j, 3)})
        if start and start.get("results"):
            s0 = psnr_at(b, start["results"])
            points[-1].update(start_psnr_at_bpp=round(s0, 3), gain_over_start_db=round(p - s0, 3))
    log = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in log if "loss" in r]
    report = {
        "recipe": args.recipe, "config": args.config, "budget_minutes": args.minutes,
        "train_args": " ".join(args.train_args),
        # every option as resolved, so a later change of the trainer's defaults leaves the
        # recipe reproducible (the checkpoint's meta holds what --amp auto chose)
        "train_options": {k: v for k, v in vars(targs).items() if k != "out"},
        "train_seconds": round(train_s, 1),
        "steps": meta["steps"],
        "final_train_loss": steps[-1]["loss"] if steps else None,
        "machine": ({"trained_on": args.trained_on, "evaluated_on": platform.platform()}
                    if args.evaluate_only else
                    {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                     "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}),
        "ran_beside": args.beside,
        "eval_images": len(images), "points": points, "meta": meta,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if start:
        report["start"] = {k: v for k, v in start.items() if k != "results"}
        report["start"]["points"] = ([{"bpp": round(b, 4), "psnr": round(p, 3)} for b, p in
                                      zip(start["results"]["bpp"], start["results"]["psnr-rgb"])]
                                     if start.get("results") else None)
    mid = points[len(points) // 2]
    report["middle_point_gap_to_jpeg_db"] = mid["gap_to_jpeg_db"]
    return report


DEFAULT_KODAK = "../shared/data/kodak"
SHIPPED_RESULTS = Path(__file__).resolve().parent.parent / "assets" / "results" / "kodak_tiny.json"


def _start_point(init: str) -> dict:
    """What a fine-tune starts from: the checkpoint's id and steps, and its Kodak curve when
    that checkpoint is the shipped one (its results are in assets/), so the report can say
    what the fine-tune gained at equal bpp."""
    from .codec import Codec
    codec = Codec.load(init)
    start = {"checkpoint": str(init), "model_id": codec.model_id,
             "steps": int(codec.meta.get("steps", 0)), "results": None}
    if SHIPPED_RESULTS.is_file():
        shipped = json.loads(SHIPPED_RESULTS.read_text())
        if shipped.get("model_id") == codec.model_id:
            start["results"] = {k: shipped["results"][k] for k in ("bpp", "psnr-rgb")}
    return start


def add_parser(sub) -> None:
    p = sub.add_parser("train-bench", help="train from scratch for a budget, then measure on Kodak",
                       description="Any option after -- goes to `train` (e.g. -- --lr 1e-3 --batch 16).")
    p.add_argument("--recipe", required=True, help="a name for this recipe (file name of the JSON)")
    p.add_argument("--config", default="tiny")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--images", default=DEFAULT_KODAK)
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N images only")
    p.add_argument("--out", default=None, help="run folder (default runs/bench_RECIPE)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--json", default=None, help="report path (default benchmarks/train/RECIPE.json)")
    p.add_argument("--beside", default="",
                   help="what else ran on the machine (steps per minute depend on it)")
    p.add_argument("--evaluate-only", action="store_true",
                   help="measure the run folder's finished model instead of training one: a run "
                        "trained elsewhere (a lent GPU) with the same recipe; pass its train options "
                        "after -- so the report records them")
    p.add_argument("--trained-on", default="",
                   help="with --evaluate-only: the machine that trained it (its report's machine)")
    p.add_argument("train_args", nargs=argparse.REMAINDER)


def main(args) -> None:
    if args.train_args and args.train_args[0] == "--":
        args.train_args = args.train_args[1:]
    report = run_train_bench(args)
    path = Path(args.json) if args.json else BENCH_DIR / f"{args.recipe}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"{report['recipe']}: {report['steps']} steps in {report['train_seconds'] / 60:.1f} min")
    for pt in report["points"]:
        print(f"  q{pt['quality']}: {pt['bpp']:.3f} bpp {pt['psnr']:.2f} dB "
              f"(JPEG at that rate {pt['jpeg_psnr_at_bpp']:.2f} dB, gap {pt['gap_to_jpeg_db']:+.2f} dB"
              + (f"; {pt['gain_over_start_db']:+.2f} dB over the starting checkpoint" if "gain_over_start_db" in pt else "")
              + ")")
    print(f"wrote {path}")
