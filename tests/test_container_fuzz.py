"""Damaged .gmx streams: decoding raises ContainerError naming the problem, nothing else.

Thousands of mutations of a real stream (a 64 x 64 crop) go through ``Codec.decompress``. Most
fail at the container (structure, checksum) in microseconds; the forged ones, whose CRC is
recomputed after the damage so that the entropy decoder does run, take the full decode path:
they must fail too (the decoder re-encodes the y string from what it decoded and refuses it
unless the two agree), never hang, crash or yield a wrong image.
"""
from __future__ import annotations

import struct
import time
import zlib
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gm_core import container
from gm_core.container import MAGIC, VERSION, ContainerError
from gm_core.partition import GroupPartition

SLOW_S = 20.0  # a decode that takes this long on a 64 x 64 image counts as a hang
COUNTS: Counter = Counter()  # mutations tried per kind, printed at the end (pytest -s)

FAST = settings(max_examples=1500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DECODE = settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Stream:
    def __init__(self, codec, img):
        self.codec = codec
        self.img = img
        self.data, self.trace = codec.compress(img, "slices=32+32+64+64,grid=2x2")
        self.header, self.pos = container.parse_header(self.data)
        self.ref, _ = codec.decompress(self.data)
        self.z = self.data[self.pos:self.pos + self.header.z_length]
        self.y = container.unpack(self.data)[2]


@pytest.fixture(scope="module")
def stream(scaled_codec, crop):
    s = Stream(scaled_codec, np.ascontiguousarray(crop[:64, :64]))
    assert (s.trace.y_hat != 0).mean() > 0.3  # a real payload, not all zeros
    yield s
    print("\nmutations tried:", dict(COUNTS), "total", sum(COUNTS.values()))


def refuse(codec, data: bytes, kind: str, match: str | None = None) -> str:
    """Decoding ``data`` must raise ContainerError (quickly); returns its message."""
    COUNTS[kind] += 1
    t0 = time.perf_counter()
    with pytest.raises(ContainerError) as e:
        codec.decompress(data)
    assert time.perf_counter() - t0 < SLOW_S, f"{kind}: decoding took too long"
    msg = str(e.value)
    assert msg and "\n" not in msg
    if match:
        assert match in msg, msg
    return msg


def fix_crc(data: bytes, pos: int) -> bytes:
    """Recompute the checksum of a stream whose header ends at ``pos`` (a forged stream)."""
    crc = zlib.crc32(data[pos:], zlib.crc32(data[:pos - 4]))
    return data[:pos - 4] + struct.pack("<I", crc) + data[pos:]


# ---------------------------------------------------------------------- exhaustive, cheap
def test_every_truncation(stream):
    data = stream.data
    assert "empty" in refuse(stream.codec, b"", "truncation")
    for n in range(1, len(data)):
        refuse(stream.codec, data[:n], "truncation", "truncated")


def test_every_single_bit_flip(stream):
    data = bytearray(stream.data)
    for i in range(len(data)):
        for bit in range(8):
            data[i] ^= 1 << bit
            refuse(stream.codec, bytes(data), "bit flip")
            data[i] ^= 1 << bit
    # a flip in the payload is caught by the checksum before any entropy decoding
    i = stream.pos + 10
    d = stream.data[:i] + bytes([stream.data[i] ^ 4]) + stream.data[i + 1:]
    refuse(stream.codec, d, "bit flip", "checksum mismatch")


def test_named_failures(stream, scaled_codec):
    data, codec = stream.data, stream.codec
    assert "empty" in refuse(codec, b"", "named")
    assert "not a .gmx" in refuse(codec, b"\x89PNG\r\n\x1a\n" + bytes(100), "named")
    for v in (0, 1, 3, 255):  # 1: the format of one string per group
        d = data[:3] + bytes([v]) + data[4:]
        refuse(codec, d, "unknown version", f"unsupported .gmx format version {v}")
    refuse(codec, data + b"\0", "named", "unexpected bytes")
    refuse(codec, data[:-1], "named", "truncated")
    # made with other weights: the model id in the header names them
    from tests.conftest import make_scaled_codec
    refuse(make_scaled_codec(seed=1), data, "other weights", "other weights")
    other = container.pack(replace(stream.header, model_id="0123456789abcdef"), stream.z, stream.y)
    refuse(codec, other, "other weights", "other weights")
    # a partition for another number of latent channels
    part = GroupPartition.build(96, kc=1, grid=(2, 2))
    h = replace(stream.header, partition=part)
    refuse(codec, container.pack(h, stream.z, stream.y), "header field", "latent channels")


def test_forged_huge_sizes_are_refused(stream):
    """A header (with a valid checksum) may not make the decoder allocate a huge image."""
    for H, W in ((4097, 4096), (65536, 65536), (1, 1 << 20), (0, 64), (64, 0)):
        head = bytearray(stream.data[:stream.pos])
        # rebuild the header with the new size: pack() refuses these, so splice by hand
        good = container._varint(stream.header.height) + container._varint(stream.header.width)
        start = 4 + 8 + 1 + len(stream.header.config)
        assert head[start:start + len(good)] == good
        head[start:start + len(good)] = container._varint(H) + container._varint(W)
        d = fix_crc(bytes(head) + stream.data[stream.pos:], len(head))
        refuse(stream.codec, d, "header field", "size")


# ---------------------------------------------------------------------- property-based
@st.composite
def mutations(draw, data: bytes):
    """A damaged copy of ``data`` (never equal to it)."""
    kind = draw(st.sampled_from(["flips", "bytes", "insert", "delete", "splice", "truncate+junk",
                                 "duplicate", "swap"]))
    d = bytearray(data)
    n = len(d)
    if kind == "flips":
        for i in draw(st.lists(st.integers(0, 8 * n - 1), min_size=1, max_size=32, unique=True)):
            d[i // 8] ^= 1 << (i % 8)
    elif kind == "bytes":
        for i, b in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)),
                                  min_size=1, max_size=16)):
            d[i] = b
    elif kind == "insert":
        i = draw(st.integers(0, n))
        d[i:i] = draw(st.binary(min_size=1, max_size=64))
    elif kind == "delete":
        i = draw(st.integers(0, n - 1))
        del d[i:i + draw(st.integers(1, 64))]
    elif kind == "splice":
        i = draw(st.integers(0, n - 1))
        junk = draw(st.binary(min_size=1, max_size=256))
        d[i:i + len(junk)] = junk
    elif kind == "truncate+junk":
        d = d[:draw(st.integers(0, n - 1))] + draw(st.binary(min_size=0, max_size=64))
    elif kind == "duplicate":
        i = draw(st.integers(0, n - 2))
        j = draw(st.integers(i + 1, min(n, i + 64)))
        d[j:j] = d[i:j]
    else:  # swap two chunks
        i = draw(st.integers(0, n - 8))
        j = draw(st.integers(i + 4, n - 4))
        k = draw(st.integers(1, min(j - i, n - j, 32)))
        d[i:i + k], d[j:j + k] = d[j:j + k], d[i:i + k]
    d = bytes(d)
    if d == data:
        d = data + b"\0"
    return kind, d


