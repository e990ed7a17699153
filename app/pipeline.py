"""What the Compress button runs, without Streamlit: the app, its tests and the benchmark share it.

Everything comes from gm_core: the image is compressed to real .gmx bytes, those bytes are
decoded (with the context cache, and a second time without it for the latency comparison), and
the classical codecs are run at about the same bpp. Nothing here re-implements codec logic.
"""
from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gm_core import Codec, GroupPartition, classical
from gm_core.checkpoint import DEFAULT_CHECKPOINT
from gm_core.images import MAX_FILE_BYTES, MAX_PIXELS, load_image

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
SAMPLES = ASSETS / "samples"
RESULTS = ASSETS / "results"

# Limits of this app (the library's own limits are MAX_PIXELS and MAX_FILE_BYTES).
APP_MAX_PIXELS = 1024 * 1024  # larger photos are downscaled to this many pixels, with a notice
ATTN_MAX_TOKENS = 8192  # attention maps are traced only when the latent is at most this big
ABLATION_MAX_PIXELS = 512 * 512  # the ablation page runs on a downscaled copy above this
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]
CLASSICAL = ("JPEG", "WebP", "AVIF")


def checkpoint_choices() -> list[Path]:
    """The checkpoint named by GMX_CHECKPOINT (if any) first, then the *.safetensors in assets/."""
    out = []
    env = os.environ.get("GMX_CHECKPOINT")
    if env:
        out.append(Path(env))
    default = Path(DEFAULT_CHECKPOINT)
    if default.is_file() and default not in out:
        out.append(default)
    for p in sorted(ASSETS.glob("*.safetensors")):
        if p not in out:
            out.append(p)
    return out


