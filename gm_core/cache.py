"""ContextCache: the keys and values of every cross-group layer, one slot per coding step.

Only the cross-group mixers look across steps, so at decode step g the entropy model computes
Q/K/V for the new step's tokens alone, appends K/V to these buffers and attends over slots 0..g:
an LLM-style KV cache along the step axis. Buffers are preallocated for the whole image (G slots)
and reset per image.
"""
from __future__ import annotations

import torch


class ContextCache:
    def __init__(self, n_layers: int, n_tokens: int, n_heads: int, head_dim: int, max_steps: int,
                 dtype=torch.float32, device="cpu"):
        shape = (n_layers, n_tokens, n_heads, max_steps, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_steps = max_steps
        self.length = [0] * n_layers

    def reset(self) -> None:
        self.length = [0] * len(self.length)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store one or more new steps (k, v: tokens x heads x steps x head_dim); return all so far."""
        n = self.length[layer]
        s = k.shape[2]
        if n + s > self.max_steps:
            raise RuntimeError(f"context cache overflow: {n + s} steps > {self.max_steps} slots")
        self.k[layer, :, :, n:n + s] = k
        self.v[layer, :, :, n:n + s] = v
        self.length[layer] = n + s
        return self.k[layer, :, :, :n + s], self.v[layer, :, :, :n + s]

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2
