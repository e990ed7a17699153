"""Determinism sweep: every stream decodes to the same latent and the same image on every path.

For each Kodak image and each rate point of a checkpoint, encode once (1 CPU thread), then decode
with the context cache on and off, with 1 and 2 threads. A stream passes when every decode
returns exactly the encoder's y_hat and byte-identical images. With CUDA available, streams are
also cross-decoded CPU -> CUDA and CUDA -> CPU (encoded on the GPU, decoded on both); the latent
must match exactly, and the images are compared too (see --strict-cross-device).

    .venv/bin/python scripts/determinism.py                      # all 24 images, all rate points
    .venv/bin/python scripts/determinism.py --limit 2 --qualities 0,5
Prints JSON with the counts; exits 1 on any mismatch or decoding error.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def default_kodak() -> Path | None:
    for p in (ROOT.parent / "shared" / "data" / "kodak", ROOT / "shared" / "data" / "kodak"):
        if p.is_dir():
            return p
    return None


class Sweep:
    def __init__(self, codec, partition, strict_cross_device: bool):
        import torch
        self.torch = torch
        self.codec = codec
        self.partition = partition
        self.strict = strict_cross_device
        self.counts = {"streams": 0, "decodes": 0, "mismatches": 0, "latent_mismatches": 0,
                       "image_mismatches": 0, "errors": 0,
                       "cross_device_streams": 0, "cross_device_decodes": 0,
                       "cross_device_image_differences": 0}
        self.failures: list[dict] = []
        self.max_cross_device_pixel_diff = 0
        self.cuda = None
        if torch.cuda.is_available():
            import copy
            from gm_core.codec import Codec
            self.cuda = Codec(copy.deepcopy(codec.model).to("cuda"), codec.model_id, codec.meta)

    def fail(self, **what):
        self.failures.append(what)

    def decode(self, codec, data, cache: bool, threads: int):
        from gm_core.container import ContainerError
        self.torch.set_num_threads(threads)
        try:
            img, tr = codec.decompress(data, use_cache=cache)
            return img, tr.y_hat
        except ContainerError as e:  # the decoder's consistency check caught a divergence
            return None, str(e)

    def check_stream(self, name: str, q: float, codec_enc, decoders):
        """Encode with ``codec_enc`` on 1 thread; decode on every (label, codec, cache, threads)."""
        import numpy as np
        self.torch.set_num_threads(1)
        data, tr = codec_enc.compress(self.img, self.partition, q)
        ref_img, ok = None, True
        for label, codec, cache, threads in decoders:
            img, y = self.decode(codec, data, cache, threads)
            cross = codec is not codec_enc
            self.counts["cross_device_decodes" if cross else "decodes"] += 1
            where = {"image": name, "quality": q, "encoder": str(codec_enc.device), "decoder": label}
            if img is None:
                self.counts["errors"] += 1
                self.fail(**where, kind="error", error=y)
                ok = False
                continue
            if not np.array_equal(y, tr.y_hat):
                n = int((y != tr.y_hat).sum())
                self.counts["latent_mismatches"] += 1
                self.fail(**where, kind="latent", error=f"y_hat differs from the encoder's in {n} elements")
                ok = False
                continue
            if ref_img is None:
                ref_img = img
            elif not np.array_equal(img, ref_img):
                diff = int(np.abs(img.astype(int) - ref_img.astype(int)).max())
                if cross:
                    self.counts["cross_device_image_differences"] += 1
                    self.max_cross_device_pixel_diff = max(self.max_cross_device_pixel_diff, diff)
                if not cross or self.strict:
                    n = int((img != ref_img).any(-1).sum())
                    self.counts["image_mismatches"] += 1
                    self.fail(**where, kind="image",
                              error=f"image differs from the first decode in {n} pixels (max {diff} levels)")
                    ok = False
        if any(c is not codec_enc for _, c, _, _ in decoders):
            self.counts["cross_device_streams"] += 1
        else:
            self.counts["streams"] += 1
        if not ok:
            self.counts["mismatches"] += 1
        return len(data)

    def run_image(self, name: str, img, qualities):
        self.img = img
        cpu = self.codec
        cpu_decoders = [(f"cpu cache={c} threads={t}", cpu, c, t) for t in (1, 2) for c in (True, False)]
        for q in qualities:
            decoders = list(cpu_decoders)
            if self.cuda is not None:  # CPU -> CUDA
                decoders += [(f"cuda cache={c}", self.cuda, c, 1) for c in (True, False)]
            self.check_stream(name, q, cpu, decoders)
            if self.cuda is not None:  # CUDA -> CPU (and CUDA itself)
                self.check_stream(name, q, self.cuda, [("cuda cache=True", self.cuda, True, 1)]
                                  + cpu_decoders[:2])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    p.add_argument("--random-weights", action="store_true",
                   help="an untrained model with boosted gains instead of a checkpoint (smoke test)")
    p.add_argument("--kodak", default=None, help="folder of PNGs (default: shared/data/kodak)")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--qualities", default=None, help="comma-separated rate points (default: all)")
    p.add_argument("--partition", default=None, help="partition spec (default: the model's)")
    p.add_argument("--strict-cross-device", action="store_true",
                   help="also fail when CPU and CUDA synthesise different pixels from the same latent")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)

    import torch
    from gm_core.codec import Codec
    from gm_core.images import load_image
    if args.random_weights:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import make_scaled_codec
        codec = make_scaled_codec()
    else:
        codec = Codec.load(args.checkpoint)
    folder = Path(args.kodak) if args.kodak else default_kodak()
    if folder is None or not folder.is_dir():
        print("error: no Kodak folder found; pass --kodak", file=sys.stderr)
        return 2
    paths = sorted(folder.glob("*.png"))[:args.limit]
    if not paths:
        print(f"error: no PNG images in {folder}", file=sys.stderr)
        return 2
    n_rates = codec.model.num_rates
    qualities = ([float(q) for q in args.qualities.split(",")] if args.qualities
                 else [float(q) for q in range(n_rates)])
    part = codec.partition(args.partition)
    sweep = Sweep(codec, part, args.strict_cross_device)
    t0 = time.perf_counter()
    prev_threads = torch.get_num_threads()
    try:
        for path in paths:
            img, _ = load_image(path)
            sweep.run_image(path.name, img, qualities)
            print(f"{path.name}: {sweep.counts['mismatches']} mismatching streams so far",
                  file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(prev_threads)
    out = {"checkpoint": "random (scaled)" if args.random_weights else str(args.checkpoint or "shipped"),
           "model_id": codec.model_id, "images": len(paths), "qualities": qualities,
           "partition": part.to_spec(), "cuda": sweep.cuda is not None,
           "decode_paths": ["cpu cache on/off x threads 1/2"]
           + (["cpu->cuda cache on/off", "cuda->cpu threads 1 cache on/off", "cuda->cuda"]
              if sweep.cuda is not None else []),
           **sweep.counts, "max_cross_device_pixel_diff": sweep.max_cross_device_pixel_diff,
           "failures": sweep.failures[:50], "seconds": round(time.perf_counter() - t0, 1)}
    out["ok"] = not sweep.failures
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
