"""Checkpoints load safely (safetensors, no pickle) and every bad one gives a CheckpointError that
says what is wrong."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gm_core.checkpoint import (FORMAT, CheckpointError, load_checkpoint, model_id, random_model,
                                read_metadata, save_checkpoint)
from gm_core.codec import Codec
from gm_core.config import get_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A valid checkpoint of an untrained tiny model: (path, state, metadata, model id)."""
    path = tmp_path_factory.mktemp("ck") / "tiny.safetensors"
    model, _ = random_model("tiny", seed=3)
    mid = save_checkpoint(model, path, meta={"note": "test"})
    with safe_open(str(path), framework="pt") as f:
        md = f.metadata()
    return path, load_file(str(path)), md, mid


def write(tmp_path, state, md, name="bad.safetensors") -> Path:
    p = tmp_path / name
    save_file({k: v.contiguous() for k, v in state.items()}, str(p), metadata=md)
    return p


def refused(path, *words):
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_valid_checkpoint_loads_and_codes(saved, crop):
    path, state, md, mid = saved
    model, got_id, meta = load_checkpoint(path)
    assert got_id == mid == model_id(state) and meta == {"note": "test"}
    codec = Codec(model, got_id)
    data, _ = codec.compress(crop[:64, :64])
    assert codec.decompress(data)[0].shape == (64, 64, 3)
    assert read_metadata(path)["config"] == get_config("tiny")


def test_missing_file_and_directory(tmp_path):
    refused(tmp_path / "nope.safetensors", "not found")
    refused(tmp_path, "not found")


@pytest.mark.parametrize("blob", [b"", b"hello", b"\x89PNG\r\n\x1a\n" + bytes(64),
                                  (2 ** 40).to_bytes(8, "little") + b"{}",
                                  (20).to_bytes(8, "little") + b'{"a": [1, 2, 3]}   '])
def test_not_a_safetensors_file(tmp_path, blob):
    p = tmp_path / "x.safetensors"
    p.write_bytes(blob)
    refused(p, "not a readable safetensors checkpoint")


