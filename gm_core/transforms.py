"""Analysis/synthesis transforms and the hyperprior transforms, built from CompressAI layers."""
from __future__ import annotations

import torch.nn as nn
from compressai.layers import GDN
from compressai.models.utils import conv, deconv

from .config import GMConfig


def analysis_transform(cfg: GMConfig) -> nn.Module:
    """x (B,3,H,W) -> y (B,M,H/16,W/16)."""
    N, M = cfg.N, cfg.M
    return nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))


def synthesis_transform(cfg: GMConfig) -> nn.Module:
    N, M = cfg.N, cfg.M
    return nn.Sequential(deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
                         deconv(N, N), GDN(N, inverse=True), deconv(N, 3))


def hyper_analysis(cfg: GMConfig) -> nn.Module:
    """y (B,M,h,w) -> z (B,Z,h/4,w/4)."""
    return nn.Sequential(conv(cfg.M, cfg.N, 3, 1), nn.LeakyReLU(inplace=True),
                         conv(cfg.N, cfg.N), nn.LeakyReLU(inplace=True), conv(cfg.N, cfg.Z))


def hyper_synthesis(cfg: GMConfig) -> nn.Module:
    """z_hat -> psi (B,psi,h,w): hyperprior features for the entropy model."""
    return nn.Sequential(deconv(cfg.Z, cfg.N), nn.LeakyReLU(inplace=True),
                         deconv(cfg.N, cfg.N), nn.LeakyReLU(inplace=True),
                         conv(cfg.N, cfg.psi, 3, 1))
