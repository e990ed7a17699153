"""gm_core.analysis on real traces: numbers agree with the bitstream and the partition geometry."""
import numpy as np
import pytest
import torch

from gm_core import analysis as an
from gm_core.partition import GroupPartition


@pytest.fixture(scope="module")
def coded(scaled_codec, crop):
    """One real compress (with attention) and both decodes, for a partition with uneven slices."""
    part = GroupPartition.parse("slices=32+32+64+64,grid=2x2", scaled_codec.cfg.M)
    data, enc = scaled_codec.compress(crop, part, 2.0, want_attn=True)
    snaps = []
    rec, dec_on = scaled_codec.decompress(data, use_cache=True,
                                          on_step=lambda g, y: snaps.append(y[0].numpy().copy()))
    _, dec_off = scaled_codec.decompress(data, use_cache=False)
    return {"data": data, "enc": enc, "dec_on": dec_on, "dec_off": dec_off, "rec": rec, "snaps": snaps}


@pytest.fixture(scope="module")
def coded_1x1(scaled_codec, crop):
    """G = 4 on a 1x1 grid: the 8x12 group grid spans two 8x8 attention windows (one padded)."""
    data, enc = scaled_codec.compress(crop, "kc=4,grid=1x1", 1.0, want_attn=True)
    return enc


def test_group_table_matches_the_stream(coded):
    enc = coded["enc"]
    df = an.group_table(enc)
    part = enc.partition
    assert list(df["step"]) == list(range(part.num_groups))
    assert list(df["coded_bits"]) == enc.group_bits
    # the groups and the rANS coder's final state are the y string: with header and z, the file
    assert np.isclose(enc.header_bytes * 8 + enc.z_bits + enc.state_bits + df["coded_bits"].sum(),
                      8 * len(coded["data"]))
    assert np.isclose(df["cumulative_bits"].iloc[-1], 8 * (len(coded["data"]) - enc.header_bytes))
    assert np.allclose(df["est_bits"], enc.group_est_bits)
    h, w = enc.latent_shape
    assert df["elements"].sum() == part.M * h * w
    # the coded bits and the model's estimate tell the same story (tables are quantised and
    # tails escape-coded, so they are not equal, least of all for this untrained model)
    assert 0.75 < df["coded_bits"].sum() / df["est_bits"].sum() < 1.33
    dz = an.group_table(enc, include_z=True)
    assert dz.iloc[0]["coded_bits"] == enc.z_bits and len(dz) == part.num_groups + 1
    assert np.allclose(dz["cumulative_bits"].iloc[1:], df["cumulative_bits"])
    cb = an.cumulative_bits(enc)
    assert np.isclose(cb["bits"].iloc[-1], 8 * len(coded["data"]))
    s = an.bits_summary(enc)
    assert s["total_bytes"] == len(coded["data"])


def test_slice_and_phase_splits_sum_to_total(coded):
    enc = coded["enc"]
    bs, bp = an.bits_by_slice(enc), an.bits_by_phase(enc)
    total = sum(enc.group_bits)
    assert np.isclose(bs["coded_bits"].sum(), total) and np.isclose(bp["coded_bits"].sum(), total)
    assert len(bs) == 4 and list(bs["channels"]) == ["0-31", "32-63", "64-127", "128-191"]
    assert len(bp) == 4 and bp.iloc[0]["phase"] == "(0,0)" and bp.iloc[1]["phase"] == "(1,1)"
    assert np.isclose(bs["share_%"].sum(), 100)


