"""Pack what a training run on the lent GPU machine needs into .gpu/ (ignored by git).

    .venv/bin/python scripts/gpu_pack.py [--max-mb 34]

The device tool sends the working tree (tracked files, untracked files git does not ignore, and
the paths named in `carry`), at most 64 MiB, and ../shared does not travel. So this writes:

* .gpu/data/: the training images re-encoded as WebP q90 (about 3x smaller than the PNG/JPEG
  originals; at the rates trained here, q90's error is far below the codec's), leaving out every
  k-th BSDS500 image until the folder fits --max-mb;
* .gpu/kodak/: four Kodak images (validation crops, cross-device check), .gpu/lat/: kodim23;
* .gpu/*.whl: CompressAI and pytorch-msssim for the machine's Python 3.12 (it has neither).

The 24 MB optimizer state in train_state/ is tracked and would not leave room: the README's
"Training on a lent GPU" says how to leave it behind for one call, and what to run there.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
WHEELS = ["compressai==1.2.8", "pytorch-msssim==1.0.0"]
PLATFORMS = ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-mb", type=float, default=34.0)
    ap.add_argument("--quality", type=int, default=90)
    args = ap.parse_args()
    out = ROOT / ".gpu"
    exclude = ROOT / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    ignored = exclude.read_text().splitlines() if exclude.is_file() else []
    if "/.gpu/" not in ignored:
        with exclude.open("a") as f:
            f.write("/.gpu/\n")
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for p in sorted((SHARED / "train").iterdir()):
        if p.suffix.lower() not in {".png", ".jpg", ".jpeg"}:
            continue
        o = data / (p.stem + ".webp")
        if not o.is_file():
            with Image.open(p) as im:
                im.convert("RGB").save(o, "WEBP", quality=args.quality, method=4)
        sizes[o] = o.stat().st_size
    bsds = [p for p in sorted(sizes) if p.name.startswith("bsds500")]
    total = sum(sizes.values())
    for k in range(10, 1, -1):  # drop every k-th BSDS500 image, k falling, until it fits
        if total <= args.max_mb * 1e6:
            break
        for p in bsds[k - 1::k]:
            if p.is_file():
                total -= sizes[p]
                p.unlink()
    print(f".gpu/data: {len(list(data.iterdir()))} images, {total / 1e6:.1f} MB")
    for sub, names in (("kodak", ["kodim04", "kodim08", "kodim19", "kodim23"]), ("lat", ["kodim23"])):
        (out / sub).mkdir(exist_ok=True)
        for n in names:
            shutil.copyfile(SHARED / "kodak" / f"{n}.png", out / sub / f"{n}.png")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(out), *WHEELS]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f".gpu: {sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.1f} MB in all")


if __name__ == "__main__":
    main()
