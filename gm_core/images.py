"""Reading user images: every odd file becomes RGB uint8 with a notice, or a clear ImageError."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 4096 * 4096  # 16.8 MP: a 4K frame fits, a decompression bomb does not
MAX_SIDE = 16384  # the codec pads each side to a multiple of 64: bounds a 1 x N image's cost
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
            warnings.simplefilter("ignore", UserWarning)  # e.g. Pillow's "Corrupt EXIF data"
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"image is {w}x{h} = {w * h:,} pixels; the limit is "
                                 f"{max_pixels:,} ({max_pixels / 1e6:.1f} MP)")
            if max(w, h) > MAX_SIDE:
                raise ImageError(f"image is {w}x{h}; the limit is {MAX_SIDE} pixels per side")
            if getattr(im, "n_frames", 1) > 1:
                notices.append(f"animated image with {im.n_frames} frames: using the first frame")
                im.seek(0)
            if _is_16bit_colour(im):
                notices.append("16-bit colour reduced to 8 bits per channel")
            im.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"image dimensions exceed the limit of {max_pixels / 1e6:.1f} MP "
                         "(refused as a possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageError("not a readable image: the file's format is not recognised") from None
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


def _is_16bit_colour(im) -> bool:
    """Pillow opens 16-bit RGB(A)/LA PNGs in 8-bit modes; their raw mode still says 16."""
    try:
        return im.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N") and any(
            ";16" in str(t.args if not isinstance(t.args, tuple) else t.args[0]) for t in im.tile)
    except Exception:
        return False


def _orientation(im) -> int | None:
    try:
        with warnings.catch_warnings():  # Pillow warns about corrupt EXIF; we ignore it instead
            warnings.simplefilter("ignore")
            return im.getexif().get(0x0112)
    except Exception:
        return None


def _to_rgb8(im: Image.Image, notices: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.nan_to_num(np.asarray(im).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, top = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if mode.startswith("I;16") or (mode == "I" and lo >= 0 and 255 < top <= 65535):
            hi, what = 65535.0, "16-bit"
        elif mode == "I" and lo >= 0 and top <= 255:
            hi, what = 255.0, "32-bit integer"
        elif mode == "F" and lo >= 0 and top <= 1:
            hi, what = 1.0, "floating-point"
        else:  # other ranges: stretched to 0..255
            a, hi, what = a - lo, max(top - lo, 1e-12), f"{mode} ({lo:g}..{top:g})"
        notices.append(f"{what} grayscale converted to 8-bit RGB")
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
