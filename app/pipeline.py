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
    """Everything the result views show, from one press of Compress.

    The work comes in two phases so the page can show most views early: ``run_core`` (compress,
    decode, PSNR/MS-SSIM) and then ``finish`` (the classical codecs and the second decode with
    the other cache setting). ``classical`` is None and ``dec_other`` is None while pending.
    """
    image: np.ndarray
    data: bytes  # the .gmx file
    enc: object  # encoder Trace (with attention when the image is small enough)
    dec: object  # decoder Trace of the primary decode (the user's cache setting)
    rec: np.ndarray  # the decoded image
    psnr: float
    ms_ssim: float
    want_compare: bool = True
    want_classical: bool = True
    dec_other: object | None = None  # the same bytes decoded with the other cache setting
    rec_other_equal: bool | None = None  # cache on and off decode to the same pixels
    classical: list[dict] | None = None
    wall: dict = field(default_factory=dict)  # seconds of each pipeline stage, as measured here
    key: tuple = ()
    notices: list[str] = field(default_factory=list)

    @property
    def dec_on(self):
        return self.dec if self.dec.use_cache else self.dec_other

    @property
    def dec_off(self):
        return self.dec_other if self.dec.use_cache else self.dec

    @property
    def classical_pending(self) -> bool:
        return self.want_classical and self.classical is None

    @property
    def compare_pending(self) -> bool:
        return self.want_compare and self.dec_other is None

    @property
    def pending(self) -> bool:
        return self.classical_pending or self.compare_pending


def run_core(codec: Codec, img: np.ndarray, partition: GroupPartition, quality: float,
             use_cache: bool = True, compare_cache: bool = True, with_classical: bool = True,
             progress=None) -> Result:
    """Compress -> real .gmx bytes -> decode -> PSNR / MS-SSIM. progress(message) before each stage."""
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

    say("measuring quality")
    t0 = time.perf_counter()
    psnr = classical.psnr(img, rec)
    mss = classical.ms_ssim(img, rec)
    wall["metrics"] = time.perf_counter() - t0
    return Result(image=img, data=data, enc=enc, dec=dec, rec=rec, psnr=psnr, ms_ssim=mss,
                  want_compare=compare_cache, want_classical=with_classical, wall=wall,
                  notices=notices)


def add_classical(res: Result, progress=None) -> Result:
    """JPEG, WebP and AVIF (Pillow) at the quality whose bpp lands closest to ours."""
    img = res.image
    H, W = img.shape[:2]
    bpp = len(res.data) * 8 / (H * W)
    baselines = []
    for name in CLASSICAL:
        if progress:
            progress(f"{name} at about {bpp:.3f} bpp")
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
    res.wall["classical"] = sum(b.get("seconds", 0) for b in baselines)
    res.classical = baselines
    return res


def add_other_decode(codec: Codec, res: Result, progress=None) -> Result:
    """Decode the same bytes with the other cache setting (latency comparison, same pixels)."""
    other = not res.dec.use_cache
    if progress:
        progress(f"decoding again with the cache {'on' if other else 'off'} to compare latency")
    t0 = time.perf_counter()
    rec2, dec_other = codec.decompress(res.data, use_cache=other)
    res.wall["decode_other"] = time.perf_counter() - t0
    res.rec_other_equal = bool(np.array_equal(res.rec, rec2))
    res.dec_other = dec_other
    return res


def finish(codec: Codec, res: Result, progress=None) -> Result:
    """The second phase: whatever of the classical codecs and the second decode is pending."""
    if res.classical_pending:
        add_classical(res, progress)
    if res.compare_pending:
        add_other_decode(codec, res, progress)
    return res


def run(codec: Codec, img: np.ndarray, partition: GroupPartition, quality: float,
        use_cache: bool = True, compare_cache: bool = True, with_classical: bool = True,
        progress=None) -> Result:
    """Both phases: everything the Compress button computes."""
    res = run_core(codec, img, partition, quality, use_cache, compare_cache, with_classical, progress)
    return finish(codec, res, progress)


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
