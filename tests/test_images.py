"""Odd input files: each is converted to RGB uint8 with a notice, or refused with ImageError; every
accepted one round-trips through the codec at its original size."""
from __future__ import annotations

import io
import resource
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from gm_core.images import MAX_PIXELS, MAX_SIDE, ImageError, load_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def raw_png(w: int, h: int, depth: int, colour: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand: any declared size, 16-bit colour, or no pixel data at all."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def png16(a: np.ndarray, colour: int) -> bytes:
    a = a.astype(">u2")
    rows = b"".join(b"\0" + a[i].tobytes() for i in range(a.shape[0]))
    return raw_png(a.shape[1], a.shape[0], 16, colour, rows)


def palette(transparent: bool) -> bytes:
    im = Image.fromarray(RGB).convert("P")
    return encode(im, "PNG", transparency=0) if transparent else encode(im, "PNG")


def animated_gif() -> bytes:
    frames = [Image.fromarray(RGB).convert("P"), Image.fromarray(255 - RGB).convert("P"),
              Image.fromarray(RGB[::-1].copy()).convert("P")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


def rgba(alpha: int) -> np.ndarray:
    return np.dstack([RGB, np.full(RGB.shape[:2], alpha, np.uint8)])


# name: (file bytes, expected shape (H, W), words every notice list must contain)
ACCEPTED = {
    "rgb png": (encode(Image.fromarray(RGB), "PNG"), (40, 60), []),
    "1x1": (encode(Image.fromarray(RGB[:1, :1]), "PNG"), (1, 1), []),
    "1x3000": (encode(Image.fromarray(np.tile(RGB[:1], (1, 50, 1))), "PNG"), (1, 3000), []),
    "3000x2": (encode(Image.fromarray(np.tile(RGB[:, :2], (75, 1, 1))), "PNG"), (3000, 2), []),
    "grayscale": (encode(Image.fromarray(RGB[..., 0]), "PNG"), (40, 60), ["grayscale"]),
    "bilevel": (encode(Image.fromarray(RGB).convert("1"), "PNG"), (40, 60), ["grayscale"]),
    "palette": (palette(False), (40, 60), ["palette"]),
    "palette+transparency": (palette(True), (40, 60), ["transparency"]),
    "rgba": (encode(Image.fromarray(rgba(128)), "PNG"), (40, 60), ["transparency"]),
    "la": (encode(Image.fromarray(rgba(100)).convert("LA"), "PNG"), (40, 60), ["transparency"]),
    "16-bit gray png": (encode(Image.fromarray(RNG.integers(0, 65536, (40, 60)).astype(np.uint16)), "PNG"),
                        (40, 60), ["16-bit grayscale"]),
    "16-bit rgb png": (png16(RNG.integers(0, 65536, (40, 60, 3)), 2), (40, 60), ["16-bit"]),
    "16-bit rgba png": (png16(RNG.integers(0, 65536, (40, 60, 4)), 6), (40, 60), ["16-bit", "transparency"]),
    "cmyk jpeg": (encode(Image.fromarray(RGB).convert("CMYK"), "JPEG"), (40, 60), ["CMYK"]),
    "cmyk tiff": (encode(Image.fromarray(RGB).convert("CMYK"), "TIFF"), (40, 60), ["CMYK"]),
    "float tiff": (encode(Image.fromarray(RNG.random((40, 60)).astype(np.float32)), "TIFF"), (40, 60),
                   ["grayscale"]),
    "int32 tiff": (encode(Image.fromarray(RNG.integers(-5, 70000, (40, 60)).astype(np.int32)), "TIFF"),
                   (40, 60), ["grayscale"]),
    "gray jpeg": (encode(Image.fromarray(RGB[..., 1]), "JPEG"), (40, 60), ["grayscale"]),
    "webp": (encode(Image.fromarray(RGB), "WEBP"), (40, 60), []),
    "bmp": (encode(Image.fromarray(RGB), "BMP"), (40, 60), []),
    "animated gif": (animated_gif(), (40, 60), ["animated", "first frame"]),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_accepted_images_are_converted_with_notices(name):
    data, shape, words = ACCEPTED[name]
    img, notices = load_image(data)
    assert img.dtype == np.uint8 and img.shape == (*shape, 3) and img.flags.c_contiguous
    text = " ".join(notices)
    for w in words:
        assert w in text, (name, notices)
    if not words:
        assert notices == [], notices


def test_content_survives_conversion():
    img, _ = load_image(encode(Image.fromarray(RGB), "PNG"))
    assert np.array_equal(img, RGB)
    gray, _ = load_image(encode(Image.fromarray(RGB[..., 0]), "PNG"))
    assert all(np.array_equal(gray[..., c], RGB[..., 0]) for c in range(3))
    # 16-bit gray: the top 8 bits (rounded)
    a16 = RNG.integers(0, 65536, (8, 8)).astype(np.uint16)
    g16, _ = load_image(encode(Image.fromarray(a16), "PNG"))
    assert np.abs(g16[..., 0].astype(int) - np.round(a16 / 257).astype(int)).max() <= 1
    # transparent pixels go to white, opaque ones keep their colour
    a = rgba(255)
    a[:10, :, 3] = 0
    out, _ = load_image(encode(Image.fromarray(a), "PNG"))
    assert (out[:10] == 255).all() and np.array_equal(out[10:], RGB[10:])
    # the animated GIF gives its first frame, not a later one
    first, _ = load_image(animated_gif())
    ref, _ = load_image(encode(Image.fromarray(RGB).convert("P"), "GIF"))
    assert np.array_equal(first, ref)


@pytest.mark.parametrize("orientation,turn", [(3, 2), (6, -1), (8, 1)])
def test_exif_rotation_is_applied(orientation, turn):
    """A JPEG stored sideways with an EXIF orientation tag comes out upright."""
    base = np.zeros((48, 80, 3), np.uint8)
    base[:16, :16] = (255, 0, 0)  # a red corner, easy to find after rotation
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(base), "JPEG", exif=exif, quality=95)
    img, notices = load_image(data)
    assert any("EXIF orientation" in n for n in notices)
    want = np.rot90(base, turn)  # 6: 90 degrees clockwise, 8: counter-clockwise, 3: 180
    assert img.shape == want.shape
    assert np.abs(img.astype(int) - want.astype(int)).mean() < 8


def test_broken_exif_does_not_lose_the_picture():
    with warnings.catch_warnings():  # Pillow warns while writing the broken block
        warnings.simplefilter("ignore")
        data = encode(Image.fromarray(RGB), "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\xff")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and reading it must not warn either
        img, _ = load_image(data)
    assert img.shape == (40, 60, 3)


REFUSED = {
    "empty": (b"", "empty"),
    "not an image": (b"this is not an image at all, just some text\n" * 20, "not a readable image"),
    "html": (b"<!doctype html><html><body>hi</body></html>", "not a readable image"),
    "png signature only": (b"\x89PNG\r\n\x1a\n", "not a readable image"),
    "truncated png": (encode(Image.fromarray(RGB), "PNG")[:200], "damaged or truncated"),
    "truncated jpeg": (encode(Image.fromarray(RGB), "JPEG")[:300], "damaged or truncated"),
    "png without pixel data": (raw_png(60, 40, 8, 2), "damaged or truncated"),
    "bomb 50000x50000 png": (raw_png(50000, 50000, 8, 2), "decompression bomb"),
    "bomb 12000x12000 png": (raw_png(12000, 12000, 8, 2), "limit"),
    "just over the limit": (raw_png(4097, 4096, 8, 0), "the limit is"),
    "too long a side": (raw_png(MAX_SIDE + 1, 1, 8, 0), "per side"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_inputs(name):
    data, words = REFUSED[name]
    t0 = time.perf_counter()
    with pytest.raises(ImageError) as e:
        load_image(data)
    assert time.perf_counter() - t0 < 2.0
    assert words in str(e.value) and "\n" not in str(e.value)


def test_decompression_bomb_allocates_nothing_large():
    """A small PNG that declares 20000 x 20000 pixels (1.2 GB decoded) is refused from its
    header: no pixel buffer is ever allocated."""
    rows = zlib.compress(b"\0" * (20000 + 1) * 64)  # 64 rows; the IDAT need not be complete
    bomb = raw_png(20000, 20000, 8, 2, b"")[:33] + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match="limit|bomb"):
        load_image(bomb)
    assert time.perf_counter() - t0 < 1.0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, grown_mb


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_files_on_disk(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path)  # a directory
    (tmp_path / "ok.png").write_bytes(ACCEPTED["rgb png"][0])
    assert load_image(str(tmp_path / "ok.png"))[0].shape == (40, 60, 3)
    with open(tmp_path / "ok.png", "rb") as f:
        assert load_image(f)[0].shape == (40, 60, 3)


def test_pixel_limit_is_the_documented_one():
    assert MAX_PIXELS == 4096 * 4096
    img, _ = load_image(raw_png(4096, 1, 8, 0, b"\0" + bytes(4096)))
    assert img.shape == (1, 4096, 3)


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_every_accepted_image_round_trips(scaled_codec, name):
    img, _ = load_image(ACCEPTED[name][0])
    data, tr = scaled_codec.compress(img, "kc=2,grid=2x2")
    out, td = scaled_codec.decompress(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(td.y_hat, tr.y_hat)
