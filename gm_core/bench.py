"""Latency benchmark: ours (cache on/off, G=1) against CompressAI's mbt2018 and hyperprior.

Times are medians of ``repeats`` runs after one warm-up, all in one process on one image, so
the printed ratios compare like with like. The JSON keeps one shape so runs can be compared
over time.
"""
from __future__ import annotations

import json
import statistics
import time
import warnings
from pathlib import Path

import torch

from .codec import Codec, _pad, image_to_tensor
from .images import load_image


def median_time(fn, repeats: int, sync) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run_bench(codec: Codec, image_path: str, repeats: int = 3, partition: str | None = None,
              peers: bool = True) -> dict:
    dev = codec.device
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    img, _ = load_image(image_path)
    part = codec.partition(partition)
    enc, dec, ent = {}, {}, {}
    stages = {}
    data = None
    for key, spec, cache in (("ours_cache", part, True), ("ours_nocache", part, False),
                             ("ours_g1", "g1", True)):
        t_enc, (data, etrace) = median_time(lambda: codec.compress(img, spec), repeats, sync)
        t_dec, (_, dtrace) = median_time(lambda: codec.decompress(data, use_cache=cache), repeats, sync)
        enc[key], dec[key] = t_enc, t_dec
        stages[key] = {"encode": etrace.timings, "decode": dtrace.timings,
                       "groups": etrace.partition.num_groups, "bytes": len(data)}
        if key != "ours_g1":
            ent["cache" if cache else "nocache"] = dtrace.timings["entropy_model"]
    if peers:
        from compressai.zoo import bmshj2018_hyperprior, mbt2018
        x = _pad(image_to_tensor(img, dev))
        for key, ctor in (("mbt2018", mbt2018), ("hyperprior", bmshj2018_hyperprior)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = ctor(quality=3, pretrained=False).eval().to(dev)
                net.update(force=True)
            with torch.inference_mode():
                t_enc, out = median_time(lambda: net.compress(x), repeats, sync)
                t_dec, _ = median_time(lambda: net.decompress(out["strings"], out["shape"]),
                                        repeats, sync)
            enc[key], dec[key] = t_enc, t_dec
    res = {"image": str(image_path), "device": str(dev), "threads": torch.get_num_threads(),
           "checkpoint": codec.meta.get("name", codec.cfg.name), "model_id": codec.model_id,
           "partition": part.to_spec(), "repeats": repeats,
           "encode_s": enc, "decode_s": dec, "entropy_decode_s": ent, "stages": stages}
    r = {"cache_speedup_entropy": ent["nocache"] / ent["cache"],
         "cache_speedup_decode": dec["ours_nocache"] / dec["ours_cache"],
         "decode_vs_g1": dec["ours_cache"] / dec["ours_g1"],
         "encode_vs_decode": enc["ours_cache"] / dec["ours_cache"]}
    if peers:
        r["decode_vs_mbt2018"] = dec["ours_cache"] / dec["mbt2018"]
        r["decode_vs_hyperprior"] = dec["ours_cache"] / dec["hyperprior"]
    res["ratios"] = r
    return res


def format_bench(res: dict) -> str:
    lines = [f"{res['image']} on {res['device']} x{res['threads']} threads, partition {res['partition']}"]
    lines.append(f"{'':14s}{'encode s':>10s}{'decode s':>10s}")
    for k in res["decode_s"]:
        lines.append(f"{k:14s}{res['encode_s'][k]:10.3f}{res['decode_s'][k]:10.3f}")
    e = res["entropy_decode_s"]
    lines.append(f"entropy model in decode: cache {e['cache']:.3f}s, no cache {e['nocache']:.3f}s")
    for k, v in res["ratios"].items():
        lines.append(f"{k:24s} {v:.3f}")
    return "\n".join(lines)


def bench_main(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.random_weights:
        from .checkpoint import random_model
        m, mid = random_model(args.config)
        codec = Codec(m.to(args.device), mid, {"name": f"{args.config} (random weights)"})
    else:
        codec = Codec.load(args.checkpoint, args.device)
    res = run_bench(codec, args.image, args.repeats, args.partition, peers=not args.no_peers)
    print(format_bench(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
