"""Discretised-Gaussian entropy coding with CompressAI's rANS, one string per group.

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
from compressai.ans import RansDecoder, RansEncoder

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

    def encode(self, values: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> bytes:
        _check_finite(mean, scale)
        center, idx = self.indexes(mean, scale)
        symbols = (values.long() - center).reshape(-1).cpu().numpy()
        if symbols.size == 0:
            return b""
        if np.abs(symbols).max() > MAX_SYMBOL:
            raise ValueError(f"a latent value lies more than {MAX_SYMBOL} from its mean: "
                             "outside the range of the entropy coder")
        symbols = symbols.astype(np.int32)
        inv, cdfs, lengths, offsets = self._subset(idx.reshape(-1).cpu().numpy())
        return RansEncoder().encode_with_indexes(symbols.tolist(), inv, cdfs, lengths, offsets)

    def decode(self, string: bytes, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Decode one group's string; raises ``StringError`` if it is not the encoding of what
        it decodes to (a damaged string, or parameters that differ from the encoder's)."""
        _check_finite(mean, scale, StringError)
        center, idx = self.indexes(mean, scale)
        if center.numel() == 0:
            if string:
                raise StringError("a group without symbols has a non-empty string")
            return center.to(mean.dtype)
        inv, cdfs, lengths, offsets = self._subset(idx.reshape(-1).cpu().numpy())
        out = RansDecoder().decode_with_indexes(padded(string, len(inv)), inv, cdfs, lengths, offsets)
        # rANS decoding is the inverse of encoding only on valid strings: re-encoding (a few per
        # cent of the decode time) turns a damaged string or an encoder/decoder mismatch into an
        # error instead of a silently wrong image. Values the encoder would refuse are checked
        # first (re-encoding an overflowing escape value would never end).
        sym = np.array(out, dtype=np.int64)  # several times faster than torch.tensor(list)
        if (sym.max() > MAX_SYMBOL or sym.min() < -MAX_SYMBOL
                or RansEncoder().encode_with_indexes(out, inv, cdfs, lengths, offsets) != string):
            raise StringError("entropy-coded data is inconsistent (damaged stream, or distribution "
                              "parameters that differ from the encoder's)")
        sym = torch.from_numpy(sym).to(mean.device).reshape(mean.shape)
        return (sym + center).to(mean.dtype)


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
