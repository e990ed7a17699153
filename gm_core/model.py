"""GroupedMixerModel: transforms + hyperprior + GroupedMixer entropy model + gain units.

One checkpoint serves every rate point (per-channel gain units, interpolated between the trained
lambdas) and every partition (the entropy model is partition-agnostic, trained on partitions
drawn at random per batch).

Coding runs the entropy side (h_s and the GroupedMixer) in float64 on a private copy: the
decoder re-computes every distribution parameter on another float path (step by step, with or
without the cache, other thread counts or devices), and float64 makes a flip of a CDF-table index
between encoder and decoder vanishingly unlikely (see README, "Determinism").
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .config import GMConfig
from .latent_codec import GroupedMixerLatentCodec, HyperpriorLatentCodec, group_sums
from .partition import GroupPartition
from . import synthesis
from .synthesis import run_synthesis
from .timing import StageTimer
from .transforms import analysis_transform, synthesis_transform


class GroupedMixerModel(nn.Module):
    # Parameters with one row per rate point (first dimension = len(cfg.lambdas)).
    RATE_TABLES = ("log_gain", "log_inv_gain", "log_hyper_gain", "log_hyper_inv_gain")

    def __init__(self, cfg: GMConfig):
        super().__init__()
        self.cfg = cfg
        self.g_a = analysis_transform(cfg)
        self.g_s = synthesis_transform(cfg)
        self.hyper = HyperpriorLatentCodec(cfg)
        self.latent = GroupedMixerLatentCodec(cfg)
        lam = torch.tensor(cfg.lambdas, dtype=torch.float32)
        ref = lam[len(lam) // 2]
        # High-rate theory: the best quantiser step scales as lambda^-1/2, so start there.
        log_gain = 0.5 * torch.log(lam / ref)
        self.log_gain = nn.Parameter(log_gain[:, None].repeat(1, cfg.M))
        self.log_inv_gain = nn.Parameter(-log_gain[:, None].repeat(1, cfg.M))
        self.log_hyper_gain = nn.Parameter(torch.zeros(len(lam), cfg.Z))
        self.log_hyper_inv_gain = nn.Parameter(torch.zeros(len(lam), cfg.Z))
        self._coding: nn.Module | None = None
        self._g_s_cpu: nn.Module | None = None

    # ------------------------------------------------------------------ rate points
    @property
    def num_rates(self) -> int:
        return len(self.cfg.lambdas)

    def lmbda(self, quality: torch.Tensor) -> torch.Tensor:
        """Lambda at a (possibly fractional) quality, log-linearly interpolated."""
        lam = torch.log(torch.tensor(self.cfg.lambdas, device=quality.device))
        return torch.exp(self._interp(lam[:, None], quality)[:, 0])

    def _interp(self, table: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        q = quality.to(table.dtype).clamp(0, self.num_rates - 1)
        lo = q.floor().long().clamp(max=self.num_rates - 2) if self.num_rates > 1 else q.long() * 0
        t = (q - lo.to(q.dtype))[:, None]
        hi = (lo + 1).clamp(max=self.num_rates - 1)
        return table[lo] * (1 - t) + table[hi] * t

    def gains(self, quality: torch.Tensor):
        """exp-interpolated gains for each sample: (B, C, 1, 1) each."""
        g = self._gain
        return (g(self.log_gain, quality), g(self.log_inv_gain, quality),
                g(self.log_hyper_gain, quality), g(self.log_hyper_inv_gain, quality))

    def _gain(self, log_table: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        return torch.exp(self._interp(log_table, quality))[:, :, None, None]

    # ------------------------------------------------------------------ training
    def forward(self, x, part: GroupPartition, quality: torch.Tensor, amp: torch.dtype | None = None):
        """Training pass. ``amp`` (e.g. torch.bfloat16) runs the pixel-domain transforms g_a and
        g_s, nearly all of the FLOPs, in that precision under autocast; the entropy side (h_a,
        h_s, the mixer, the likelihoods) stays float32, because bits are sums of logs of small
        probabilities that bfloat16's 8-bit mantissa would blur."""
        gain, inv_gain, hgain, hinv = self.gains(quality)
        with _autocast(x.device.type, amp):
            y = self.g_a(x)
        y = y.float() * gain
        psi, z_lik = self.hyper(y, hgain, hinv)
        y_hat, y_lik = self.latent(y, psi, part)
        with _autocast(x.device.type, amp):
            x_hat = self.g_s(y_hat * inv_gain)
        x_hat = x_hat.float()
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik},
                "group_bits": group_sums(-torch.log2(y_lik), part)}

    def aux_loss(self):
        return self.hyper.entropy_bottleneck.loss()

    # ------------------------------------------------------------------ coding
    def update(self, force: bool = True) -> None:
        """Rebuild the EntropyBottleneck's CDF tables (after training, before coding)."""
        self.hyper.entropy_bottleneck.update(force=force)
        self._coding = None
        self._g_s_cpu = None

    def coding_modules(self) -> nn.Module:
        """float64 copies of the modules that compute distribution parameters."""
        # GELU tails underflow to subnormal float64 numbers, which run two orders of magnitude
        # slower on x86; flushing them to zero changes values by less than 1e-307.
        torch.set_flush_denormal(True)
        if self._coding is None:
            m = nn.ModuleDict({"h_s": copy.deepcopy(self.hyper.h_s),
                               "latent": copy.deepcopy(self.latent)}).double()
            m.eval()
            object.__setattr__(self, "_coding", m)
        return self._coding

    def decoding_synthesis(self) -> nn.Module:
        """g_s as decoding runs it: on the CPU, even for a model on CUDA.

        y_hat is bit-exact on every device (float64 entropy side), but cuDNN and oneDNN sum a
        convolution in different orders, which moves rare pixels by one level (seen on an H200:
        up to 1 level on every Kodak image). Running g_s on the CPU, with oneDNN on one thread
        (synthesis.py), makes the pixels device- and thread-invariant. ``synthesis.DETERMINISTIC
        = False`` keeps g_s where the model is: much faster on a GPU, pixels exact to +-1 level.
        """
        if not synthesis.DETERMINISTIC or next(self.g_s.parameters()).device.type == "cpu":
            return self.g_s
        if self._g_s_cpu is None:
            object.__setattr__(self, "_g_s_cpu", copy.deepcopy(self.g_s).cpu().eval())
        return self._g_s_cpu

    def _synthesize(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        """Pixels from the decoded latent. The inverse gain is computed where g_s runs, from the
        same float32 parameters, so a CUDA decoder feeds g_s the very values a CPU decoder does
        (exp on a GPU may differ from the CPU's in the last bit)."""
        g_s = self.decoding_synthesis()
        dev = next(g_s.parameters()).device
        inv_gain = self._gain(self.log_inv_gain.detach().to(dev), torch.tensor([float(quality)], device=dev))
        y = y_hat.to(dev).float() * inv_gain
        return run_synthesis(g_s, y).clamp_(0, 1).to(y_hat.device)

    def _apply(self, fn, *args, **kwargs):  # .to(device) etc. must refresh the float64 copy
        object.__setattr__(self, "_coding", None)
        object.__setattr__(self, "_g_s_cpu", None)
        return super()._apply(fn, *args, **kwargs)

    @torch.inference_mode()
    def compress(self, x, part: GroupPartition, quality: float, want_attn: bool = False):
        """x (1,3,H,W) in [0,1], H and W multiples of 64 -> the z and y strings and what the
        trace shows."""
        timer = StageTimer(x.device)
        q = torch.tensor([float(quality)], device=x.device)
        gain, _, hgain, hinv = self.gains(q)
        cm = self.coding_modules()
        with timer.stage("analysis"):
            y = self.g_a(x) * gain
        with timer.stage("hyper"):
            z_string, z_shape = self.hyper.compress(y, hgain)
            z_hat = self.hyper.entropy_bottleneck.decompress([z_string], z_shape)
            psi = cm["h_s"](z_hat.double() * hinv.double())
        y_hat = torch.round(y).double()
        with timer.stage("entropy_model+rans"):
            y_string, info = cm["latent"].compress(y_hat, psi, part, want_attn)
        timer.stages["entropy_model"] = info["params_s"]
        timer.stages["rans"] = sum(info["rans_step_s"])
        del timer.stages["entropy_model+rans"]
        return {"z_string": z_string, "z_shape": z_shape, "y_string": y_string,
                "latent_shape": tuple(y.shape[-2:]), "y_hat": y_hat, "z_hat": z_hat, **info,
                "timings": timer.stages}

    @torch.inference_mode()
    def decompress(self, z_string, z_shape, y_string, latent_shape, part: GroupPartition,
                   quality: float, use_cache: bool = True, want_attn: bool = False, on_step=None):
        dev = next(self.parameters()).device
        timer = StageTimer(dev)
        q = torch.tensor([float(quality)], device=dev)
        _, _, _, hinv = self.gains(q)
        cm = self.coding_modules()
        with timer.stage("hyper"):
            z_hat = self.hyper.entropy_bottleneck.decompress([z_string], z_shape)
            psi = cm["h_s"](z_hat.double() * hinv.double())
        with timer.stage("entropy_model+rans"):
            y_hat, info = cm["latent"].decompress(y_string, psi, part, latent_shape, use_cache,
                                                  want_attn, on_step=on_step)
        timer.stages["entropy_model"] = sum(info["entropy_step_s"])
        timer.stages["rans"] = sum(info["rans_step_s"])
        del timer.stages["entropy_model+rans"]
        with timer.stage("synthesis"):  # device- and thread-invariant, banded: see synthesis.py
            x_hat = self._synthesize(y_hat, quality)
        return {"x_hat": x_hat, "y_hat": y_hat, **info, "timings": timer.stages}

    @torch.inference_mode()
    def synthesize(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        dev = next(self.parameters()).device
        return self._synthesize(y_hat.to(dev), quality)


def _autocast(device_type: str, amp: torch.dtype | None):
    """Autocast to ``amp`` for the pixel transforms; a no-op context when ``amp`` is None."""
    return torch.autocast(device_type, dtype=amp or torch.bfloat16, enabled=amp is not None)


def parameter_counts(model: GroupedMixerModel) -> dict[str, int]:
    def n(m):
        return sum(p.numel() for p in m.parameters())
    mixer = model.latent.mixer
    inner = sum(n(b) for b in mixer.blocks[0::2])
    cross = sum(n(b) for b in mixer.blocks[1::2])
    counts = {
        "analysis (g_a)": n(model.g_a),
        "synthesis (g_s)": n(model.g_s),
        "hyper analysis (h_a)": n(model.hyper.h_a),
        "entropy bottleneck (z)": n(model.hyper.entropy_bottleneck),
        "hyper synthesis (h_s)": n(model.hyper.h_s),
        "mixer embeddings + head": n(mixer) - inner - cross,
        "inner-group mixers": inner,
        "cross-group mixers": cross,
        "gain units": model.log_gain.numel() * 2 + model.log_hyper_gain.numel() * 2,
    }
    counts["total"] = n(model)
    return counts


def bpp_of(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    """Estimated bits per pixel of each sample from the likelihoods."""
    return sum((-torch.log2(lik)).flatten(1).sum(1) for lik in likelihoods.values()) / num_pixels


__all__ = ["GroupedMixerModel", "parameter_counts", "bpp_of"]
