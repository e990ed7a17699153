"""Discretised-Gaussian entropy coding with CompressAI's rANS: the groups of a latent, one after
another, in one string.

Symbols are y_hat - round(mean) under a Gaussian whose mean keeps its fractional part, so the
CDF tables are indexed by (scale bin, mean-offset bin). The tables are built once per process,
on the CPU, in float64 with the C library's erfc, and quantised by CompressAI's integer
``pmf_to_quantized_cdf``: every machine builds the same integers.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from compressai._CXX import pmf_to_quantized_cdf
from compressai.ans import BufferedRansEncoder, RansDecoder

SCALE_MIN = 0.11  # also the model's lower bound on predicted scales
SCALE_MAX = 128.0
NUM_SCALES = 96
NUM_OFFSETS = 16
TAIL_MASS = 1e-9
PRECISION = 16
MAX_SYMBOL = 1 << 24  # |value - round(mean)|: far beyond any latent, far from int32 overflow


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


class GaussianTables:
    def __init__(self):
        self.log_lo = math.log(SCALE_MIN)
        self.log_step = (math.log(SCALE_MAX) - self.log_lo) / (NUM_SCALES - 1)
        mult = -_ndtri(TAIL_MASS / 2)
        cdfs, lengths, offsets = [], [], []
        for si in range(NUM_SCALES):
            s = math.exp(self.log_lo + si * self.log_step)
            T = int(math.ceil(mult * s)) + 1
            for oi in range(NUM_OFFSETS):
                o = (oi + 0.5) / NUM_OFFSETS - 0.5
                edges = [_phi((k + 0.5 - o) / s) for k in range(-T - 1, T + 1)]
                pmf = [edges[i + 1] - edges[i] for i in range(2 * T + 1)]
                tail = max(0.0, 1.0 - sum(pmf))
                cdf = pmf_to_quantized_cdf(pmf + [tail], PRECISION)
                cdfs.append(cdf)
                lengths.append(len(cdf))
                offsets.append(-T)
        self.cdfs = cdfs
        self.lengths = lengths
        self.offsets = offsets
        # the same tables as arrays, for code_bits
        self._cdf_matrix = np.zeros((len(cdfs), max(lengths)), dtype=np.int32)
        for i, cdf in enumerate(cdfs):
            self._cdf_matrix[i, :len(cdf)] = cdf
        self._max_value = np.array(lengths, dtype=np.int64) - 2
        self._offset = np.array(offsets, dtype=np.int64)

    # Index computation runs in the dtype of the parameters; the codec passes float64 so that
    # encoder and decoder, whatever float path produced the parameters, pick the same table.
    def indexes(self, mean: torch.Tensor, scale: torch.Tensor):
        center = torch.round(mean)
        frac = mean - center
        oi = torch.floor((frac + 0.5) * NUM_OFFSETS).clamp_(0, NUM_OFFSETS - 1)
        si = torch.round((torch.log(scale) - self.log_lo) / self.log_step).clamp_(0, NUM_SCALES - 1)
        return center.long(), (si * NUM_OFFSETS + oi).long()

    def _subset(self, idx: np.ndarray):
        """The tables a group uses, in index order, and each symbol's position among them: what
        ``np.unique(idx, return_inverse=True)`` gives, in linear time (it sorts, which cost more
        than the rANS calls themselves). Passing only these keeps the per-call conversion of
        CDF lists into C++ small."""
        used = np.zeros(len(self.cdfs), dtype=bool)
        used[idx] = True
        uniq = np.flatnonzero(used)
        position = np.cumsum(used, dtype=np.int32) - 1
        return (position[idx].tolist(), [self.cdfs[i] for i in uniq],
                [self.lengths[i] for i in uniq], [self.offsets[i] for i in uniq])

    def symbols(self, values: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor):
        """What the coder sees of a group: its symbols and each symbol's table, flat."""
        _check_finite(mean, scale)
        center, idx = self.indexes(mean, scale)
        symbols = (values.long() - center).reshape(-1).cpu().numpy()
        if symbols.size and np.abs(symbols).max() > MAX_SYMBOL:
            raise ValueError(f"a latent value lies more than {MAX_SYMBOL} from its mean: "
                             "outside the range of the entropy coder")
        return symbols.astype(np.int32), idx.reshape(-1).cpu().numpy()

    def code_bits(self, symbols: np.ndarray, idx: np.ndarray) -> float:
        """What these symbols cost in CompressAI's rANS stream, in bits: -log2 of each symbol's
        quantised frequency, plus the 4-bit chunks of the escape path for values beyond a
        table. rANS with a 64-bit state loses next to nothing on top of this, so a string's
        length is the sum over its groups plus 32 to 64 bits of final state (tested)."""
        if symbols.size == 0:
            return 0.0
        max_value = self._max_value[idx]
        value = symbols.astype(np.int64) - self._offset[idx]
        escape = (value < 0) | (value >= max_value)
        pos = np.where(escape, max_value, value)
        freq = self._cdf_matrix[idx, pos + 1] - self._cdf_matrix[idx, pos]
        bits = float(np.sum(PRECISION - np.log2(freq)))
        if escape.any():  # CompressAI's bypass: the raw value in n 4-bit chunks, after n itself
            v, top = value[escape], max_value[escape]
            raw = np.where(v < 0, -2 * v - 1, 2 * (v - top))
            n = np.zeros_like(raw)
            while (rest := raw >> (4 * n)).any():
                n += rest != 0
            bits += float(np.sum(4 * (n + 1)))  # n <= 7 under MAX_SYMBOL: its count is one chunk
        return bits


