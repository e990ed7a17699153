"""JPEG, WebP and AVIF through Pillow: live baselines at a quality or at a matched bpp."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

CODECS = {"JPEG": "JPEG", "WebP": "WEBP", "AVIF": "AVIF"}
QUALITIES = {"JPEG": [5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90],
             "WebP": [2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90],
             "AVIF": [5, 10, 20, 30, 40, 50, 60, 70, 80, 90]}


def encode(img: np.ndarray, codec: str, quality: int) -> tuple[bytes, np.ndarray]:
    """-> (the file's bytes, its decoded pixels)."""
    buf = io.BytesIO()
    kw = {"quality": int(quality)}
    if codec == "JPEG":
        kw["subsampling"] = "4:2:0"
    if codec == "AVIF":
        kw["speed"] = 8
    Image.fromarray(img).save(buf, format=CODECS[codec], **kw)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        dec = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    return data, dec


def at_bpp(img: np.ndarray, codec: str, target_bpp: float) -> dict:
    """The quality whose rate lands closest to ``target_bpp`` (bisection over 1..100)."""
    pixels = img.shape[0] * img.shape[1]
    lo, hi, best = 1, 100, None
    while lo <= hi:
        q = (lo + hi) // 2
        data, dec = encode(img, codec, q)
        bpp = len(data) * 8 / pixels
        if best is None or abs(bpp - target_bpp) < abs(best["bpp"] - target_bpp):
            best = {"codec": codec, "quality": q, "bpp": bpp, "bytes": data, "image": dec}
        if bpp > target_bpp:
            hi = q - 1
        else:
            lo = q + 1
    return best


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    import torch
    from pytorch_msssim import ms_ssim as _ms

    def t(x):
        return torch.from_numpy(x).permute(2, 0, 1)[None].double()
    if min(a.shape[:2]) < 161:  # five scales of an 11-tap window need 160+ pixels
        return float("nan")
    return float(_ms(t(a), t(b), data_range=255.0))
