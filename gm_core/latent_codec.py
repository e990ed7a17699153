"""Latent codecs: each owns forward (training likelihoods), compress and decompress.

``HyperpriorLatentCodec`` codes z with CompressAI's EntropyBottleneck and turns z_hat into the
features psi; ``GroupedMixerLatentCodec`` codes y group by group with the GroupedMixer entropy
model, all groups in one rANS string.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck

from .config import GMConfig
from .entropy_coding import (SCALE_MIN, StreamDecoder, StreamEncoder, gaussian_likelihood,
                             gaussian_tables)
from .mixer import GroupedMixer
from .partition import GroupPartition, from_phases, to_phases
from .transforms import hyper_analysis, hyper_synthesis


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class HyperpriorLatentCodec(nn.Module):
    def __init__(self, cfg: GMConfig):
        super().__init__()
        self.h_a = hyper_analysis(cfg)
        self.entropy_bottleneck = EntropyBottleneck(cfg.Z)
        self.h_s = hyper_synthesis(cfg)

    def forward(self, y, gain, inv_gain):
        """Training: psi and the likelihoods of z (noise-quantised)."""
        z = self.h_a(y) * gain
        z_hat, z_lik = self.entropy_bottleneck(z)
        return self.h_s(z_hat * inv_gain), z_lik

    def compress(self, y, gain):
        z = self.h_a(y) * gain
        string = self.entropy_bottleneck.compress(z)[0]
        return string, tuple(z.shape[-2:])

    def decompress(self, string: bytes, z_shape, inv_gain, dtype=torch.float64):
        """psi from the z string; runs h_s in ``dtype`` (float64 when coding: see codec.py)."""
        z_hat = self.entropy_bottleneck.decompress([string], z_shape)
        h_s = self.h_s
        return h_s(z_hat.to(dtype) * inv_gain.to(dtype)), z_hat


class GroupedMixerLatentCodec(nn.Module):
    def __init__(self, cfg: GMConfig):
        super().__init__()
        self.cfg = cfg
        self.mixer = GroupedMixer(cfg)

    # ------------------------------------------------------------------ parameters
    def params(self, y_hat, psi, part: GroupPartition, want_attn: bool = False):
        """Teacher-forced: every group's (mean, scale) in one pass, assembled as (B, M, h, w)."""
        grid = part.grid
        yp = to_phases(y_hat, grid)
        psi_tok = self.mixer.project_psi(to_phases(psi, grid))
        x = self.mixer.embed(yp, psi_tok, part, range(part.num_groups))
        raw, attn = self.mixer.mix(x, want_attn=want_attn)
        mean, scale = self.mixer.split_params(raw, SCALE_MIN)  # (B, G, hg, wg, M)
        return assemble(mean, part), assemble(scale, part), attn

    def forward(self, y, psi, part: GroupPartition, noise: bool = True):
        """Training: y_hat for the decoder (straight-through rounding) and the likelihoods of y."""
        y_hat = ste_round(y)
        mean, scale, _ = self.params(y_hat, psi, part)
        y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5) if noise else y_hat
        return y_hat, gaussian_likelihood(y_tilde, mean, scale)

    # ------------------------------------------------------------------ coding
    def compress(self, y_hat, psi, part: GroupPartition, want_attn: bool = False):
        """y_hat (1, M, h, w) integers -> the rANS string of all groups (in coding order), and
        the trace: what each group costs in it (``group_bits``), parameters, timings."""
        t0 = time.perf_counter()
        mean, scale, attn = self.params(y_hat, psi, part, want_attn)
        t_params = time.perf_counter() - t0
        yp, mp, sp = (to_phases(t, part.grid) for t in (y_hat, mean, scale))
        stream = StreamEncoder(gaussian_tables())
        group_bits, rans_t = [], []
        for s, p in part.order:
            a, b = part.slice_bounds[s]
            t0 = time.perf_counter()
            group_bits.append(stream.add(yp[:, p, a:b], mp[:, p, a:b], sp[:, p, a:b]))
            rans_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        string = stream.flush()  # BufferedRansEncoder codes every queued symbol here
        rans_t[-1] += time.perf_counter() - t0
        return string, {"mean": mean, "scale": scale, "attention": attn, "group_bits": group_bits,
                        "params_s": t_params, "rans_step_s": rans_t}

    def decompress(self, string: bytes, psi, part: GroupPartition, latent_shape, use_cache: bool = True,
                   want_attn: bool = False, on_step=None):
        """Decode group by group. With the cache each step runs only its own tokens; without it,
        step g re-runs the whole prefix 0..g (the same result, about G/2 times the work)."""
        B = psi.shape[0]
        M = self.cfg.M
        h, w = latent_shape
        kh, kw = part.grid
        hg, wg = h // kh, w // kw
        yp = psi.new_zeros(B, kh * kw, M, hg, wg)
        mp, sp = torch.zeros_like(yp), torch.zeros_like(yp)
        psi_tok = self.mixer.project_psi(to_phases(psi, part.grid))
        cache = self.mixer.new_cache(B * hg * wg, part.num_groups, psi.dtype, psi.device) if use_cache else None
        stream = StreamDecoder(gaussian_tables(), string, B * M * h * w)
        step_s, rans_s, attn_steps, group_bits = [], [], [], []
        for g, (s, p) in enumerate(part.order):
            a, b = part.slice_bounds[s]
            t0 = time.perf_counter()
            steps = range(g, g + 1) if use_cache else range(0, g + 1)
            x = self.mixer.embed(yp, psi_tok, part, steps)
            raw, attn = self.mixer.mix(x, cache=cache, want_attn=want_attn)
            mean, scale = self.mixer.split_params(raw[:, -1], SCALE_MIN)  # (B, hg, wg, M)
            mean = mean[..., a:b].permute(0, 3, 1, 2)
            scale = scale[..., a:b].permute(0, 3, 1, 2)
            t1 = time.perf_counter()
            yp[:, p, a:b], bits = stream.decode(mean, scale)
            group_bits.append(bits)
            mp[:, p, a:b], sp[:, p, a:b] = mean, scale
            t2 = time.perf_counter()
            step_s.append(t1 - t0)
            rans_s.append(t2 - t1)
            if want_attn:
                attn_steps.append(attn)
            if on_step is not None:
                on_step(g, from_phases(yp, part.grid))
        t0 = time.perf_counter()
        stream.finish()
        rans_s[-1] += time.perf_counter() - t0
        return from_phases(yp, part.grid), {"group_bits": group_bits,
            "mean": from_phases(mp, part.grid), "scale": from_phases(sp, part.grid),
            "entropy_step_s": step_s, "rans_step_s": rans_s,
            "attention_steps": attn_steps if want_attn else None}


def assemble(t: torch.Tensor, part: GroupPartition) -> torch.Tensor:
    """(B, G, hg, wg, M) per-step predictions -> (B, M, h, w), each element from its own step."""
    B, G, hg, wg, M = t.shape
    idx = part.step_of().to(t.device).t()  # (M, P)
    t = t.permute(0, 4, 1, 2, 3)  # (B, M, G, hg, wg)
    idx = idx.view(1, M, -1, 1, 1).expand(B, M, idx.shape[1], hg, wg)
    out = torch.gather(t, 2, idx)  # (B, M, P, hg, wg)
    return from_phases(out.permute(0, 2, 1, 3, 4), part.grid)


def group_sums(t: torch.Tensor, part: GroupPartition) -> torch.Tensor:
    """(B, M, h, w) -> (B, G): the sum over each group's elements, in coding order."""
    tp = to_phases(t, part.grid)  # (B, P, M, hg, wg)
    out = []
    for s, p in part.order:
        a, b = part.slice_bounds[s]
        out.append(tp[:, p, a:b].sum(dim=(1, 2, 3)))
    return torch.stack(out, 1)
