"""The mechanisms behind determinism, each checked on its own (scripts/determinism.py sweeps
Kodak with a real checkpoint)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gm_core import synthesis
from gm_core.container import ContainerError
from gm_core.entropy_coding import MAX_SYMBOL, StreamDecoder, StreamEncoder, StringError, gaussian_tables


@pytest.fixture
def threads():
    prev = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(prev)


def test_decoded_image_is_identical_for_any_thread_count(scaled_codec, crop, threads):
    threads(1)
    data, tr = scaled_codec.compress(crop)
    outs = []
    for n, cache in ((1, True), (2, False), (3, True), (4, False)):
        threads(n)
        img, td = scaled_codec.decompress(data, use_cache=cache)
        assert np.array_equal(td.y_hat, tr.y_hat)
        outs.append(img)
    assert all(np.array_equal(o, outs[0]) for o in outs[1:])


def test_banded_synthesis_matches_one_pass_and_ignores_threads(scaled_codec, monkeypatch):
    """Bands see the whole receptive field (same values as one pass up to float rounding, as
    oneDNN blocks each band shape its own way), and the banded result has the same bits for
    every caller thread count."""
    model = scaled_codec.model
    y = torch.randn(1, model.cfg.M, 20, 12) * 3
    with torch.inference_mode():
        full = model.g_s(y)
    monkeypatch.setattr(synthesis, "BAND_ELEMENTS", 12)  # bands of 8 rows + 4 rows of context
    assert synthesis.band_rows(20, 12) == 8
    prev = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            with torch.inference_mode():
                outs.append(synthesis.run_synthesis(model.g_s, y))
            assert torch.get_num_threads() == n  # restored
    finally:
        torch.set_num_threads(prev)
    assert outs[0].shape == full.shape
    assert torch.allclose(outs[0], full, atol=1e-4, rtol=1e-4)
    assert all(torch.equal(o, outs[0]) for o in outs[1:])


def _two_groups(seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(2, 8, 16, 16, generator=g, dtype=torch.float64) * 3
    scale = torch.rand(2, 8, 16, 16, generator=g, dtype=torch.float64) * 4 + 0.2
    y = torch.round(mean + scale * torch.randn(mean.shape, generator=g, dtype=torch.float64))
    return y, mean, scale


def _encode(y, mean, scale):
    enc = StreamEncoder(gaussian_tables())
    bits = [enc.add(y[i:i + 1], mean[i:i + 1], scale[i:i + 1]) for i in range(len(y))]
    return enc.flush(), bits


def _decode(string, mean, scale):
    dec = StreamDecoder(gaussian_tables(), string, mean.numel())
    out = [dec.decode(mean[i:i + 1], scale[i:i + 1]) for i in range(len(mean))]
    dec.finish()
    return torch.cat([v for v, _ in out]), [b for _, b in out]


def test_a_table_index_flip_is_an_error_not_a_wrong_image():
    """If the decoder's parameters ever differed from the encoder's enough to pick another CDF
    table, the decoded string would not re-encode to itself: the decoder raises."""
    y, mean, scale = _two_groups()
    s, bits = _encode(y, mean, scale)
    y_dec, dec_bits = _decode(s, mean, scale)
    assert torch.equal(y_dec, y) and dec_bits == bits
    flipped = scale.clone()
    flipped[1].view(-1)[5] *= 1.2  # in the second group, one element one scale bin away
    with pytest.raises(StringError, match="inconsistent"):
        _decode(s, mean, flipped)
    with pytest.raises(StringError, match="non-finite"):
        _decode(s, mean, scale * float("nan"))
    with pytest.raises(ValueError, match="range of the entropy coder"):
        _encode(y + (MAX_SYMBOL + 1), mean, scale)


def test_group_bits_are_what_the_string_spends_escapes_included():
    """code_bits is the exact cost of each group in the string: with the coder's final state (32
    to 64 bits) the groups add up to its length, also when values leave the tables (CompressAI's
    bypass path, 4-bit chunks), far on either side."""
    y, mean, scale = _two_groups(1)
    scale[1] = 0.2  # narrow tables ...
    y[1].view(-1)[::7] = torch.round(mean[1].view(-1)[::7]) + torch.tensor(
        [40.0, -300.0, 5000.0, -70000.0, 3.0e6])[torch.arange(len(y[1].view(-1)[::7])) % 5].double()
    s, bits = _encode(y, mean, scale)
    assert bits[1] > 4 * 8 * 16 * 16 / 7  # ... so the far values take the escape path
    assert 32 - 1e-6 < 8 * len(s) - sum(bits) <= 64 + 1e-6
    y_dec, dec_bits = _decode(s, mean, scale)
    assert torch.equal(y_dec, y) and dec_bits == bits


def test_table_subset_is_np_unique_in_linear_time():
    """The rANS calls get the tables a group uses, in index order, and each symbol's position
    among them; streams depend on exactly that order, so it must equal np.unique's."""
    tables = gaussian_tables()
    n = len(tables.cdfs)
    rng = np.random.default_rng(0)
    for idx in (rng.integers(0, n, 5000), np.array([n - 1, 0, n - 1, 7]), np.array([3])):
        inv, cdfs, lengths, offsets = tables._subset(idx)
        uniq, ref = np.unique(idx, return_inverse=True)
        assert inv == ref.ravel().tolist()
        assert cdfs == [tables.cdfs[i] for i in uniq]
        assert lengths == [tables.lengths[i] for i in uniq]
        assert offsets == [tables.offsets[i] for i in uniq]


def test_codec_turns_a_divergence_into_container_error(scaled_codec, crop, monkeypatch):
    """A decoder whose entropy model drifts (simulated) refuses the stream."""
    data, _ = scaled_codec.compress(crop[:64, :64])
    cm = scaled_codec.model.coding_modules()
    head = cm["latent"].mixer.head
    with torch.inference_mode():  # the float64 copy was made in inference mode
        head.bias[head.bias.shape[0] // 2:] += 0.3  # every scale moves by several bins
    try:
        with pytest.raises(ContainerError, match="entropy-decoded"):
            scaled_codec.decompress(data)
    finally:
        object.__setattr__(scaled_codec.model, "_coding", None)  # rebuild from the real weights
    scaled_codec.decompress(data)


def test_cross_device_script_dry_run(tmp_path, crop):
    """scripts/cross_device.py's bookkeeping, run with the CPU standing in for the GPU: every
    stream and decode is counted, and a stream decoded on "both devices" matches bit for bit."""
    import importlib.util
    import json

    from PIL import Image
    spec = importlib.util.spec_from_file_location(
        "cross_device", Path(__file__).resolve().parent.parent / "scripts" / "cross_device.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "img").mkdir()
    Image.fromarray(crop).save(tmp_path / "img" / "a.png")
    out = tmp_path / "cd.json"
    mod.main(["--images", str(tmp_path / "img"), "--qualities", "0,5", "--repeats", "1",
              "--gpu", "cpu", "--out", str(out)])
    rep = json.loads(out.read_text())
    assert (rep["streams"], rep["decodes"], rep["mismatches"]) == (4, 16, 0)
    assert all(r["same_bytes"] for r in rep["rows"])
    assert set(rep["latency"]) == {"cpu", "cpu_"}
    assert rep["latency"]["cpu"]["decode_cache_s"] > 0
