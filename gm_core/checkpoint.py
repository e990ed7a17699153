"""Checkpoints: safetensors with the config and training facts in the header, loaded safely.

A checkpoint's model id is a hash of its tensors; the .gmx header carries it, so a stream made
with other weights is refused instead of decoding to garbage.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .config import GMConfig, get_config
from .model import GroupedMixerModel

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "gmx_tiny.safetensors"
FORMAT = "gmx-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, unreadable or not matching its config."""


def model_id(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def _resize_entropy_buffers(model: GroupedMixerModel, state: dict) -> None:
    # The EntropyBottleneck's CDF buffers are empty until update(); give them the stored shapes.
    eb = model.hyper.entropy_bottleneck
    prefix = "hyper.entropy_bottleneck."
    for name in ("_quantized_cdf", "_offset", "_cdf_length"):
        key = prefix + name
        if key in state:
            getattr(eb, name).resize_(state[key].shape)


def load_state(model: GroupedMixerModel, state: dict, strict: bool = True) -> None:
    _resize_entropy_buffers(model, state)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0:3]
        raise CheckpointError("checkpoint does not match its config: " + " ".join(first)) from None
    model.update(force=False) if model.hyper.entropy_bottleneck._offset.numel() == 0 else None
    object.__setattr__(model, "_coding", None)


def save_checkpoint(model: GroupedMixerModel, path: str | Path, meta: dict | None = None) -> str:
    """Write weights (with up-to-date CDF tables) and metadata; returns the model id."""
    model.update(force=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    info = {"format": FORMAT, "config": json.dumps(model.cfg.to_dict()),
            "meta": json.dumps(meta or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=info)
    return model_id(state)


def read_metadata(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({e})") from None
    if md.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a GroupedMixer checkpoint (format {md.get('format')!r})")
    try:
        return {"config": GMConfig.from_dict(json.loads(md["config"])),
                "meta": json.loads(md.get("meta", "{}"))}
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a broken header: {e}") from None


def load_checkpoint(path: str | Path | None = None, device: str = "cpu"):
    """-> (model in eval mode, model id, metadata)."""
    path = Path(path or DEFAULT_CHECKPOINT)
    md = read_metadata(path)
    cfg = md["config"]
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    model = GroupedMixerModel(cfg)
    load_state(model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.eval().to(device)
    return model, model_id(state), md["meta"]


def random_model(config: str = "tiny", seed: int = 0) -> tuple[GroupedMixerModel, str]:
    """An untrained model, ready to code (tests and latency benchmarks)."""
    torch.manual_seed(seed)
    model = GroupedMixerModel(get_config(config)).eval()
    model.update(force=True)
    return model, model_id(model.state_dict())
