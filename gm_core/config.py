"""Model configurations: every size in the codec comes from here, never from a literal."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


# Rate points of the variable-rate gain units: the lambdas of CompressAI's quality 1..6 ladder,
# which span roughly 0.1 to 1 bpp on Kodak for a mean-scale hyperprior.
DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483)


@dataclass(frozen=True)
class GMConfig:
    name: str
    N: int  # channels inside the analysis/synthesis transforms
    M: int  # latent channels of y
    Z: int  # hyper-latent channels of z
    psi: int  # channels of the hyperprior features fed to the entropy model
    d_model: int  # token width of the entropy model
    n_heads: int
    depth: int  # number of (inner-group, cross-group) mixer pairs
    mlp_ratio: float = 2.0
    window: int = 8  # inner-group attention window, in tokens per side (bounds memory)
    default_partition: str = "kc=4,grid=2x2"
    lambdas: tuple = field(default=DEFAULT_LAMBDAS)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GMConfig":
        d = dict(d)
        d["lambdas"] = tuple(d.get("lambdas", DEFAULT_LAMBDAS))
        return cls(**d)


CONFIGS: dict[str, GMConfig] = {
    # Trainable on a 2-core CPU; what ships by default.
    "tiny": GMConfig("tiny", N=128, M=192, Z=128, psi=192, d_model=128, n_heads=4, depth=2,
                     default_partition="slices=32+32+64+64,grid=2x2"),
    # Sized after the paper's GroupedMixer-Fast / GroupedMixer / GroupedMixer-Large
    # (36.4M .. 72.8M parameters in total).
    "fast": GMConfig("fast", N=192, M=320, Z=192, psi=384, d_model=384, n_heads=8, depth=6,
                     window=8, default_partition="slices=16+16+32+64+192,grid=2x2"),
    "base": GMConfig("base", N=192, M=320, Z=192, psi=384, d_model=448, n_heads=8, depth=8,
                     window=8, default_partition="slices=16+16+32+64+192,grid=2x2"),
    "large": GMConfig("large", N=192, M=320, Z=192, psi=512, d_model=512, n_heads=8, depth=10,
                      window=8, default_partition="slices=16+16+32+64+192,grid=2x2"),
}


def get_config(name: str) -> GMConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}") from None
