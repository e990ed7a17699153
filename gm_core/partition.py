"""GroupPartition: how the latent y (M channels, h x w positions) is split into coding groups.

A group is one channel slice at one spatial phase of a kh x kw grid: the positions (h, w) with
h mod kh == i and w mod kw == j (the layout of ``pixel_unshuffle``), so every group spans the
whole image. The coding order is a list of (slice, phase) pairs that visits each pair once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import torch


class PartitionError(ValueError):
    """A partition spec that cannot describe a valid grouping of the latent."""


def bayer_order(kh: int, kw: int) -> list[int]:
    """Phases of a kh x kw grid in ordered-dither order: each prefix spreads as evenly as it can.

    For 2x2 this is (0,0),(1,1),(0,1),(1,0), so the first two steps form a checkerboard.
    Non-square or non-power-of-two grids fall back to raster order.
    """
    if kh != kw or kh & (kh - 1):
        return list(range(kh * kw))
    b = [[0]]
    while len(b) < kh:
        n = len(b)
        b = [[4 * b[i % n][j % n] + (0, 2, 3, 1)[2 * (i // n) + (j // n)] for j in range(2 * n)]
             for i in range(2 * n)]
    rank = {b[i][j]: i * kw + j for i in range(kh) for j in range(kw)}
    return [rank[r] for r in range(kh * kw)]


ORDER_MODES = ("slice-major", "phase-major")
PHASE_ORDERS = ("bayer", "raster")


@dataclass(frozen=True)
class GroupPartition:
    M: int
    slices: tuple[int, ...]
    grid: tuple[int, int]
    order: tuple[tuple[int, int], ...]  # (slice index, phase index = i * kw + j) per step

    # ---------------------------------------------------------------- construction
    def __post_init__(self):
        if not self.slices or any(int(c) <= 0 for c in self.slices):
            raise PartitionError("channel slices must be positive integers")
        if sum(self.slices) != self.M:
            raise PartitionError(
                f"channel slices {'+'.join(map(str, self.slices))} sum to {sum(self.slices)}, "
                f"but the latent has {self.M} channels")
        kh, kw = self.grid
        if not (1 <= kh <= 8 and 1 <= kw <= 8):
            raise PartitionError(f"grid {kh}x{kw} is out of range (1..8 per side)")
        expected = {(s, p) for s in range(len(self.slices)) for p in range(kh * kw)}
        if len(self.order) != len(expected) or set(self.order) != expected:
            raise PartitionError("the coding order must visit every (slice, phase) pair exactly once")

    @classmethod
    def build(cls, M: int, slices=None, kc: int | None = None, grid=(1, 1),
              order: str = "slice-major", phases: str = "bayer") -> "GroupPartition":
        if slices is None:
            kc = kc or 1
            if kc <= 0 or M % kc:
                raise PartitionError(f"kc={kc} does not divide the {M} latent channels evenly; "
                                     "give uneven slices with slices=a+b+...")
            slices = (M // kc,) * kc
        slices = tuple(int(c) for c in slices)
        kh, kw = (int(grid[0]), int(grid[1]))
        if phases not in PHASE_ORDERS:
            raise PartitionError(f"phases must be one of {PHASE_ORDERS}, not {phases!r}")
        if order not in ORDER_MODES:
            raise PartitionError(f"order must be one of {ORDER_MODES}, not {order!r}")
        ph = bayer_order(kh, kw) if phases == "bayer" else list(range(kh * kw))
        if order == "slice-major":
            steps = [(s, p) for s in range(len(slices)) for p in ph]
        else:
            steps = [(s, p) for p in ph for s in range(len(slices))]
        return cls(M, slices, (kh, kw), tuple(steps))

    @classmethod
    def parse(cls, spec: str, M: int) -> "GroupPartition":
        """Parse ``kc=4,grid=2x2``, ``slices=16+16+32+32,grid=2x2,order=phase-major`` or ``g1``.

        Keys: kc (even slices) or slices (a+b+..., uneven), grid (KHxKW), order
        (slice-major | phase-major), phases (bayer | raster). A JSON object (``to_dict``) works too.
        """
        spec = (spec or "").strip()
        if spec.startswith("{"):
            try:
                return cls.from_dict(json.loads(spec))
            except (ValueError, KeyError, TypeError) as e:
                raise PartitionError(f"bad partition JSON: {e}") from None
        if spec in ("g1", "hyperprior"):
            return cls.build(M, kc=1, grid=(1, 1))
        kw: dict = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep:
                raise PartitionError(f"expected key=value in partition spec, got {part!r}")
            try:
                if key == "kc":
                    kw["kc"] = int(value)
                elif key == "slices":
                    kw["slices"] = tuple(int(v) for v in value.replace("/", "+").split("+"))
                elif key == "grid":
                    a, _, b = value.lower().partition("x")
                    kw["grid"] = (int(a), int(b or a))
                elif key in ("order", "phases"):
                    kw[key] = value
                else:
                    raise PartitionError(f"unknown partition key {key!r} "
                                         "(use kc, slices, grid, order, phases)")
            except ValueError as e:
                if isinstance(e, PartitionError):
                    raise
                raise PartitionError(f"bad value for {key}: {value!r}") from None
        if "kc" in kw and "slices" in kw and len(kw["slices"]) != kw["kc"]:
            raise PartitionError("kc and slices disagree")
        kw.pop("kc", None) if "slices" in kw else None
        return cls.build(M, **kw)

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {"M": self.M, "slices": list(self.slices), "grid": list(self.grid),
                "order": [list(o) for o in self.order]}

    @classmethod
    def from_dict(cls, d: dict) -> "GroupPartition":
        return cls(int(d["M"]), tuple(int(c) for c in d["slices"]),
                   (int(d["grid"][0]), int(d["grid"][1])),
                   tuple((int(s), int(p)) for s, p in d["order"]))

    def to_spec(self) -> str:
        """The shortest spec string that parses back to this partition (JSON if none does)."""
        kc = len(self.slices)
        sl = f"kc={kc}" if len(set(self.slices)) == 1 else "slices=" + "+".join(map(str, self.slices))
        for order in ORDER_MODES:
            for phases in PHASE_ORDERS:
                cand = GroupPartition.build(self.M, slices=self.slices, grid=self.grid,
                                            order=order, phases=phases)
                if cand.order == self.order:
                    s = f"{sl},grid={self.grid[0]}x{self.grid[1]}"
                    if order != "slice-major":
                        s += f",order={order}"
                    if phases != "bayer":
                        s += f",phases={phases}"
                    return s
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def __str__(self) -> str:
        return self.to_spec()

    # ---------------------------------------------------------------- geometry
    @property
    def num_groups(self) -> int:
        return len(self.order)

    @property
    def num_slices(self) -> int:
        return len(self.slices)

    @property
    def num_phases(self) -> int:
        return self.grid[0] * self.grid[1]

    @cached_property
    def slice_bounds(self) -> tuple[tuple[int, int], ...]:
        out, start = [], 0
        for c in self.slices:
            out.append((start, start + c))
            start += c
        return tuple(out)

    def phase_coords(self, p: int) -> tuple[int, int]:
        return divmod(p, self.grid[1])

    def channel_masks(self) -> torch.Tensor:
        """(num_slices, M) float mask: which channels each slice holds."""
        m = torch.zeros(self.num_slices, self.M)
        for s, (a, b) in enumerate(self.slice_bounds):
            m[s, a:b] = 1
        return m

    def step_of(self) -> torch.Tensor:
        """(num_phases, M) long: the step at which each (phase, channel) element is coded."""
        t = torch.empty(self.num_phases, self.M, dtype=torch.long)
        for g, (s, p) in enumerate(self.order):
            a, b = self.slice_bounds[s]
            t[p, a:b] = g
        return t

    def group_label(self, g: int) -> str:
        s, p = self.order[g]
        i, j = self.phase_coords(p)
        a, b = self.slice_bounds[s]
        return f"g{g}: ch {a}-{b - 1}, phase ({i},{j})"


def to_phases(t: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, P, C, h/kh, w/kw), phase index p = i * kw + j."""
    B, C, h, w = t.shape
    kh, kw = grid
    t = t.reshape(B, C, h // kh, kh, w // kw, kw).permute(0, 3, 5, 1, 2, 4)
    return t.reshape(B, kh * kw, C, h // kh, w // kw)


def from_phases(t: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``to_phases``."""
    B, P, C, hg, wg = t.shape
    kh, kw = grid
    t = t.reshape(B, kh, kw, C, hg, wg).permute(0, 3, 4, 1, 5, 2)
    return t.reshape(B, C, hg * kh, wg * kw)


# Phase identities shared by every grid the model may meet, so one embedding table serves all
# partitions: 1x1, 2x2, 4x4 and 8x8 grids, plus the rectangular ones up to 8 per side.
def phase_id(grid: tuple[int, int], p: int) -> int:
    kh, kw = grid
    base = 0
    for a in range(1, 9):
        for b in range(1, 9):
            if (a, b) == (kh, kw):
                return base + p
            base += a * b
    raise PartitionError(f"grid {kh}x{kw} is out of range")


NUM_PHASE_IDS = sum(a * b for a in range(1, 9) for b in range(1, 9))
