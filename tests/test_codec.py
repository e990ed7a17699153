import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gm_core.config import get_config
from gm_core.container import ContainerError
from gm_core.latent_codec import GroupedMixerLatentCodec, assemble, group_sums
from gm_core.partition import GroupPartition, to_phases

PARTITIONS = ["kc=1,grid=1x1", "kc=4,grid=2x2", "slices=16+16+32+64+64,grid=2x2", "kc=2,grid=4x4",
              "kc=4,grid=2x2,order=phase-major"]


@pytest.fixture(scope="module")
def latent_codec():
    torch.manual_seed(0)
    return GroupedMixerLatentCodec(get_config("tiny")).double().eval()


def _latents(h=8, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = get_config("tiny")
    y = torch.round(torch.randn(1, cfg.M, h, w, generator=g, dtype=torch.float64) * 6)
    psi = torch.randn(1, cfg.psi, h, w, generator=g, dtype=torch.float64)
    return y, psi


@pytest.mark.parametrize("spec", PARTITIONS)
def test_latent_round_trip_is_exact(latent_codec, spec):
    part = GroupPartition.parse(spec, latent_codec.cfg.M)
    y, psi = _latents()
    assert (y != 0).float().mean() > 0.8  # most symbols are non-zero
    with torch.inference_mode():
        string, info = latent_codec.compress(y, psi, part)
        assert len(info["group_bits"]) == part.num_groups
        for cache in (True, False):
            y_dec, dec = latent_codec.decompress(string, psi, part, y.shape[-2:], use_cache=cache)
            assert torch.equal(y_dec, y), f"cache={cache}"
            assert dec["group_bits"] == info["group_bits"]
    # one string for all groups: its length is what the groups cost, plus the coder's final
    # state (64 bits, of which what the last renormalisation left unused is 32 or more)
    state = 8 * len(string) - sum(info["group_bits"])
    assert 32 - 1e-6 < state <= 64 + 1e-6, state


@pytest.mark.parametrize("spec", ["kc=4,grid=2x2", "slices=16+16+32+64+64,grid=2x2", "kc=2,grid=4x4"])
def test_causality_gradients(latent_codec, spec):
    """Group g's parameters do not depend on y_hat of any group coded at step g or later."""
    part = GroupPartition.parse(spec, latent_codec.cfg.M)
    y, psi = _latents(8, 8, seed=1)
    step_of = part.step_of()  # (P, M)
    for g in (0, 1, part.num_groups // 2, part.num_groups - 1):
        yv = y.clone().requires_grad_(True)
        mean, scale, _ = latent_codec.params(yv, psi, part)
        sel = torch.zeros(part.num_phases, part.M, dtype=torch.bool)
        sel[step_of == g] = True
        mp, sp = to_phases(mean, part.grid), to_phases(scale, part.grid)
        (mp[:, sel.nonzero()[:, 0], sel.nonzero()[:, 1]].sum()
         + sp[:, sel.nonzero()[:, 0], sel.nonzero()[:, 1]].sum()).backward()
        grad = to_phases(yv.grad, part.grid)[0]  # (P, M, hg, wg)
        later = (step_of >= g)
        assert torch.count_nonzero(grad[later]) == 0, f"group {g} sees itself or the future"
        if g > 0:
            assert torch.count_nonzero(grad[~later]) > 0, f"group {g} ignores its context"


def _sample_from_model(latent_codec, part, psi, seed=3):
    """Draw y group by group from the model's own predictions: the case rANS is built for."""
    g = torch.Generator().manual_seed(seed)
    M = latent_codec.cfg.M
    y = torch.zeros(1, M, *psi.shape[-2:], dtype=torch.float64)
    step_of = part.step_of()
    with torch.inference_mode():
        for step in range(part.num_groups):
            mean, scale, _ = latent_codec.params(y, psi, part)
            draw = torch.round(mean + scale * torch.randn(mean.shape, generator=g, dtype=mean.dtype))
            sel = to_phases(torch.zeros_like(y), part.grid)
            sel[:, step_of == step] = 1
            from gm_core.partition import from_phases
            mask = from_phases(sel, part.grid).bool()
            y = torch.where(mask, draw, y)
    return y


@pytest.mark.parametrize("spec", ["kc=4,grid=2x2", "kc=1,grid=1x1"])
def test_real_bits_match_estimate(latent_codec, spec):
    part = GroupPartition.parse(spec, latent_codec.cfg.M)
    _, psi = _latents(16, 16, seed=2)
    y = _sample_from_model(latent_codec, part, psi * 4)
    with torch.inference_mode():
        string, info = latent_codec.compress(y, psi * 4, part)
        y_dec, _ = latent_codec.decompress(string, psi * 4, part, y.shape[-2:])
    assert torch.equal(y_dec, y)
    from gm_core.entropy_coding import gaussian_likelihood
    est = -torch.log2(gaussian_likelihood(y, info["mean"], info["scale"])).sum()
    real = 8.0 * len(string)
    assert est > 1000
    # the tables are quantised (scale and mean bins, 16-bit frequencies); the string carries at
    # most 64 bits of the coder's final state, once, whatever the number of groups
    assert abs(real - est) <= 0.02 * est + 64, (real, float(est))


def test_assemble_places_each_group(latent_codec):
    part = GroupPartition.parse("slices=16+16+32+64+64,grid=2x2", 192)
    t = torch.arange(part.num_groups, dtype=torch.float64).view(1, -1, 1, 1, 1).expand(1, -1, 3, 4, 192)
    out = assemble(t, part)
    assert torch.equal(to_phases(out, part.grid)[0, :, :, 0, 0], part.step_of().double())


def test_image_round_trip_cache_and_threads(scaled_codec, crop):
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        data, tr = scaled_codec.compress(crop, "kc=4,grid=2x2")
        assert (tr.y_hat != 0).mean() > 0.5
        torch.set_num_threads(2)
        a, ta = scaled_codec.decompress(data, use_cache=True)
        b, tb = scaled_codec.decompress(data, use_cache=False)
    finally:
        torch.set_num_threads(prev)
    assert np.array_equal(a, b)
    assert np.array_equal(ta.y_hat, tr.y_hat) and np.array_equal(tb.y_hat, tr.y_hat)
    assert a.shape == crop.shape


@pytest.mark.parametrize("hw", [(97, 131), (1, 1), (64, 3), (130, 65)])
def test_odd_sizes_are_padded_and_round_trip(scaled_codec, kodak_image, hw):
    img = np.ascontiguousarray(kodak_image[:hw[0], :hw[1]])
    data, tr = scaled_codec.compress(img, "kc=2,grid=4x4")
    assert tr.padded_size[0] % 64 == 0 and tr.padded_size[1] % 64 == 0
    out, td = scaled_codec.decompress(data)
    assert out.shape == img.shape
    assert np.array_equal(td.y_hat, tr.y_hat)


def test_trace_bits_and_attention(scaled_codec, crop):
    data, tr = scaled_codec.compress(crop, want_attn=True)
    assert len(data) == tr.total_bytes
    assert len(tr.group_bits) == tr.partition.num_groups
    assert tr.bits_map.shape == tr.mean.shape == tr.scale.shape == (192, 8, 12)
    assert len(data) * 8 == tr.header_bytes * 8 + tr.z_bits + tr.y_bits
    assert 32 - 1e-6 < tr.state_bits <= 64 + 1e-6
    kinds = [a["kind"] for a in tr.attention]
    assert kinds == ["inner", "cross"] * get_config("tiny").depth
    cross = tr.attention[1]["weights"]  # (H, W, heads, S, S), causal
    assert np.allclose(np.triu(cross[0, 0, 0], 1), 0) and np.allclose(cross.sum(-1), 1)
    inner = tr.attention[0]["weights"]
    assert np.allclose(inner.sum(-1), 1)
    assert set(tr.timings) >= {"analysis", "hyper", "entropy_model", "rans"}
    img, td = scaled_codec.decompress(data, want_attn=True)
    assert len(td.step_s) == tr.partition.num_groups and len(td.attention) == tr.partition.num_groups


def test_other_weights_are_refused(scaled_codec, crop):
    from tests.conftest import make_scaled_codec
    data, _ = scaled_codec.compress(crop)
    other = make_scaled_codec(seed=1)
    with pytest.raises(ContainerError, match="other weights"):
        other.decompress(data)


def test_cli_round_trip_and_errors(tmp_path, crop, scaled_codec):
    from gm_core.checkpoint import save_checkpoint
    from PIL import Image
    ck = tmp_path / "m.safetensors"
    save_checkpoint(scaled_codec.model, ck)
    src = tmp_path / "in.png"
    Image.fromarray(crop).save(src)
    run = lambda *a: subprocess.run([sys.executable, "-m", "gm_core", *a], capture_output=True, text=True)
    r = run("compress", str(src), str(tmp_path / "a.gmx"), "--checkpoint", str(ck),
            "--partition", "kc=2,grid=2x2", "--threads", "1")
    assert r.returncode == 0, r.stderr
    r = run("decompress", str(tmp_path / "a.gmx"), str(tmp_path / "o.png"), "--checkpoint", str(ck),
            "--no-cache")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "o.png").size == (crop.shape[1], crop.shape[0])
    r = run("info", str(tmp_path / "a.gmx"))
    assert r.returncode == 0 and '"partition": "kc=2,grid=2x2"' in r.stdout
    r = run("info", str(ck))  # a checkpoint given as the file
    assert r.returncode == 0 and json.loads(r.stdout)["model_id"] == scaled_codec.model_id
    (tmp_path / "bad.gmx").write_bytes(b"not a stream")
    for args in (["decompress", str(tmp_path / "bad.gmx"), str(tmp_path / "x.png"), "--checkpoint", str(ck)],
                 ["compress", str(tmp_path / "bad.gmx"), str(tmp_path / "x.gmx"), "--checkpoint", str(ck)],
                 ["compress", str(src), str(tmp_path / "x.gmx"), "--checkpoint", str(ck), "--partition", "kc=7"],
                 ["decompress", str(tmp_path / "missing.gmx"), str(tmp_path / "x.png")]):
        r = run(*args)
        assert r.returncode == 2 and r.stderr.startswith("error:"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
