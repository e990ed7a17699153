"""The GroupedMixer entropy model: group-wise token-mixers with weights shared by all groups.

Tokens are indexed by (step g, position n in the group's sub-lattice). With a one-step shift, as
in a GPT, the token of step g carries the decoded values of the group coded at step g-1 (step 0
carries a learned start token), the hyperprior features at its position, and embeddings that say
which channels and phase it must predict and which ones its input values came from. Its output is
the Gaussian mean and scale of all M channels; the partition keeps those of the current group.

Blocks alternate an inner-group mixer (attention among the tokens of one step, no mask, in
windows so memory stays bounded) and a cross-group mixer (causal attention along the step axis at
each position), so step g can see every position of every earlier group and nothing else.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cache import ContextCache
from .config import GMConfig
from .partition import NUM_PHASE_IDS, GroupPartition, phase_id


class MLP(nn.Module):
    def __init__(self, d: int, ratio: float):
        super().__init__()
        self.fc1 = nn.Linear(d, int(d * ratio))
        self.fc2 = nn.Linear(int(d * ratio), d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def _attention_weights(q, k, mask=None):
    """Softmax(QK^T/sqrt(d)): computed explicitly only when a trace asks for it."""
    a = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        a = a.masked_fill(~mask, float("-inf"))
    return a.softmax(-1)


class DepthwiseConv3x3(nn.Conv2d):
    """3x3 depthwise convolution on channel-last token grids (B, H, W, d).

    PyTorch's depthwise conv2d has no fast float64 kernel on the CPU (about 25x slower than
    float32), so the float64 coding path uses nine shifted multiply-adds instead.
    """

    def __init__(self, d: int):
        super().__init__(d, d, 3, padding=1, groups=d)

    def forward(self, x):
        if x.dtype != torch.float64:
            return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        H, W = x.shape[1:3]
        p = F.pad(x, (0, 0, 1, 1, 1, 1))
        w = self.weight[:, 0]  # (d, 3, 3)
        out = p[:, 0:H, 0:W] * w[:, 0, 0]
        for i in range(3):
            for j in range(3):
                if i or j:
                    out = out + p[:, i:i + H, j:j + W] * w[:, i, j]
        return out + self.bias


class InnerGroupMixer(nn.Module):
    """Attention among the tokens of one step, in non-overlapping windows; no causal mask.

    A depthwise 3x3 convolution on the token grid (a conditional positional encoding) gives the
    attention the spatial layout and carries information across window borders.
    """

    def __init__(self, d: int, n_heads: int, window: int, mlp_ratio: float):
        super().__init__()
        self.n_heads, self.window = n_heads, window
        self.pos = DepthwiseConv3x3(d)
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = MLP(d, mlp_ratio)

    def forward(self, x, want_attn: bool = False):
        B, S, H, W, d = x.shape
        x = x + self.pos(x.reshape(B * S, H, W, d)).reshape(B, S, H, W, d)

        wh, ww = min(self.window, H), min(self.window, W)
        ph, pw = (-H) % wh, (-W) % ww
        h = self.norm1(x).reshape(B * S, H, W, d)
        if ph or pw:
            h = F.pad(h, (0, 0, 0, pw, 0, ph))
        Hp, Wp = H + ph, W + pw
        nh, nw = Hp // wh, Wp // ww
        # (B*S, nh, wh, nw, ww, d) -> (B*S*nh*nw, wh*ww, d)
        h = h.reshape(B * S, nh, wh, nw, ww, d).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, d)
        q, k, v = self.qkv(h).reshape(h.shape[0], wh * ww, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        mask = None
        if ph or pw:  # padded keys must not be attended to
            valid = torch.zeros(Hp, Wp, dtype=torch.bool, device=x.device)
            valid[:H, :W] = True
            valid = valid.reshape(nh, wh, nw, ww).permute(0, 2, 1, 3).reshape(nh * nw, 1, 1, wh * ww)
            mask = valid.repeat(B * S, 1, 1, 1)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        attn = _attention_weights(q, k, mask) if want_attn else None
        o = o.transpose(1, 2).reshape(-1, wh * ww, d)
        o = o.reshape(B * S, nh, nw, wh, ww, d).permute(0, 1, 3, 2, 4, 5).reshape(B * S, Hp, Wp, d)
        o = o[:, :H, :W].reshape(B, S, H, W, d)
        x = x + self.proj(o)
        x = x + self.mlp(self.norm2(x))
        if want_attn:
            # (B, S, windows, heads, wh*ww, wh*ww) with the window geometry to map it back
            attn = attn.reshape(B, S, nh * nw, self.n_heads, wh * ww, wh * ww)
            return x, {"weights": attn, "window": (wh, ww), "windows": (nh, nw), "grid": (H, W)}
        return x, None


class CrossGroupMixer(nn.Module):
    """Causal attention along the step axis at every position: step g sees steps 0..g."""

    def __init__(self, d: int, n_heads: int, mlp_ratio: float):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = MLP(d, mlp_ratio)

    def forward(self, x, cache: ContextCache | None = None, layer: int = 0, want_attn: bool = False):
        B, S, H, W, d = x.shape
        h = self.norm1(x).permute(0, 2, 3, 1, 4).reshape(B * H * W, S, d)
        q, k, v = self.qkv(h).reshape(B * H * W, S, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        if cache is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=S > 1)
            mask = torch.ones(S, S, dtype=torch.bool, device=x.device).tril() if want_attn else None
        else:
            # New steps attend to every cached step and causally among themselves.
            start = cache.length[layer]
            k, v = cache.append(layer, k, v)
            mask = None
            if S > 1:
                mask = torch.ones(S, start + S, dtype=torch.bool, device=x.device).tril(start)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        attn = _attention_weights(q, k, mask) if want_attn else None
        o = o.transpose(1, 2).reshape(B, H, W, S, d).permute(0, 3, 1, 2, 4)
        x = x + self.proj(o)
        x = x + self.mlp(self.norm2(x))
        if want_attn:
            # (B, H, W, heads, S_query, S_key)
            return x, {"weights": attn.reshape(B, H, W, self.n_heads, *attn.shape[-2:])}
        return x, None


class GroupedMixer(nn.Module):
    """Predicts (mean, scale) of every group from the groups before it and the hyperprior."""

    def __init__(self, cfg: GMConfig):
        super().__init__()
        M, d = cfg.M, cfg.d_model
        self.cfg = cfg
        self.in_values = nn.Linear(M, d)
        self.in_prev_mask = nn.Linear(M, d, bias=False)
        self.in_cur_mask = nn.Linear(M, d, bias=False)
        self.in_psi = nn.Linear(cfg.psi, d, bias=False)
        self.cur_phase = nn.Embedding(NUM_PHASE_IDS, d)
        self.prev_phase = nn.Embedding(NUM_PHASE_IDS + 1, d)  # last id: the start token
        self.start = nn.Parameter(torch.zeros(d))
        blocks = []
        for _ in range(cfg.depth):
            blocks.append(InnerGroupMixer(d, cfg.n_heads, cfg.window, cfg.mlp_ratio))
            blocks.append(CrossGroupMixer(d, cfg.n_heads, cfg.mlp_ratio))
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 2 * M)
        nn.init.normal_(self.start, std=0.02)

    @property
    def n_cross(self) -> int:
        return self.cfg.depth

    def new_cache(self, n_tokens: int, max_steps: int, dtype, device) -> ContextCache:
        return ContextCache(self.n_cross, n_tokens, self.cfg.n_heads, self.cfg.d_model // self.cfg.n_heads,
                            max_steps, dtype=dtype, device=device)

    # ------------------------------------------------------------------ tokens
    def step_constants(self, part: GroupPartition, steps: range) -> torch.Tensor:
        """(S, d): what each step predicts and where its input values came from."""
        masks = part.channel_masks().to(self.start)
        zeros = torch.zeros(part.M).to(self.start)
        cur_m, prev_m, cur_id, prev_id = [], [], [], []
        for g in steps:
            s, p = part.order[g]
            cur_m.append(masks[s])
            cur_id.append(phase_id(part.grid, p))
            if g == 0:
                prev_m.append(zeros)
                prev_id.append(NUM_PHASE_IDS)
            else:
                ps, pp = part.order[g - 1]
                prev_m.append(masks[ps])
                prev_id.append(phase_id(part.grid, pp))
        dev = self.start.device
        c = (self.in_cur_mask(torch.stack(cur_m)) + self.in_prev_mask(torch.stack(prev_m))
             + self.cur_phase(torch.tensor(cur_id, device=dev))
             + self.prev_phase(torch.tensor(prev_id, device=dev)))
        if steps.start == 0:
            c = c.clone()
            c[0] = c[0] + self.start
        return c

    def embed(self, yp: torch.Tensor, psi_tok: torch.Tensor, part: GroupPartition, steps: range):
        """Tokens for the given steps.

        yp: (B, P, M, hg, wg) decoded latent by phase (only groups before each step are read);
        psi_tok: (B, P, hg, wg, d) projected hyperprior features by phase.
        Returns (B, S, hg, wg, d).
        """
        masks = part.channel_masks().to(yp)
        vals, psis = [], []
        for g in steps:
            s, p = part.order[g]
            psis.append(psi_tok[:, p])
            if g == 0:
                vals.append(torch.zeros_like(yp[:, 0]))
            else:
                ps, pp = part.order[g - 1]
                vals.append(yp[:, pp] * masks[ps].view(1, -1, 1, 1))
        v = torch.stack(vals, 1).permute(0, 1, 3, 4, 2)  # (B, S, hg, wg, M)
        x = self.in_values(v) + torch.stack(psis, 1)
        return x + self.step_constants(part, steps).view(1, len(steps), 1, 1, -1)

    def project_psi(self, psi_phases: torch.Tensor) -> torch.Tensor:
        """(B, P, C, hg, wg) -> (B, P, hg, wg, d)."""
        return self.in_psi(psi_phases.permute(0, 1, 3, 4, 2))

    # ------------------------------------------------------------------ mixing
    def mix(self, x, cache: ContextCache | None = None, want_attn: bool = False):
        """Run the blocks; returns raw (B, S, hg, wg, 2M) parameters and the attention trace."""
        attn = [] if want_attn else None
        layer = 0
        for blk in self.blocks:
            if isinstance(blk, CrossGroupMixer):
                x, a = blk(x, cache=cache, layer=layer, want_attn=want_attn)
                layer += 1
            else:
                x, a = blk(x, want_attn=want_attn)
            if want_attn:
                attn.append({"kind": "cross" if isinstance(blk, CrossGroupMixer) else "inner", **a})
        return self.head(self.norm(x)), attn

    @staticmethod
    def split_params(raw: torch.Tensor, scale_bound: float):
        """raw (..., 2M) -> mean, scale with a smooth lower bound on the scale."""
        mean, s = raw.chunk(2, dim=-1)
        return mean, scale_bound + F.softplus(s)