class StreamEncoder:
    """Codes the groups of one latent, in coding order, into a single rANS string (CompressAI's
    BufferedRansEncoder). One string per latent instead of one per group: the final state (8
    bytes) and a length field are paid once, not G times, so partitions with many groups cost
    what their entropy model says rather than a fixed overhead per group."""

    def __init__(self, tables: "GaussianTables"):
        self.tables = tables
        self._enc = BufferedRansEncoder()

    def add(self, values: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> float:
        """Queue one group; returns what it costs in the string, in bits (``code_bits``)."""
        symbols, idx = self.tables.symbols(values, mean, scale)
        if symbols.size:
            inv, cdfs, lengths, offsets = self.tables._subset(idx)
            self._enc.encode_with_indexes(symbols.tolist(), inv, cdfs, lengths, offsets)
        return self.tables.code_bits(symbols, idx)

    def flush(self) -> bytes:
        return self._enc.flush()


class StreamDecoder:
    """Decodes the groups of a ``StreamEncoder`` string in the same order; ``finish`` checks it."""

    def __init__(self, tables: "GaussianTables", string: bytes, num_symbols: int):
        self.tables, self.string = tables, string
        self._dec = RansDecoder()
        self._dec.set_stream(padded(string, num_symbols))
        self._groups = []

    def decode(self, mean: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The next group's values (shaped like ``mean``) and what they cost in bits."""
        _check_finite(mean, scale, StringError)
        center, idx = self.tables.indexes(mean, scale)
        idx = idx.reshape(-1).cpu().numpy()
        if idx.size == 0:
            return center.to(mean.dtype), 0.0
        inv, cdfs, lengths, offsets = self.tables._subset(idx)
        out = self._dec.decode_stream(inv, cdfs, lengths, offsets)
        sym = np.array(out, dtype=np.int64)  # several times faster than torch.tensor(list)
        # checked now: re-encoding an overflowing escape value in finish() would never end
        if sym.max() > MAX_SYMBOL or sym.min() < -MAX_SYMBOL:
            raise StringError(_INCONSISTENT)
        self._groups.append((out, inv, cdfs, lengths, offsets))
        bits = self.tables.code_bits(sym, idx)
        return (torch.from_numpy(sym).to(mean.device).reshape(mean.shape) + center).to(mean.dtype), bits

    def finish(self) -> None:
        """rANS decoding is the inverse of encoding only on valid strings: re-encoding (a few per
        cent of the decode time) turns a damaged string, or distribution parameters that differ
        from the encoder's, into a ``StringError`` instead of a silently wrong image."""
        enc = BufferedRansEncoder()
        for group in self._groups:
            enc.encode_with_indexes(*group)
        if enc.flush() != self.string:
            raise StringError(_INCONSISTENT)


_INCONSISTENT = ("entropy-coded data is inconsistent (damaged stream, or distribution parameters "
                 "that differ from the encoder's)")


class StringError(ValueError):
    """A rANS string that does not decode consistently."""


def _check_finite(mean, scale, err=ValueError):
    if not (torch.isfinite(mean).all() and torch.isfinite(scale).all()):
        raise err("the entropy model produced non-finite distribution parameters")


def padded(string: bytes, num_symbols: int) -> bytes:
    """The string followed by zero bytes. CompressAI's rANS decoder reads without bounds checks
    (at most 4 bytes per symbol outside the escape path, whose reads end soon after they meet
    zeros); a valid string never reads past its end, a damaged one reads these zeros instead of
    foreign memory."""
    return string + bytes(4 * num_symbols + 8 * len(string) + 4096)


def _ndtri(p: float) -> float:
    """Inverse standard normal CDF by bisection (only used once, for the table tails)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _phi(mid) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@lru_cache(maxsize=1)
def gaussian_tables() -> GaussianTables:
    return GaussianTables()


def gaussian_likelihood(values: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor,
                        bound: float = 1e-9) -> torch.Tensor:
    """P(bin of width 1 around values) under N(mean, scale); symmetric form for precision."""
    v = (values - mean).abs()
    inv = 1.0 / (scale * math.sqrt(2.0))
    upper = 0.5 * torch.erfc((v - 0.5) * inv)
    lower = 0.5 * torch.erfc((v + 0.5) * inv)
    return (upper - lower).clamp_min(bound)
