"""CPU <-> CUDA: cross-decoding and GPU latency, on a machine with a GPU.

    python scripts/cross_device.py --images DIR --out cross_device.json [--checkpoint CKPT]

Every image is compressed on the CPU and on CUDA at each chosen rate point. Each stream is then
decoded on both devices, with the cache on and off. Recorded: whether the two encoders wrote the
same bytes (they need not: g_a's float32 sums differ between devices, and either stream is valid),
and whether every decode of a stream gives the same latent (y_hat) and the same pixels as the CPU
decode of that stream.

The GPU machine has no CompressAI: carry its cp312 wheel (see the device README).

Latency is measured on the first image: encode, and decode with the cache on and off, on each
device, plus decode at G=1. It is the median of --repeats runs after one warm-up, synchronised.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gm_core.bench import median_time  # noqa: E402
from gm_core.codec import Codec  # noqa: E402
from gm_core.data import list_images  # noqa: E402
from gm_core.images import load_image  # noqa: E402


def rgb(path) -> np.ndarray:
    return load_image(path)[0]


def latency(codecs, img, repeats):
    out = {}
    for name, c in codecs.items():
        sync = (lambda: torch.cuda.synchronize()) if c.device.type == "cuda" else (lambda: None)

        def timed(fn):
            return median_time(fn, repeats, sync)[0]

        data, _ = c.compress(img)
        g1, _ = c.compress(img, partition="kc=1,grid=1x1")
        out[name] = {
            "encode_s": timed(lambda: c.compress(img)),
            "decode_cache_s": timed(lambda: c.decompress(data, use_cache=True)),
            "decode_nocache_s": timed(lambda: c.decompress(data, use_cache=False)),
            "decode_g1_s": timed(lambda: c.decompress(g1)),
        }
        _, tr = c.decompress(data)
        out[name]["decode_stages_s"] = tr.timings
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--qualities", default="all", help="'all' or comma-separated rate points")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="cross_device.json")
    ap.add_argument("--gpu", default="cuda", help="the second device (cpu to dry-run the script)")
    ap.add_argument("--what", choices=("both", "cross", "latency"), default="both")
    args = ap.parse_args(argv)

    codecs = {"cpu": Codec.load(args.checkpoint, "cpu"),
              args.gpu + "_": Codec.load(args.checkpoint, args.gpu)}
    names = list(codecs)
    qs = (range(codecs["cpu"].model.num_rates) if args.qualities == "all"
          else [float(q) for q in args.qualities.split(",")])
    files = list_images(args.images)[:args.limit]
    report = {"checkpoint": codecs["cpu"].model_id, "torch": torch.__version__,
              "python": platform.python_version(),
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "rows": []}
    mismatches = decodes = 0
    for f in files if args.what != "latency" else []:
        img = rgb(f)
        for q in qs:
            streams = {n: c.compress(img, quality=float(q))[0] for n, c in codecs.items()}
            refs = {n: codecs["cpu"].decompress(st) for n, st in streams.items()}  # per stream
            row = {"image": f.name, "quality": float(q), "bytes": {n: len(s) for n, s in streams.items()},
                   "same_bytes": streams[names[0]] == streams[names[1]], "decodes": []}
            for enc in names:
                for dec in names:
                    ref, ref_tr = refs[enc]
                    for cache in (True, False):
                        try:
                            x, tr = codecs[dec].decompress(streams[enc], use_cache=cache)
                            same_lat = bool(np.array_equal(tr.y_hat, ref_tr.y_hat))
                            diff = int(np.abs(x.astype(int) - ref.astype(int)).max())
                            err = None
                        except Exception as e:  # a cross-device flip shows up as a refused stream
                            same_lat, diff, err = False, None, f"{type(e).__name__}: {e}"
                        ok = same_lat and diff == 0
                        decodes += 1
                        mismatches += not ok
                        row["decodes"].append({"encoder": enc, "decoder": dec, "cache": cache,
                                               "same_latent": same_lat, "max_pixel_diff": diff,
                                               "error": err, "ok": ok})
            report["rows"].append(row)
            Path(args.out).write_text(json.dumps(report, indent=1))  # partial results survive a kill
            bad = [d for d in row["decodes"] if not d["ok"]]
            for d in bad:
                print("   ", d, flush=True)
            print(f"{f.name} q{q}: same bytes {row['same_bytes']}, bad decodes {len(bad)}", flush=True)
    report.update(streams=len(report["rows"]) * 2, decodes=decodes, mismatches=mismatches)
    if args.what != "cross":
        report["latency_image"] = files[0].name
        report["latency"] = latency(codecs, rgb(files[0]), args.repeats)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
