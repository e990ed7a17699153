"""The .gmx container: a compact binary header, a CRC-32 over header and payload, two strings.

Layout (integers are LEB128 varints unless noted):
  b"GMX" | version (u8) | model id (8 bytes) | config name (u8 length + ASCII)
  | height | width | quality (float32 LE) | partition | len(z) | len(y)
  | CRC-32 of everything before it and of the payload (u32 LE) | z string | y string
The y string holds every group of the latent, in coding order, in one rANS stream (version 1
had one string per group, each paying its own final state and length field).
Partition: number of slices, the slices, kh (u8), kw (u8), order code (u8: 0..3 are the named
orders of ``GroupPartition.build``, 255 an explicit list of (slice, phase) pairs).
Every parse error is a ``ContainerError`` naming the problem; the checksum is verified before
any entropy decoding, so a damaged stream never reaches the rANS decoder.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .images import MAX_PIXELS  # a header cannot ask the decoder for more than an encoder takes
from .partition import GroupPartition, PartitionError

MAGIC = b"GMX"
VERSION = 2
_ORDERS = [("slice-major", "bayer"), ("phase-major", "bayer"), ("slice-major", "raster"),
           ("phase-major", "raster")]
MAX_GROUPS = 4096
MAX_SIDE = 1 << 16
MAX_GRID = 8  # GroupPartition's limit per side, checked before a partition is built


class ContainerError(ValueError):
    """A .gmx stream that cannot be decoded: not one, damaged, or for another model."""


@dataclass
class Header:
    model_id: str  # 16 hex digits
    config: str
    height: int
    width: int
    quality: float
    partition: GroupPartition
    z_length: int = 0
    y_length: int = 0
    header_bytes: int = 0

    def to_json(self) -> dict:
        return {"format_version": VERSION, "model": {"config": self.config, "id": self.model_id},
                "image": {"height": self.height, "width": self.width}, "quality": self.quality,
                "partition": self.partition.to_spec(), "groups": self.partition.num_groups,
                "bytes": {"header": self.header_bytes, "z": self.z_length, "y": self.y_length,
                          "total": self.header_bytes + self.z_length + self.y_length}}


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise ContainerError(f"truncated stream: it ends inside the header ({what})")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def varint(self, what: str) -> int:
        n, shift = 0, 0
        while True:
            b = self.take(1, what)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 63:
                raise ContainerError(f"corrupted header: {what} is not a valid number")


def _pack_partition(p: GroupPartition) -> bytes:
    out = bytearray(_varint(p.num_slices))
    for c in p.slices:
        out += _varint(c)
    out += bytes([p.grid[0], p.grid[1]])
    for code, (order, phases) in enumerate(_ORDERS):
        if GroupPartition.build(p.M, slices=p.slices, grid=p.grid, order=order, phases=phases).order == p.order:
            return bytes(out + bytes([code]))
    out.append(255)
    for s, ph in p.order:
        out += _varint(s) + _varint(ph)
    return bytes(out)


def _read_partition(r: _Reader) -> GroupPartition:
    n = r.varint("number of slices")
    if not 1 <= n <= 1024:
        raise ContainerError("corrupted header: implausible number of channel slices")
    slices = tuple(r.varint("slice size") for _ in range(n))
    kh, kw = r.take(2, "grid")
    if not (1 <= kh <= MAX_GRID and 1 <= kw <= MAX_GRID):
        raise ContainerError(f"corrupted header: grid {kh}x{kw} is out of range")
    if n * kh * kw > MAX_GROUPS:
        raise ContainerError("corrupted header: too many groups")
    code = r.take(1, "order")[0]
    try:
        M = sum(slices)
        if code < len(_ORDERS):
            order, phases = _ORDERS[code]
            return GroupPartition.build(M, slices=slices, grid=(kh, kw), order=order, phases=phases)
        if code != 255:
            raise ContainerError("corrupted header: unknown coding-order code")
        G = n * kh * kw
        steps = tuple((r.varint("order"), r.varint("order")) for _ in range(G))
        return GroupPartition(M, slices, (kh, kw), steps)
    except PartitionError as e:
        raise ContainerError(f"corrupted header: invalid partition ({e})") from None


def _check_size(H: int, W: int) -> None:
    if not (1 <= H <= MAX_SIDE and 1 <= W <= MAX_SIDE):
        raise ContainerError(f"corrupted header: implausible image size {W}x{H}")
    if H * W > MAX_PIXELS:
        raise ContainerError(f"image size {W}x{H} exceeds the limit of {MAX_PIXELS / 1e6:.1f} MP")


def pack(header: Header, z_string: bytes, y_string: bytes) -> bytes:
    _check_size(header.height, header.width)  # never write a stream that would be refused
    name = header.config.encode("ascii")
    head = bytearray(MAGIC + bytes([VERSION]) + bytes.fromhex(header.model_id))
    head += bytes([len(name)]) + name
    head += _varint(header.height) + _varint(header.width)
    head += struct.pack("<f", header.quality)
    head += _pack_partition(header.partition)
    head += _varint(len(z_string)) + _varint(len(y_string))
    payload = z_string + y_string
    crc = zlib.crc32(payload, zlib.crc32(bytes(head)))
    return bytes(head) + struct.pack("<I", crc) + payload


def parse_header(data: bytes) -> tuple[Header, int]:
    """Header and the payload offset; checks structure, not the checksum."""
    if not data:
        raise ContainerError("empty stream: the file has no bytes")
    r = _Reader(data)
    if r.take(3, "magic") != MAGIC:
        raise ContainerError("not a .gmx stream (bad magic bytes)")
    version = r.take(1, "version")[0]
    if version != VERSION:
        raise ContainerError(f"unsupported .gmx format version {version} (this build reads {VERSION})")
    mid = r.take(8, "model id").hex()
    name = r.take(r.take(1, "config name")[0], "config name")
    try:
        config = name.decode("ascii")
    except UnicodeDecodeError:
        raise ContainerError("corrupted header: config name is not ASCII") from None
    H, W = r.varint("height"), r.varint("width")
    _check_size(H, W)
    (quality,) = struct.unpack("<f", r.take(4, "quality"))
    if not (quality == quality and -1 <= quality <= 64):
        raise ContainerError("corrupted header: implausible quality")
    part = _read_partition(r)
    z_len = r.varint("z length")
    y_len = r.varint("y length")
    r.take(4, "checksum")
    h = Header(mid, config, H, W, float(quality), part, z_len, y_len, header_bytes=r.pos)
    return h, r.pos


def unpack(data: bytes) -> tuple[Header, bytes, bytes]:
    header, pos = parse_header(data)
    need = header.z_length + header.y_length
    have = len(data) - pos
    if have < need:
        raise ContainerError(f"truncated stream: payload has {have} of {need} bytes")
    if have > need:
        raise ContainerError(f"corrupted stream: {have - need} unexpected bytes after the payload")
    (crc,) = struct.unpack("<I", data[pos - 4:pos])
    if zlib.crc32(data[pos:], zlib.crc32(data[:pos - 4])) != crc:
        raise ContainerError("checksum mismatch: the stream is corrupted")
    return header, data[pos:pos + header.z_length], data[pos + header.z_length:]
