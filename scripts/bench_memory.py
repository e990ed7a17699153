"""Peak memory of coding a 4K photo (3840 x 2160) on the CPU.

Each phase (encode, decode with the cache, optionally decode without it) runs in its own
process, so each peak resident set size (``ru_maxrss``; tracemalloc does not see torch's
allocations) is that phase's alone. The test image is a Kodak photo upscaled with Pillow's
Lanczos filter and centre-cropped to 16:9. Prints JSON; exits 1 if a phase exceeds --limit-gb.

    nice -n 10 .venv/bin/python scripts/bench_memory.py            # shipped checkpoint
    .venv/bin/python scripts/bench_memory.py --random-weights --size 1920x1080
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KODAK = next((p for p in (ROOT.parent / "shared" / "data" / "kodak", ROOT / "shared" / "data" / "kodak")
              if p.is_dir()), None)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def test_image(size: tuple[int, int], source: str | None):
    import numpy as np
    from PIL import Image
    W, H = size
    if source:
        im = Image.open(source).convert("RGB")
    elif KODAK:
        im = Image.open(KODAK / "kodim01.png").convert("RGB")
    else:  # no data: a smooth synthetic photo-like pattern with noise
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:512, 0:768]
        a = np.stack([128 + 100 * np.sin(xx / 40), 128 + 100 * np.cos(yy / 30), (xx + yy) % 256], -1)
        im = Image.fromarray(np.clip(a + rng.normal(0, 10, a.shape), 0, 255).astype(np.uint8))
    s = max(W / im.width, H / im.height)
    im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
    left, top = (im.width - W) // 2, (im.height - H) // 2
    return np.asarray(im.crop((left, top, left + W, top + H)), dtype=np.uint8).copy()


def load_codec(args):
    from gm_core.codec import Codec
    if args.random_weights:
        from gm_core.checkpoint import random_model
        model, mid = random_model(args.config)
        return Codec(model, mid)
    return Codec.load(args.checkpoint)


def phase(args) -> dict:
    """One phase in this process; returns its facts and the peak RSS."""
    import torch
    torch.set_num_threads(args.threads)
    codec = load_codec(args)
    base = peak_mb()
    t0 = time.perf_counter()
    if args.phase == "encode":
        W, H = args.size
        img = test_image((W, H), args.image)
        data, tr = codec.compress(img, args.partition, args.quality)
        Path(args.stream).write_bytes(data)
        np_y = tr.y_hat
        import numpy as np
        np.save(args.stream + ".y.npy", np_y)
        out = {"bytes": len(data), "bpp": round(tr.bpp, 4), "groups": tr.partition.num_groups,
               "partition": tr.partition.to_spec(), "latent": list(tr.latent_shape)}
    else:
        import numpy as np
        data = Path(args.stream).read_bytes()
        img, tr = codec.decompress(data, use_cache=args.phase == "decode")
        out = {"size": [img.shape[1], img.shape[0]],
               "y_hat_equal": bool(np.array_equal(tr.y_hat, np.load(args.stream + ".y.npy")))}
    out.update({"seconds": round(time.perf_counter() - t0, 2),
                "stages_s": {k: round(v, 2) for k, v in tr.timings.items()},
                "rss_after_model_load_mb": round(base), "peak_rss_mb": round(peak_mb())})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    p.add_argument("--random-weights", action="store_true", help="an untrained model instead")
    p.add_argument("--config", default="tiny", help="config of --random-weights")
    p.add_argument("--image", default=None, help="source photo (default: Kodak kodim01)")
    p.add_argument("--size", default="3840x2160", help="WxH after upscaling and cropping")
    p.add_argument("--partition", default=None)
    p.add_argument("--quality", type=float, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-cache", action="store_true", help="also decode without the context cache")
    p.add_argument("--limit-gb", type=float, default=6.0)
    p.add_argument("--phase", choices=("encode", "decode", "decode-nocache"), help=argparse.SUPPRESS)
    p.add_argument("--stream", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    W, H = (int(v) for v in args.size.lower().split("x"))
    args.size = (W, H)
    if args.phase:
        print(json.dumps(phase(args)))
        return 0
    phases = ["encode", "decode"] + (["decode-nocache"] if args.no_cache else [])
    result = {"image": {"width": W, "height": H, "megapixels": round(W * H / 1e6, 2)},
              "checkpoint": "random" if args.random_weights else str(args.checkpoint or "shipped"),
              "threads": args.threads, "limit_mb": round(args.limit_gb * 1024), "phases": {}}
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--no-cache"]
    with tempfile.TemporaryDirectory() as tmp:
        stream = str(Path(tmp) / "big.gmx")
        for ph in phases:
            r = subprocess.run([sys.executable, __file__, *passthrough, "--phase", ph, "--stream", stream],
                               capture_output=True, text=True)
            if r.returncode:
                result["phases"][ph] = {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
                break
            result["phases"][ph] = json.loads(r.stdout.strip().splitlines()[-1])
    peaks = [v.get("peak_rss_mb", float("inf")) for v in result["phases"].values()]
    result["peak_rss_mb"] = max(peaks)
    ok = (all("error" not in v for v in result["phases"].values()) and len(peaks) == len(phases)
          and result["peak_rss_mb"] <= result["limit_mb"]
          and all(v.get("y_hat_equal", True) for v in result["phases"].values()))
    result["ok"] = ok
    print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