def test_random_mutations(stream):
    @FAST
    @given(st.data())
    def check(dd):
        kind, d = dd.draw(mutations(stream.data))
        refuse(stream.codec, d, f"mutation:{kind}")
    check()


@FAST
@given(st.binary(max_size=4096))
def test_random_bytes(stream, blob):
    refuse(stream.codec, blob, "random bytes")


@FAST
@given(st.binary(max_size=600))
def test_random_bytes_after_magic(stream, blob):
    refuse(stream.codec, MAGIC + bytes([VERSION]) + blob, "random bytes after magic")
    try:  # the header reader alone (used by `info` and the app) fails the same way
        container.parse_header(MAGIC + bytes([VERSION]) + blob)
    except ContainerError:
        pass


@st.composite
def header_fields(draw, header):
    field = draw(st.sampled_from(["height", "width", "quality", "config", "model_id", "partition"]))
    if field == "height":
        return replace(header, height=draw(st.integers(1, 300)))
    if field == "width":
        return replace(header, width=draw(st.integers(1, 300)))
    if field == "quality":
        return replace(header, quality=draw(st.floats(-1, 64, allow_nan=False, allow_subnormal=False, width=32)))
    if field == "config":
        return replace(header, config=draw(st.text("abcdefghijklmnopqrstuvwxyz_-0123456789", max_size=40)))
    if field == "model_id":
        return replace(header, model_id=draw(st.binary(min_size=8, max_size=8)).hex())
    kc = draw(st.sampled_from([1, 2, 3, 4, 6, 8]))
    grid = draw(st.sampled_from([(1, 1), (2, 2), (4, 4), (1, 2), (2, 1), (8, 8)]))
    order = draw(st.sampled_from(["slice-major", "phase-major"]))
    phases = draw(st.sampled_from(["bayer", "raster"]))
    return replace(header, partition=GroupPartition.build(header.partition.M, kc=kc, grid=grid,
                                                          order=order, phases=phases))


