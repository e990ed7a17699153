"""Evaluation on an image folder (CompressAI's JSON result format) and RD curves with BD-rates."""
from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

from . import classical
from .data import list_images
from .images import load_image

REFERENCE_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "reference_rd" / "kodak"
REFERENCE_CURVES = {  # file -> label shown on the plot
    "vtm.json": "VTM (VVC)", "bpg_444_x265_ycbcr.json": "BPG (HEVC)", "av1.json": "AV1",
    "jpeg.json": "JPEG (published)", "webp.json": "WebP (published)",
    "compressai-mbt2018_mse_cpu.json": "mbt2018 (CompressAI)",
    "compressai-bmshj2018-hyperprior_mse_cpu.json": "bmshj2018 hyperprior (CompressAI)",
    "paper-elic2022_mse.json": "ELIC (paper)", "paper-tcm-large_mse.json": "TCM-large (paper)",
}


def evaluate(codec, images: list[Path], qualities=None, partition=None, use_cache=True,
             progress=True) -> dict:
    from tqdm import tqdm
    qualities = list(range(codec.model.num_rates)) if qualities is None else list(qualities)
    rows = []
    it = [(q, p) for q in qualities for p in images]
    for q, path in tqdm(it, disable=not progress, desc="eval"):
        img, _ = load_image(path)
        t0 = time.perf_counter()
        data, _ = codec.compress(img, partition, q)
        t1 = time.perf_counter()
        rec, _ = codec.decompress(data, use_cache=use_cache)
        t2 = time.perf_counter()
        rows.append({"image": Path(path).name, "quality": q, "bpp": len(data) * 8 / (img.shape[0] * img.shape[1]),
                     "psnr-rgb": classical.psnr(img, rec), "ms-ssim": classical.ms_ssim(img, rec),
                     "encoding_time": t1 - t0, "decoding_time": t2 - t1, "bytes": len(data)})
    results = {k: [] for k in ("bpp", "psnr-rgb", "ms-ssim", "encoding_time", "decoding_time")}
    for q in qualities:
        sel = [r for r in rows if r["quality"] == q]
        for k in results:
            results[k].append(float(np.mean([r[k] for r in sel])))
    part = codec.partition(partition)
    return {"name": f"GroupedMixer-{codec.cfg.name}", "model_id": codec.model_id,
            "description": f"GroupedMixer {codec.cfg.name}, partition {part.to_spec()}, "
                           f"{codec.meta.get('steps', '?')} training steps, real bitstreams",
            "partition": part.to_spec(), "qualities": qualities, "images": len(images),
            "results": results, "per_image": rows}


def classical_results(images: list[Path], codecs=("JPEG", "WebP", "AVIF"), progress=True) -> dict:
    from tqdm import tqdm
    out = {}
    loaded = [load_image(p)[0] for p in images]
    for name in codecs:
        res = {"bpp": [], "psnr-rgb": [], "ms-ssim": [], "quality": []}
        for q in tqdm(classical.QUALITIES[name], disable=not progress, desc=name):
            b, p, m = [], [], []
            for img in loaded:
                data, dec = classical.encode(img, name, q)
                b.append(len(data) * 8 / (img.shape[0] * img.shape[1]))
                p.append(classical.psnr(img, dec))
                m.append(classical.ms_ssim(img, dec))
            res["bpp"].append(float(np.mean(b)))
            res["psnr-rgb"].append(float(np.mean(p)))
            res["ms-ssim"].append(float(np.mean(m)))
            res["quality"].append(q)
        out[name] = {"name": f"{name} (Pillow, live)", "results": res}
    return out


def load_reference(ref_dir: Path = REFERENCE_DIR) -> dict:
    curves = {}
    for fname, label in REFERENCE_CURVES.items():
        p = Path(ref_dir) / fname
        if p.is_file():
            r = json.loads(p.read_text())["results"]
            curves[label] = {"bpp": r["bpp"], "psnr-rgb": r.get("psnr-rgb", r.get("psnr"))}
    return curves


def _psnr_curve(res: dict):
    r = res["results"] if "results" in res else res
    return list(r["bpp"]), list(r.get("psnr-rgb", r.get("psnr")))


def psnr_at(bpp: float, curve: dict) -> float:
    """A codec's PSNR at ``bpp``, interpolated in log-rate along its points (a CompressAI
    result): Pillow JPEG's quality sweep, or another model's rate points."""
    b, p = (np.asarray(v, dtype=float) for v in _psnr_curve(curve))
    order = np.argsort(b)
    return float(np.interp(np.log(bpp), np.log(b[order]), p[order]))