def sample_images() -> list[Path]:
    return sorted(p for p in SAMPLES.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def prepare_image(src, max_pixels: int = APP_MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """load_image plus the app's size limit: larger photos are downscaled (with a notice)."""
    img, notices = load_image(src)
    img, more = downscale(img, max_pixels)
    return img, notices + more


def downscale(img: np.ndarray, max_pixels: int) -> tuple[np.ndarray, list[str]]:
    H, W = img.shape[:2]
    if H * W <= max_pixels:
        return img, []
    from PIL import Image
    f = (max_pixels / (H * W)) ** 0.5
    nh, nw = max(1, int(H * f)), max(1, int(W * f))
    out = np.asarray(Image.fromarray(img).resize((nw, nh), Image.LANCZOS))
    return out, [f"downscaled from {W}x{H} to {nw}x{nh}: this page works on at most "
                 f"{max_pixels / 1e6:.2f} megapixels so a 2-core CPU answers in seconds"]


def image_digest(img: np.ndarray) -> str:
    return hashlib.sha1(img.tobytes() + str(img.shape).encode()).hexdigest()[:12]


@dataclass
class Result:
    """Everything the result views show, from one press of Compress."""
    image: np.ndarray
    data: bytes  # the .gmx file
    enc: object  # encoder Trace (with attention when the image is small enough)
    dec: object  # decoder Trace of the primary decode (the user's cache setting)
    rec: np.ndarray  # the decoded image
    dec_other: object | None  # the same bytes decoded with the other cache setting
    rec_other_equal: bool | None  # cache on and off decode to the same pixels
    psnr: float
    ms_ssim: float
    classical: list[dict] = field(default_factory=list)
    wall: dict = field(default_factory=dict)  # seconds of each pipeline stage, as measured here
    key: tuple = ()
    notices: list[str] = field(default_factory=list)

    @property
    def dec_on(self):
        return self.dec if self.dec.use_cache else self.dec_other

    @property
    def dec_off(self):
        return self.dec_other if self.dec.use_cache else self.dec


def run(codec: Codec, img: np.ndarray, partition: GroupPartition, quality: float,
        use_cache: bool = True, compare_cache: bool = True, with_classical: bool = True,
        progress=None) -> Result:
    """Compress -> real .gmx bytes -> decode (twice when compare_cache) -> metrics and baselines.

    progress(message) is called before each stage (the app shows it in a status box).
    """
    say = progress or (lambda msg: None)
    wall = {}
    H, W = img.shape[:2]
    h, w = -(-H // 64) * 4, -(-W // 64) * 4
    want_attn = h * w <= ATTN_MAX_TOKENS
    notices = []
    if not want_attn:
        notices.append(f"the latent has {h * w} positions (> {ATTN_MAX_TOKENS}): attention maps "
                       "are not traced for an image this large")

    say(f"compressing {W}x{H} with {partition.num_groups} groups")
    t0 = time.perf_counter()
    data, enc = codec.compress(img, partition, quality, want_attn=want_attn)
    wall["compress"] = time.perf_counter() - t0

    say(f"decoding the {len(data):,} bytes of the .gmx stream (cache {'on' if use_cache else 'off'})")
    t0 = time.perf_counter()
    rec, dec = codec.decompress(data, use_cache=use_cache)
    wall["decode"] = time.perf_counter() - t0

    dec_other, equal = None, None
    if compare_cache:
        say(f"decoding again with the cache {'off' if use_cache else 'on'} to compare latency")
        t0 = time.perf_counter()
        rec2, dec_other = codec.decompress(data, use_cache=not use_cache)
        wall["decode_other"] = time.perf_counter() - t0
        equal = bool(np.array_equal(rec, rec2))

    say("measuring quality")
    t0 = time.perf_counter()
    psnr = classical.psnr(img, rec)
    mss = classical.ms_ssim(img, rec)
    wall["metrics"] = time.perf_counter() - t0

    baselines = []
    if with_classical:
        bpp = len(data) * 8 / (H * W)
        for name in CLASSICAL:
            say(f"{name} at about {bpp:.3f} bpp")
            t0 = time.perf_counter()
            try:
                r = classical.at_bpp(img, name, bpp)
            except (OSError, KeyError, ValueError) as e:  # e.g. a Pillow built without AVIF
                baselines.append({"codec": name, "error": str(e)})
                continue
            r["psnr"] = classical.psnr(img, r["image"])
            r["ms_ssim"] = classical.ms_ssim(img, r["image"])
            r["seconds"] = time.perf_counter() - t0
            baselines.append(r)
        wall["classical"] = sum(b.get("seconds", 0) for b in baselines)
    return Result(image=img, data=data, enc=enc, dec=dec, rec=rec, dec_other=dec_other,
                  rec_other_equal=equal, psnr=psnr, ms_ssim=mss, classical=baselines, wall=wall,
                  notices=notices)


def decode_file(codec: Codec, data: bytes, use_cache: bool = True):
    """A .gmx file from the user -> (header, image, trace); ContainerError on anything wrong."""
    header = codec.read_header(data)
    img, trace = codec.decompress(data, use_cache=use_cache)
    return header, img, trace


def run_ablation(codec: Codec, img: np.ndarray, partitions: list[GroupPartition], quality: float,
                 progress=None) -> list[dict]:
    """Each partition: compress, decode with the cache on and off; one row per partition."""
    rows = []
    for k, part in enumerate(partitions):
        if progress:
            progress(k, part)
        t0 = time.perf_counter()
        data, enc = codec.compress(img, part, quality)
        t_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec, on = codec.decompress(data, use_cache=True)
        t_on = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec2, off = codec.decompress(data, use_cache=False)
        t_off = time.perf_counter() - t0
        rows.append({"partition": part.to_spec(), "groups": part.num_groups,
                     "bpp": len(data) * 8 / (img.shape[0] * img.shape[1]), "bytes": len(data),
                     "psnr": classical.psnr(img, rec), "encode_s": t_enc,
                     "decode_cache_on_s": t_on, "decode_cache_off_s": t_off,
                     "entropy_on_s": on.timings["entropy_model"],
                     "entropy_off_s": off.timings["entropy_model"],
                     "speedup": t_off / max(t_on, 1e-9), "same_pixels": bool(np.array_equal(rec, rec2))})
    return rows


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["run", "Result", "decode_file", "run_ablation", "prepare_image", "checkpoint_choices",
           "sample_images", "APP_MAX_PIXELS", "MAX_PIXELS", "MAX_FILE_BYTES", "UPLOAD_TYPES"]