def test_mangled_header_fields(stream):
    """A header field changed, the original checksum kept: the checksum catches it. With the
    checksum recomputed (a forged stream), decoding fails with ContainerError or, when the
    header still describes this payload, yields an image of the size the header says."""
    @settings(DECODE, max_examples=80)
    @given(header_fields(stream.header), st.booleans())
    def check(h, forge):
        d = container.pack(h, stream.z, stream.y)
        if d == stream.data:
            return
        pos = container.parse_header(d)[1]
        if not forge:
            d = d[:pos - 4] + stream.data[stream.pos - 4:stream.pos] + d[pos:]
            if d == stream.data:
                return
            refuse(stream.codec, d, "header field")
            return
        COUNTS["forged header field"] += 1
        t0 = time.perf_counter()
        try:
            out, tr = stream.codec.decompress(d)
        except ContainerError as e:
            assert str(e)
        else:
            assert out.shape == (h.height, h.width, 3)
            if h.partition == stream.header.partition and h.quality == stream.header.quality:
                same = (-(-h.height // 64), -(-h.width // 64)) == (1, 1)
                assert same, "a payload decoded at another latent size without an error"
                assert np.array_equal(tr.y_hat, stream.trace.y_hat)
        assert time.perf_counter() - t0 < SLOW_S
    check()


def test_forged_payload_mutations(stream):
    """Damage in the payload with a recomputed checksum reaches the entropy decoders: each
    y string is re-encoded after decoding, so the damage is an error, not a wrong image."""
    pos, data = stream.pos, stream.data

    @DECODE
    @given(st.lists(st.tuples(st.integers(pos, len(data) - 1), st.integers(0, 255)),
                    min_size=1, max_size=8),
           st.sampled_from(["set", "xor1", "zero", "ff"]))
    def check(edits, how):
        d = bytearray(data)
        for i, b in edits:
            d[i] = {"set": b, "xor1": d[i] ^ (1 << (b % 8)), "zero": 0, "ff": 255}[how]
        if bytes(d) == data:
            return
        d = fix_crc(bytes(d), pos)
        COUNTS["forged payload"] += 1
        t0 = time.perf_counter()
        try:
            out, _ = stream.codec.decompress(d)
        except ContainerError as e:
            assert "entropy-decoded" in str(e)
        else:  # only acceptable if the damage did not change what the stream means
            assert np.array_equal(out, stream.ref), "a damaged stream decoded to a wrong image"
        assert time.perf_counter() - t0 < SLOW_S
    check()


def test_forged_string_swaps(stream):
    """Valid strings in the wrong places (z and y swapped, either one missing, y cut short or
    lengthened, y twice): all refused."""
    z, y, h = stream.z, stream.y, stream.header
    for zs, ys in [(y, z), (b"", y), (z, b""), (z, y[:-4]), (z, y + bytes(4)), (z, y + y)]:
        d = container.pack(replace(h, z_length=len(zs), y_length=len(ys)), zs, ys)
        refuse(stream.codec, d, "forged string swap", "entropy-decoded")


def test_clean_stream_still_decodes(stream):
    out, tr = stream.codec.decompress(stream.data, use_cache=False)
    assert np.array_equal(out, stream.ref)
    assert np.array_equal(tr.y_hat, stream.trace.y_hat)