def test_group_bit_maps(coded):
    enc = coded["enc"]
    part = enc.partition
    h, w = enc.latent_shape
    total = np.zeros((h, w))
    for g in range(part.num_groups):
        m = an.group_bit_map(enc, g)
        assert m.shape == (h // 2, w // 2)
        assert np.isclose(m.sum(), enc.group_est_bits[g], rtol=1e-6)
        full = an.group_bit_map(enc, g, full=True)
        assert full.shape == (h, w) and np.isfinite(full).sum() == m.size
        i, j = an.group_geometry(part, g)["phase_ij"]
        assert np.allclose(full[i::2, j::2], m)
        total += np.nan_to_num(full)
    assert np.allclose(total, an.total_bit_map(enc))


def test_partition_geometry():
    part = GroupPartition.parse("slices=32+32+64+64,grid=2x2", 192)
    sg = an.step_grid(part, (4, 6))
    assert sg.shape == (4, 4, 6)
    assert sg[0, 0, 0] == 0 and sg[0, 1, 1] == 1 and sg[0, 0, 1] == 2 and sg[0, 1, 0] == 3
    assert sg[3].min() == 12
    csm = an.channel_step_map(part, (4, 6))
    assert torch.equal(torch.from_numpy(an.step_matrix(part)).repeat_interleave(
        torch.tensor(part.slices), 0), part.step_of().t())
    assert csm.shape == (192, 4, 6) and (csm[64:128] == sg[2]).all()
    fig = an.partition_figure(part)
    assert len(fig.data) == 4
    pm = GroupPartition.parse("kc=2,grid=2x2,order=phase-major", 192)
    assert an.step_matrix(pm).tolist() == [[0, 4, 6, 2], [1, 5, 7, 3]]


def test_param_maps_and_channel_viewer(coded):
    enc = coded["enc"]
    maps = an.group_param_maps(enc, 5)
    assert set(maps) == {"mean", "scale", "y_hat", "bits"}
    assert all(m.shape == (4, 6) for m in maps.values())
    assert (maps["scale"] > 0).all()
    a, b = an.group_geometry(enc.partition, 5)["channels"]
    one = an.group_param_maps(enc, 5, channel=a, full=True)
    assert one["mean"].shape == enc.latent_shape
    with pytest.raises(IndexError):
        an.group_param_maps(enc, 5, channel=b)
    ch = an.latent_channel(enc, 70)
    assert np.array_equal(ch["y_hat"], enc.y_hat[70])
    assert set(np.unique(ch["step"])) == {8, 9, 10, 11}
    pc = an.bits_per_channel(enc)
    assert len(pc) == 192 and np.isclose(pc["est_bits"].sum(), sum(enc.group_est_bits), rtol=1e-6)


def test_inner_attention_maps(coded, coded_1x1):
    enc = coded["enc"]
    layers = an.attention_layers(enc.attention)
    assert list(layers["kind"]) == ["inner", "cross"] * (len(layers) // 2)
    m = an.inner_attention_map(enc.attention, 0, 3, (1, 2), head=0)
    assert m.shape == (4, 6) and np.isclose(np.nansum(m), 1.0)
    mm = an.inner_attention_map(enc.attention, 0, 3, (1, 2), head="mean")
    assert np.isclose(np.nansum(mm), 1.0)
    with pytest.raises(ValueError):
        an.inner_attention_map(enc.attention, 1, 0, (0, 0))  # a cross layer
    # 1x1 grid: 8x12 tokens, windows of 8x8 -> two windows, the second padded to 8 wide
    a1 = coded_1x1.attention
    lay = a1[0]
    assert lay["grid"] == (8, 12) and lay["windows"] == (1, 2)
    m = an.inner_attention_map(a1, 0, 1, (3, 10))
    assert np.isnan(m[:, :8]).all() and np.isfinite(m[:, 8:]).all()
    assert np.isclose(np.nansum(m), 1.0)
    rows, cols = an.inner_attention_window(a1, 0, (3, 10))
    assert (rows, cols) == (slice(0, 8), slice(8, 12))
    img = an.grid_to_image(m, coded_1x1.partition, 1, coded_1x1.image_size)
    assert img.shape == coded_1x1.image_size
    ov = an.overlay(np.zeros((*coded_1x1.image_size, 3), np.uint8) + 128, img)
    assert ov.shape == (*coded_1x1.image_size, 3) and ov.dtype == np.uint8


def test_cross_attention(coded):
    enc = coded["enc"]
    G = enc.partition.num_groups
    m = an.cross_attention_matrix(enc.attention, 1, (2, 3))
    assert m.shape == (G, G)
    assert np.allclose(np.triu(m, 1), 0)  # causal: no weight on later steps
    assert np.allclose(m.sum(1), 1.0)
    df = an.cross_attention_table(enc.attention, enc.partition, 1, (2, 3), step=5)
    assert list(df["key_step"]) == list(range(6)) and np.isclose(df["weight"].sum(), 1.0)
    assert df.iloc[0]["carries"].startswith("start token")
    assert len(an.cross_attention_figure(df, 5).data) == 1


def test_decoder_attention_trace_matches_encoder(scaled_codec, crop):
    """The decoder (step by step, with the cache) attends like the teacher-forced encoder."""
    small = np.ascontiguousarray(crop[:64, :64])
    data, enc = scaled_codec.compress(small, "kc=2,grid=2x2", 2.0, want_attn=True)
    _, dec = scaled_codec.decompress(data, use_cache=True, want_attn=True)
    for layer in (0, 1):
        a = an.cross_attention_matrix(enc.attention, 1, (1, 1))
        b = an.cross_attention_matrix(dec.attention, 1, (1, 1))
        assert np.allclose(a, b, atol=1e-6)
    ea = an.inner_attention_map(enc.attention, 2, 3, (0, 1), head=1)
    da = an.inner_attention_map(dec.attention, 2, 3, (0, 1), head=1)
    assert np.allclose(ea, da, atol=1e-6, equal_nan=True)


def test_latency_tables(coded):
    enc, on, off = coded["enc"], coded["dec_on"], coded["dec_off"]
    df = an.latency_table(enc, {"decode, cache on": on, "decode, cache off": off})
    assert list(df.columns) == ["stage", "encode", "decode, cache on", "decode, cache off"]
    assert df.iloc[-1]["stage"] == "total"
    assert np.isnan(df.loc[df["stage"] == an.STAGE_LABELS["synthesis"], "encode"]).all()
    st = an.step_table({"cache on": on, "cache off": off})
    assert len(st) == enc.partition.num_groups
    sp = an.speedup(on, off)
    assert sp["entropy_speedup"] > 0 and sp["expected_speedup"] == 8.5
    assert len(an.latency_figure(df).data) == 3 and len(an.step_latency_figure(st).data) == 2


def test_progressive_matches_the_decoder(scaled_codec, coded):
    enc, dec = coded["enc"], coded["dec_on"]
    G = enc.partition.num_groups
    assert np.array_equal(an.progressive_latent(dec, G), dec.y_hat)
    assert not an.progressive_latent(dec, 0).any()
    for g in (0, 4, G - 1):  # what the decoder held after step g
        assert np.array_equal(an.progressive_latent(dec, g + 1), coded["snaps"][g])
    imgs, cb = an.progressive_reconstructions(scaled_codec, dec, [0, 8, G])
    assert len(imgs) == 3 and imgs[0].shape == coded["rec"].shape
    assert np.array_equal(imgs[-1], coded["rec"])  # all groups: the decoded image
    assert list(cb["groups_decoded"]) == [0, 8, G]
    full = an.cumulative_bits(dec)
    assert full.iloc[-1]["bits"] == 8 * len(coded["data"]) and full["bits"].is_monotonic_increasing


def test_error_maps_and_crop(crop):
    noisy = np.clip(crop.astype(int) + 3, 0, 255).astype(np.uint8)
    e = an.error_map(crop, noisy)
    assert e.shape == crop.shape[:2] and e.max() <= 3
    assert an.psnr_map(crop, noisy).shape == (crop.shape[0] // 16, crop.shape[1] // 16)
    with pytest.raises(ValueError):
        an.error_map(crop, crop[:10])
    z = an.zoom_crop(crop, (0.5, 0.5), 64)
    assert z.shape == (64, 64, 3)
    assert an.zoom_crop(crop, (1.0, 1.0), 500).shape == crop.shape


def test_figures(coded):
    enc = coded["enc"]
    assert len(an.group_bits_figure(enc).data) == 3
    assert an.heatmap_figure(an.total_bit_map(enc), "bits").data[0].z.shape == enc.latent_shape
    assert len(an.split_figure(an.bits_by_slice(enc), "channels", "x").data) == 1


def test_partition_sweep_and_summary(scaled_codec, crop):
    imgs = {"a": np.ascontiguousarray(crop[:64, :64]), "b": np.ascontiguousarray(crop[64:128, :64])}
    parts = ["g1", "kc=2,grid=2x2"]
    df = an.partition_sweep(scaled_codec, imgs, parts, quality=2.0)
    assert len(df) == 4 and list(df["partition"].unique()) == ["kc=1,grid=1x1", "kc=2,grid=2x2"]
    assert df["same_pixels"].all()
    data, _ = scaled_codec.compress(imgs["b"], "kc=2,grid=2x2", 2.0)
    row = df[(df["image"] == "b") & (df["groups"] == 8)].iloc[0]
    assert row["bytes"] == len(data) and np.isclose(row["bpp"], len(data) * 8 / 64 ** 2)
    assert 8 * row["header_bytes"] + row["z_bits"] + row["y_bits"] == 8 * len(data)
    # zero-centred rounding: the partition changes the rate, never the decoded image
    assert df.groupby("image")["psnr"].nunique().eq(1).all()
    s = an.sweep_summary(df)
    assert list(s["partition"]) == ["kc=1,grid=1x1", "kc=2,grid=2x2"]
    assert s.loc[0, "rate_vs_baseline_%"] == 0 and list(s["expected_speedup"]) == [1.0, 4.5]
    assert s.loc[0, "model_rate_vs_baseline_%"] == 0 and np.isfinite(s.loc[1, "model_rate_vs_baseline_%"])
    b = df.set_index(["partition", "image"])["bytes"]
    want = np.mean([100 * (b[("kc=2,grid=2x2", k)] / b[("kc=1,grid=1x1", k)] - 1) for k in imgs])
    assert np.isclose(s.loc[1, "rate_vs_baseline_%"], want)
    quick = an.partition_sweep(scaled_codec, {"a": imgs["a"]}, parts[:1], 2.0, cache_off=False)
    assert "decode_off_s" not in quick and "cache_speedup" not in an.sweep_summary(quick)