def test_a_pickle_is_never_unpickled(tmp_path):
    """A torch.save file (a pickle) is refused without running any of its code."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"state": Evil()}, f)
    refused(p, "not a readable safetensors checkpoint")
    p2 = tmp_path / "weights.pt"
    torch.save(random_model("tiny")[0].state_dict(), p2)
    refused(p2, "not a readable safetensors checkpoint")
    assert not marker.exists()


def test_truncated_file(saved, tmp_path):
    path = saved[0]
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    for cut in (3, 8, 100, 8 + header, 8 + header + 1000, len(data) // 2, len(data) - 1):
        p = tmp_path / f"cut{cut}.safetensors"
        p.write_bytes(data[:cut])
        refused(p, "truncated, damaged or another format")


def test_safetensors_that_is_not_ours(saved, tmp_path):
    _, state, md, _ = saved
    refused(write(tmp_path, state, None), "not a GroupedMixer checkpoint")
    refused(write(tmp_path, state, {**md, "format": "something-else"}), "not a GroupedMixer checkpoint")


@pytest.mark.parametrize("config", ["{not json", "[]", '{"name": "tiny"}', "null",
                                    json.dumps({**get_config("tiny").to_dict(), "colour": "red"})])
def test_broken_config_in_header(saved, tmp_path, config):
    _, state, md, _ = saved
    refused(write(tmp_path, state, {**md, "config": config}), "broken header")


@pytest.mark.parametrize("change", [{"N": 64}, {"M": 128, "default_partition": "kc=4,grid=2x2"},
                                    {"depth": 3}, {"d_model": 64}, {"psi": 96}])
def test_config_that_does_not_match_the_weights(saved, tmp_path, change):
    _, state, md, _ = saved
    cfg = {**json.loads(md["config"]), **change}
    refused(write(tmp_path, state, {**md, "config": json.dumps(cfg)}), "does not match its config")


@pytest.mark.parametrize("change", [{"N": 0}, {"n_heads": 3}, {"window": 0}, {"depth": -1},
                                    {"mlp_ratio": -1.0}, {"lambdas": []}, {"lambdas": [0.1, 0.01]},
                                    {"default_partition": "kc=7"}])
def test_config_that_describes_no_valid_model(saved, tmp_path, change):
    _, state, md, _ = saved
    cfg = {**json.loads(md["config"]), **change}
    refused(write(tmp_path, state, {**md, "config": json.dumps(cfg)}), "does not describe a valid model")


def test_weights_that_do_not_match_the_config(saved, tmp_path):
    _, state, md, _ = saved
    key = "g_a.0.weight"
    missing = {k: v for k, v in state.items() if k != key}
    refused(write(tmp_path, missing, md, "missing.safetensors"), "does not match its config", "missing")
    extra = {**state, "surprise.weight": torch.zeros(3)}
    refused(write(tmp_path, extra, md, "extra.safetensors"), "does not match its config", "unexpected")
    shaped = {**state, key: torch.zeros(7, 3, 5, 5)}
    refused(write(tmp_path, shaped, md, "shape.safetensors"), "does not match its config", "size mismatch")


def test_non_finite_weights(saved, tmp_path):
    _, state, md, _ = saved
    w = state["latent.mixer.head.weight"].clone()
    w[0, 0] = float("nan")
    refused(write(tmp_path, {**state, "latent.mixer.head.weight": w}, md), "non-finite")


def test_malformed_entropy_tables(saved, tmp_path):
    _, state, md, _ = saved
    key = "hyper.entropy_bottleneck._cdf_length"
    bad = state[key].clone()
    bad[0] = 10_000  # longer than the table: the C++ coder would read past it
    refused(write(tmp_path, {**state, key: bad}, md), "CDF tables are malformed")
    key = "hyper.entropy_bottleneck._quantized_cdf"
    cdf = state[key].clone()
    cdf[1, 2] = cdf[1, 1]  # a zero-frequency symbol
    refused(write(tmp_path, {**state, key: cdf}, md), "CDF tables are malformed")


def test_half_precision_weights_load(saved, tmp_path):
    """Weights stored in float16 (a smaller download) load as float32."""
    _, state, md, _ = saved
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    model, mid, _ = load_checkpoint(write(tmp_path, half, md, "half.safetensors"))
    assert next(model.parameters()).dtype == torch.float32


def test_cli_reports_a_bad_checkpoint_in_one_line(tmp_path, crop):
    from PIL import Image
    (tmp_path / "bad.safetensors").write_bytes(b"garbage" * 10)
    Image.fromarray(crop).save(tmp_path / "in.png")
    r = subprocess.run([sys.executable, "-m", "gm_core", "compress", str(tmp_path / "in.png"),
                        str(tmp_path / "o.gmx"), "--checkpoint", str(tmp_path / "bad.safetensors")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert "safetensors" in r.stderr


def test_codec_refuses_stream_of_other_checkpoint(saved, tmp_path, crop):
    """Two checkpoints with the same config but other weights: a stream of one is refused by
    the other before any entropy decoding."""
    path, state, md, _ = saved
    other = {k: (v + 0.01 if k == "g_s.0.weight" else v) for k, v in state.items()}
    a = Codec(*load_checkpoint(path)[:2])
    b = Codec(*load_checkpoint(write(tmp_path, other, md, "other.safetensors"))[:2])
    assert a.model_id != b.model_id
    data, _ = a.compress(crop[:64, :64])
    from gm_core.container import ContainerError
    with pytest.raises(ContainerError, match="other weights"):
        b.decompress(data)


def test_cfg_replace_keeps_model_id_semantics():
    """The model id hashes the tensors only: the same weights give the same id."""
    m1, id1 = random_model("tiny", seed=5)
    m2, id2 = random_model("tiny", seed=5)
    assert id1 == id2 and replace(get_config("tiny")) == m1.cfg
    assert FORMAT == "gmx-checkpoint-1"
