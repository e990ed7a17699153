"""Codec: image in, .gmx bytes out, and back; every call can return a Trace.

The Trace is the single source of what the app and the notebooks show: the real bits of the z
and y strings, what each group costs inside the y string, the model's estimated bits,
per-element bit maps, mean and scale maps, attention weights (only when asked for) and
per-stage and per-step timings.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import container
from .checkpoint import load_checkpoint
from .container import ContainerError, Header
from .entropy_coding import gaussian_likelihood, padded
from .latent_codec import group_sums
from .model import GroupedMixerModel
from .partition import GroupPartition

PAD = 64  # g_a downsamples by 16 and h_a by 4 more; the grid needs whole cells


@dataclass
class Trace:
    partition: GroupPartition
    image_size: tuple[int, int]  # (H, W) of the user's image
    padded_size: tuple[int, int]
    latent_shape: tuple[int, int]
    quality: float
    header_bytes: int
    z_bits: int  # real: the z string's length
    y_bits: int  # real: the y string's length, all groups and the rANS coder's final state
    group_bits: list[float]  # what each group costs in the y string (exact rANS cost), coding order
    group_est_bits: list[float]  # the model's -log2 likelihood of each group
    bits_map: np.ndarray  # (M, h, w) estimated bits of each latent element
    mean: np.ndarray  # (M, h, w)
    scale: np.ndarray  # (M, h, w)
    y_hat: np.ndarray  # (M, h, w)
    timings: dict[str, float]  # per stage, seconds
    step_s: list[float] = field(default_factory=list)  # entropy model per step (decode)
    rans_step_s: list[float] = field(default_factory=list)
    attention: list | None = None  # per layer: {"kind": "inner"|"cross", "weights": ndarray, ...}
    use_cache: bool | None = None
    device: str = "cpu"
    threads: int = 1

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + (self.z_bits + self.y_bits) // 8

    @property
    def state_bits(self) -> float:
        """The y string's bits not spent on any group: the rANS coder's final state, which the
        decoder reads first (32 to 64 bits)."""
        return self.y_bits - sum(self.group_bits)

    @property
    def num_pixels(self) -> int:
        return self.image_size[0] * self.image_size[1]

    @property
    def bpp(self) -> float:
        return self.total_bytes * 8 / self.num_pixels


def _pad(x: torch.Tensor) -> torch.Tensor:
    H, W = x.shape[-2:]
    ph, pw = (-H) % PAD, (-W) % PAD
    if ph or pw:
        # replicate needs the pad smaller than the side for reflect; replicate has no such limit
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def image_to_tensor(img: np.ndarray, device="cpu") -> torch.Tensor:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("expected an H x W x 3 uint8 image")
    return torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(device)


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    return (x[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy())


def _np(t):
    return t[0].detach().float().cpu().numpy()


def _attention_np(attn):
    if attn is None:
        return None
    out = []
    for layer in attn:
        d = {k: v for k, v in layer.items() if k != "weights"}
        d["weights"] = layer["weights"][0].float().cpu().numpy()
        out.append(d)
    return out


class Codec:
    def __init__(self, model: GroupedMixerModel, model_id: str, meta: dict | None = None):
        self.model = model.eval()
        self.model_id = model_id
        self.meta = meta or {}

    @classmethod
    def load(cls, checkpoint=None, device: str = "cpu") -> "Codec":
        model, mid, meta = load_checkpoint(checkpoint, device)
        return cls(model, mid, meta)

    @property
    def cfg(self):
        return self.model.cfg

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> "Codec":
        self.model.to(device)
        return self

    def partition(self, spec: str | GroupPartition | None = None) -> GroupPartition:
        if isinstance(spec, GroupPartition):
            if spec.M != self.cfg.M:
                raise ValueError(f"partition covers {spec.M} channels; this model has {self.cfg.M}")
            return spec
        return GroupPartition.parse(spec or self.cfg.default_partition, self.cfg.M)

    def default_quality(self) -> float:
        return float((self.model.num_rates - 1) // 2)

    # ------------------------------------------------------------------ encode
    def compress(self, img: np.ndarray, partition=None, quality: float | None = None,
                 want_attn: bool = False) -> tuple[bytes, Trace]:
        part = self.partition(partition)
        q = self.default_quality() if quality is None else float(quality)
        if not 0 <= q <= self.model.num_rates - 1:
            raise ValueError(f"quality must lie in 0..{self.model.num_rates - 1}")
        H, W = img.shape[:2]
        x = _pad(image_to_tensor(img, self.device))
        enc = self.model.compress(x, part, q, want_attn)
        header = Header(self.model_id, self.cfg.name, H, W, q, part)
        data = container.pack(header, enc["z_string"], enc["y_string"])
        header, _ = container.parse_header(data)
        bits = -torch.log2(gaussian_likelihood(enc["y_hat"], enc["mean"], enc["scale"]))
        trace = Trace(
            partition=part, image_size=(H, W), padded_size=tuple(x.shape[-2:]),
            latent_shape=enc["latent_shape"], quality=q, header_bytes=header.header_bytes,
            z_bits=8 * len(enc["z_string"]), y_bits=8 * len(enc["y_string"]), group_bits=enc["group_bits"],
            group_est_bits=group_sums(bits, part)[0].tolist(), bits_map=_np(bits),
            mean=_np(enc["mean"]), scale=_np(enc["scale"]), y_hat=_np(enc["y_hat"]),
            timings=enc["timings"], rans_step_s=enc["rans_step_s"],
            attention=_attention_np(enc["attention"]), device=str(self.device),
            threads=torch.get_num_threads())
        return data, trace

    # ------------------------------------------------------------------ decode
    def read_header(self, data: bytes) -> Header:
        header, _ = container.parse_header(data)
        return header

    def check_header(self, header: Header) -> None:
        if header.model_id != self.model_id:
            raise ContainerError(
                f"stream was made with other weights (model {header.config} id {header.model_id}); "
                f"the loaded checkpoint is {self.cfg.name} id {self.model_id}")
        if header.partition.M != self.cfg.M:
            raise ContainerError("stream partition does not match the model's latent channels")

    def decompress(self, data: bytes, use_cache: bool = True, want_attn: bool = False,
                   on_step=None) -> tuple[np.ndarray, Trace]:
        header, z_string, y_string = container.unpack(data)
        self.check_header(header)
        part = header.partition
        Hp, Wp = -(-header.height // PAD) * PAD, -(-header.width // PAD) * PAD
        latent_shape = (Hp // 16, Wp // 16)
        z_shape = (Hp // 64, Wp // 64)
        try:
            z_padded = padded(z_string, self.cfg.Z * z_shape[0] * z_shape[1])  # see padded()
            dec = self.model.decompress(z_padded, z_shape, y_string, latent_shape, part,
                                        header.quality, use_cache, want_attn, on_step)
        except (RuntimeError, ValueError, IndexError) as e:  # a damaged string that passed the CRC
            raise ContainerError(f"the stream could not be entropy-decoded ({e})") from None
        x_hat = dec["x_hat"][..., :header.height, :header.width]
        bits = -torch.log2(gaussian_likelihood(dec["y_hat"], dec["mean"], dec["scale"]))
        attn = None
        if want_attn and dec["attention_steps"]:
            attn = [{"step": g, "layers": _attention_np(a)} for g, a in enumerate(dec["attention_steps"])]
        trace = Trace(
            partition=part, image_size=(header.height, header.width), padded_size=(Hp, Wp),
            latent_shape=latent_shape, quality=header.quality, header_bytes=header.header_bytes,
            z_bits=8 * len(z_string), y_bits=8 * len(y_string), group_bits=dec["group_bits"],
            group_est_bits=group_sums(bits, part)[0].tolist(), bits_map=_np(bits),
            mean=_np(dec["mean"]), scale=_np(dec["scale"]), y_hat=_np(dec["y_hat"]),
            timings=dec["timings"], step_s=dec["entropy_step_s"], rans_step_s=dec["rans_step_s"],
            attention=attn, use_cache=use_cache, device=str(self.device),
            threads=torch.get_num_threads())
        return tensor_to_image(x_hat), trace
