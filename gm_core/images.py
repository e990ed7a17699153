"""Reading user images: every odd file becomes RGB uint8 with a notice, or a clear ImageError."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 4096 * 4096  # 16.8 MP: a 4K frame fits, a decompression bomb does not
MAX_FILE_BYTES = 64 * 1024 * 1024


class ImageError(ValueError):
    """An input that cannot be used as an image, with a message for the user."""


def load_image(src, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """Path, bytes or file object -> (H x W x 3 uint8 array, notices about conversions)."""
    notices: list[str] = []
    if isinstance(src, (str, Path)):
        p = Path(src)
        if not p.is_file():
            raise ImageError(f"file not found: {p}")
        if p.stat().st_size > MAX_FILE_BYTES:
            raise ImageError(f"file is larger than {MAX_FILE_BYTES >> 20} MB")
        data = p.read_bytes()
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    else:
        data = src.read()
    if not data:
        raise ImageError("the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"file is larger than {MAX_FILE_BYTES >> 20} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"image is {w}x{h} = {w * h / 1e6:.1f} MP; the limit is "
                                 f"{max_pixels / 1e6:.1f} MP")
            if getattr(im, "n_frames", 1) > 1:
                notices.append(f"animated image with {im.n_frames} frames: using the first frame")
                im.seek(0)
            im.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("not a readable image (or a decompression bomb)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"the image file is damaged or truncated ({e})") from None
    orientation = _orientation(im)
    if orientation not in (None, 1):
        try:
            im = ImageOps.exif_transpose(im)
            notices.append("rotated according to its EXIF orientation")
        except Exception:  # broken EXIF must not lose the picture
            notices.append("EXIF orientation unreadable: image used as stored")
    arr = _to_rgb8(im, notices)
    return arr, notices


def _orientation(im) -> int | None:
    try:
        return im.getexif().get(0x0112)
    except Exception:
        return None


def _to_rgb8(im: Image.Image, notices: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        notices.append(f"{'16-bit' if hi > 255 else mode} grayscale converted to 8-bit RGB")
        a = np.clip(np.round(a / hi * 255), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        notices.append("transparency flattened onto white")
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"), dtype=np.uint8).copy()
    if mode == "CMYK":
        notices.append("CMYK converted to RGB")
    elif mode in ("L", "1"):
        notices.append("grayscale converted to RGB")
    elif mode == "P":
        notices.append("palette image converted to RGB")
    elif mode not in ("RGB",):
        notices.append(f"{mode} converted to RGB")
    a = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ImageError(f"unsupported image mode {mode}")
    return a.copy()


def save_png(arr: np.ndarray, path) -> None:
    Image.fromarray(arr).save(path, format="PNG")


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
