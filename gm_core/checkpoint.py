"""Checkpoints: safetensors with the config and training facts in the header, loaded safely.

A checkpoint's model id is a hash of its tensors; the .gmx header carries it, so a stream made
with other weights is refused instead of decoding to garbage.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .config import GMConfig, get_config
from .model import GroupedMixerModel
from .partition import GroupPartition, PartitionError

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


def _mismatch(model: GroupedMixerModel, state: dict) -> str:
    """One line naming missing, unexpected and wrongly shaped tensors ('' if none)."""
    own = model.state_dict()

    def some(keys):
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} is {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} for the config"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing tensor(s) ({some(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensor(s) ({some(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} size mismatch(es) ({some(shapes)})")
    return "; ".join(parts)


def load_state(model: GroupedMixerModel, state: dict, strict: bool = True) -> None:
    _resize_entropy_buffers(model, state)
    if strict and (problem := _mismatch(model, state)):
        raise CheckpointError("checkpoint does not match its config: " + problem)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise CheckpointError("checkpoint does not match its config: " + first) from None
    model.update(force=False) if model.hyper.entropy_bottleneck._offset.numel() == 0 else None
    object.__setattr__(model, "_coding", None)


def rate_point_rows(have: tuple, want: tuple) -> list[int]:
    """Indices into ``have`` (a checkpoint's lambdas) of each lambda in ``want``; a
    CheckpointError naming the available ones if any is missing."""
    rows = []
    for lam in want:
        hit = [i for i, h in enumerate(have) if abs(h - lam) <= 1e-6 * max(abs(h), 1e-12)]
        if not hit:
            raise CheckpointError(f"lambda {lam:g} is not a rate point of this checkpoint "
                                  f"(it has {', '.join(f'{h:g}' for h in have)})")
        rows.append(hit[0])
    return rows


def select_rate_points(model: GroupedMixerModel, lambdas: tuple) -> tuple[GroupedMixerModel, list[int]]:
    """A copy of ``model`` keeping only the rate points whose lambdas are given (in that order):
    the start of a single-rate fine-tune of a variable-rate checkpoint. Returns the new model
    and the rows it took from the gain tables."""
    rows = rate_point_rows(tuple(model.cfg.lambdas), tuple(lambdas))
    sub = GroupedMixerModel(dataclasses.replace(model.cfg, lambdas=tuple(lambdas)))
    state = dict(model.state_dict())
    for name in GroupedMixerModel.RATE_TABLES:
        state[name] = state[name][rows].clone()
    load_state(sub, state)
    return sub, rows


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
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: truncated, damaged "
                              f"or another format ({e})") from None
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
    try:
        problem = config_problem(cfg)
        model = None if problem else GroupedMixerModel(cfg)
    except Exception as e:
        problem = f"{type(e).__name__}: {e}"
    if problem:
        raise CheckpointError(f"{path}: its config {cfg.name!r} does not describe a valid model "
                              f"({problem})")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} has non-finite weights (NaN or inf) in {', '.join(bad[:3])}"
                              + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""))
    try:
        load_state(model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    _check_entropy_tables(model, path)
    model.eval().to(device)
    return model, model_id(state), md["meta"]


def config_problem(cfg: GMConfig) -> str | None:
    """What makes a config unusable (sizes that build no model or no coder), or None."""
    for name in ("N", "M", "Z", "psi", "d_model", "n_heads", "depth", "window"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 1 << 14:
            return f"{name} must be a positive integer, not {v!r}"
    if cfg.d_model % cfg.n_heads:
        return f"d_model {cfg.d_model} is not a multiple of n_heads {cfg.n_heads}"
    if not (isinstance(cfg.mlp_ratio, (int, float)) and 0 < cfg.mlp_ratio <= 64):
        return f"mlp_ratio {cfg.mlp_ratio!r} is out of range"
    lam = cfg.lambdas
    if (not lam or not all(isinstance(v, (int, float)) and v > 0 for v in lam)
            or list(lam) != sorted(set(lam))):
        return "lambdas must be positive and increasing"
    try:
        GroupPartition.parse(cfg.default_partition, cfg.M)
    except (PartitionError, TypeError, AttributeError) as e:
        return f"default_partition: {e}"
    return None


def _check_entropy_tables(model: GroupedMixerModel, path) -> None:
    """The z coder's CDF tables go to C++ code that trusts them: check they are well formed."""
    eb = model.hyper.entropy_bottleneck
    cdf, length, offset = eb._quantized_cdf, eb._cdf_length, eb._offset
    C = model.cfg.Z
    ok = (cdf.dim() == 2 and cdf.shape[0] == C and length.shape == (C,) and offset.shape == (C,)
          and bool((length >= 3).all()) and bool((length <= cdf.shape[1]).all()))
    if ok:
        rows = torch.arange(C)
        ok = (bool((cdf[:, 0] == 0).all()) and bool((cdf[rows, length.long() - 1] == 1 << 16).all())
              and all(bool((cdf[i, :int(length[i])].diff() > 0).all()) for i in range(C)))
    if not ok:
        raise CheckpointError(f"{path} does not match its config: the hyper-latent CDF tables are "
                              "malformed")


def random_model(config: str = "tiny", seed: int = 0) -> tuple[GroupedMixerModel, str]:
    """An untrained model, ready to code (tests and latency benchmarks)."""
    torch.manual_seed(seed)
    model = GroupedMixerModel(get_config(config)).eval()
    model.update(force=True)
    return model, model_id(model.state_dict())