def bd_rate(anchor, test) -> float | None:
    """BD-rate (%) of test against anchor on PSNR, with the bjontegaard package (pchip)."""
    import bjontegaard as bd
    ra, da = _psnr_curve(anchor)
    rt, dt = _psnr_curve(test)
    # Keep the anchor's points inside the test's PSNR range plus one point either side.
    try:
        with warnings.catch_warnings():  # curves that do not overlap warn and give NaN: None here
            warnings.simplefilter("ignore", UserWarning)
            v = float(bd.bd_rate(ra, da, rt, dt, method="pchip", require_matching_points=False,
                                 min_overlap=0.0))
    except Exception:
        return None
    return v if math.isfinite(v) else None


def rd_report(results: list[dict], classical_res: dict, reference: dict) -> dict:
    ours = results[0]
    table = {}
    for name, c in classical_res.items():
        table[f"vs {name} (Pillow)"] = bd_rate(c, ours)
    for label in ("VTM (VVC)", "BPG (HEVC)", "mbt2018 (CompressAI)"):
        if label in reference:
            table[f"vs {label}"] = bd_rate(reference[label], ours)
    for other in results[1:]:
        table[f"vs {other['description']}"] = bd_rate(other, ours)
    return table


def rd_figure(results: list[dict], classical_res: dict, reference: dict, title: str = "Kodak"):
    import plotly.graph_objects as go
    fig = go.Figure()
    for label, r in reference.items():
        fig.add_trace(go.Scatter(x=r["bpp"], y=r["psnr-rgb"], name=label, mode="lines",
                                 line={"dash": "dot", "width": 1.5}))
    for name, c in classical_res.items():
        b, p = _psnr_curve(c)
        fig.add_trace(go.Scatter(x=b, y=p, name=c["name"], mode="lines+markers",
                                 line={"dash": "dash"}))
    for res in results:
        b, p = _psnr_curve(res)
        fig.add_trace(go.Scatter(x=b, y=p, name=res.get("label", res["description"]),
                                 mode="lines+markers", line={"width": 3}))
    fig.update_layout(title=title, xaxis_title="bits per pixel", yaxis_title="PSNR (RGB, dB)",
                      xaxis={"range": [0, 1.6]}, template="plotly_white", height=560)
    return fig


def add_parsers(sub) -> None:
    e = sub.add_parser("eval", help="real-bitstream RD results on an image folder")
    e.add_argument("--images", default="../shared/data/kodak")
    e.add_argument("--out", required=True)
    e.add_argument("--checkpoint", default=None)
    e.add_argument("--partition", default=None)
    e.add_argument("--qualities", default=None, help="comma list, default: every rate point")
    e.add_argument("--limit", type=int, default=None, help="first N images only")
    e.add_argument("--no-cache", action="store_true")
    e.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    e.add_argument("--threads", type=int, default=0)
    r = sub.add_parser("rd", help="RD curves and BD-rates against published and live codecs")
    r.add_argument("--results", nargs="+", required=True, help="eval JSON files (first = ours)")
    r.add_argument("--out", required=True, help="HTML plot")
    r.add_argument("--images", default="../shared/data/kodak", help="for the live Pillow codecs")
    r.add_argument("--classical", default=None,
                   help="cached classical results JSON (written here if missing)")
    r.add_argument("--reference", default=str(REFERENCE_DIR))
    r.add_argument("--bd-out", default=None, help="write the BD-rate table as JSON")
    r.add_argument("--limit", type=int, default=None)


def run(args) -> None:
    if args.cmd == "eval":
        from .codec import Codec
        codec = Codec.load(args.checkpoint, args.device)
        imgs = list_images(args.images)[:args.limit]
        qs = [float(q) for q in args.qualities.split(",")] if args.qualities else None
        res = evaluate(codec, imgs, qs, args.partition, use_cache=not args.no_cache)
        Path(args.out).write_text(json.dumps(res, indent=1))
        for q, b, p in zip(res["qualities"], res["results"]["bpp"], res["results"]["psnr-rgb"]):
            print(f"quality {q}: {b:.4f} bpp  {p:.2f} dB")
    elif args.cmd == "rd":
        results = [json.loads(Path(p).read_text()) for p in args.results]
        cpath = Path(args.classical) if args.classical else None
        if cpath and cpath.is_file():
            cres = json.loads(cpath.read_text())
        else:
            cres = classical_results(list_images(args.images)[:args.limit])
            if cpath:
                cpath.write_text(json.dumps(cres, indent=1))
        ref = load_reference(Path(args.reference))
        table = rd_report(results, cres, ref)
        rd_figure(results, cres, ref).write_html(args.out, include_plotlyjs=True)
        for k, v in table.items():
            print(f"BD-rate {k}: {'n/a' if v is None else f'{v:+.1f}%'}")
        if args.bd_out:
            Path(args.bd_out).write_text(json.dumps(table, indent=1))


__all__ = ["evaluate", "classical_results", "load_reference", "bd_rate", "rd_figure"]
