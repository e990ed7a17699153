"""The Streamlit app through streamlit.testing.v1.AppTest: every page and widget path, with small
images, and every kind of bad input ending in a message on the page, never an exception."""
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

st_testing = pytest.importorskip("streamlit.testing.v1")
AppTest = st_testing.AppTest

ROOT = Path(__file__).resolve().parent.parent
MAIN = str(ROOT / "app" / "main.py")
TIMEOUT = 180


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The shipped checkpoint if present, else a temporary random one (named by GMX_CHECKPOINT)."""
    from gm_core.checkpoint import DEFAULT_CHECKPOINT, random_model, save_checkpoint
    old = os.environ.get("GMX_CHECKPOINT")
    if Path(DEFAULT_CHECKPOINT).is_file():
        path = Path(DEFAULT_CHECKPOINT)
    else:
        model, _ = random_model("tiny")
        path = tmp_path_factory.mktemp("ckpt") / "random_tiny.safetensors"
        save_checkpoint(model, path, {"name": "random (test)"})
    os.environ["GMX_CHECKPOINT"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GMX_CHECKPOINT", None)
    else:
        os.environ["GMX_CHECKPOINT"] = old


def png(arr, mode=None, **kw) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr, mode)
    im.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def small_png(crop) -> bytes:
    return png(crop)  # 128 x 192


def new_app() -> "AppTest":
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.run()
    return at


def assert_clean(at, errors_ok=False):
    assert not at.exception, [e.value for e in at.exception]
    if not errors_ok:
        assert not at.error, [e.value for e in at.error]


def upload(at, data: bytes, name: str, key="explore", mime="image/png"):
    at.radio(key=f"{key}_mode").set_value("Upload my own").run()
    at.file_uploader(key=f"{key}_upload").upload(name, data, mime).run()
    return at


def texts(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [x.value for kind in ("info", "warning", "success", "error") for x in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


# --------------------------------------------------------------------------- the main page
def test_first_page(checkpoint):
    at = new_app()
    assert_clean(at)
    assert [b.label for b in at.button] == ["Compress"]
    assert at.button(key="compress").proto.type == "primary"
    assert at.selectbox(key="checkpoint").value == str(checkpoint)
    assert "cpu" in at.radio(key="device").options
    assert "Press **Compress**" in texts(at)
    assert "megapixels" in texts(at)  # the limits are stated on the page
    assert len(at.get("plotly_chart")) == 1  # the partition picture


@pytest.fixture(scope="module")
def compressed(checkpoint, small_png):
    at = new_app()
    upload(at, small_png, "crop.png")
    assert_clean(at)
    at.button(key="compress").click().run()
    assert_clean(at)
    return at


def test_compress_shows_every_view(compressed):
    at = compressed
    res = at.session_state["result"]
    assert res.rec.shape == (128, 192, 3)
    assert res.rec_other_equal is True  # cache on and off decode to the same pixels
    labels = [m.label for m in at.metric]
    for want in ("bits per pixel", "file size", "PSNR", "MS-SSIM", "bits read so far",
                 "entropy-model speed-up", "z (side information)"):
        assert want in labels
    bpp = next(m for m in at.metric if m.label == "bits per pixel").value
    assert float(bpp) == pytest.approx(len(res.data) * 8 / (128 * 192), abs=1e-3)
    assert [t.label for t in at.tabs] == ["Result", "Bit allocation", "Entropy parameters",
                                          "Attention", "Latency", "Progressive decoding", "Download"]
    assert len(at.get("plotly_chart")) >= 15
    assert len(at.get("download_button")) == 2
    assert {r["codec"] for r in res.classical} == {"JPEG", "WebP", "AVIF"}
    assert "bit-identical" in texts(at)
    assert texts(at).count("What am I looking at?") >= 15


def test_view_widgets(compressed):
    at = compressed
    G = at.session_state["result"].enc.partition.num_groups
    steps = [("slider", "zoom_y", 20), ("slider", "zoom_x", 80), ("select_slider", "zoom_size", 32),
             ("select_slider", "bits_group", G - 1), ("select_slider", "ent_group", 0),
             ("slider", "ent_channel", 5), ("slider", "att_step", G - 1),
             ("selectbox", "att_head", 1), ("slider", "att_qr", 0), ("slider", "att_qc", 1),
             ("selectbox", "att_inner_layer", 2), ("selectbox", "att_cross_layer", 3),
             ("slider", "att_pr", 0), ("slider", "att_pc", 0), ("slider", "att_qstep", 2),
             ("slider", "prog_k", 0), ("slider", "prog_k", 3), ("slider", "prog_k", G)]
    for kind, key, value in steps:
        getattr(at, kind)(key=key).set_value(value).run()
        assert_clean(at)
    assert next(m for m in at.metric if m.label == "bpp so far")
    at.slider(key="prog_k").set_value(0).run()
    prog = [m for m in at.metric if m.label == "bits read so far"][0]
    res = at.session_state["result"]
    assert int(prog.value.replace(",", "")) == int(8 * res.enc.header_bytes + res.enc.z_bits
                                                   + res.enc.state_bits)


def test_settings_change_warns_until_compressed_again(compressed):
    at = compressed
    at.slider(key="quality").set_value(0.0).run()
    assert "Settings or photo changed" in texts(at)
    at.slider(key="quality").set_value(at.session_state["result"].key[4]).run()
    assert "Settings or photo changed" not in texts(at)


def test_decode_page_uses_the_last_run(compressed):
    at = compressed
    at.switch_page("app_pages/decode.py").run()
    assert_clean(at)
    at.checkbox(key="decode_last").check().run()
    assert_clean(at)
    assert len(at.image) == 1
    res = at.session_state["result"]
    assert any(m.label == "size" and m.value == f"{len(res.data):,} B" for m in at.metric)


def test_partition_picker_paths(checkpoint, small_png):
    at = new_app()
    sl = at.selectbox(key="explore_slices")
    uneven = [o for o in sl.options if "uneven" in o]
    assert len(uneven) >= 1
    sl.set_value(uneven[-1]).run()
    at.radio(key="explore_grid").set_value("4x4").run()
    at.radio(key="explore_order").set_value("phase-major").run()
    at.radio(key="explore_phases").set_value("raster").run()
    assert_clean(at)
    n = len(uneven[-1].split(", ")[1].split("+"))
    assert f"G = {n * 16} groups" in texts(at)
    assert "phase-major" in texts(at)
    # custom slices: a valid uneven one, then a bad sum and a non-number
    at.selectbox(key="explore_slices").set_value("custom slices...").run()
    at.text_input(key="explore_custom").set_value("16+16+32+128").run()
    assert_clean(at)
    assert "slices=16+16+32+128" in texts(at)
    assert "not in the checkpoint's training menu" in texts(at)
    at.text_input(key="explore_custom").set_value("100+100").run()
    assert_clean(at, errors_ok=True)
    assert any("sum to 200" in e.value for e in at.error)
    assert at.button(key="compress").disabled
    at.text_input(key="explore_custom").set_value("a+b").run()
    assert any("whole numbers" in e.value for e in at.error)
    assert not at.exception
    # a small grid run with the cache off and no comparison
    at.selectbox(key="explore_slices").set_value(at.selectbox(key="explore_slices").options[1]).run()
    at.radio(key="explore_grid").set_value("2x2").run()
    at.toggle(key="use_cache").set_value(False).run()
    at.toggle(key="compare_cache").set_value(False).run()
    upload(at, small_png, "crop.png")
    at.button(key="compress").click().run()
    assert_clean(at)
    res = at.session_state["result"]
    assert res.dec.use_cache is False and res.dec_other is None
    assert res.enc.partition.order[0] == (0, 0) and res.enc.partition.num_phases == 4
    assert "Turn on 'compare cache on/off'" in texts(at)


def test_sample_photo_path(checkpoint):
    at = new_app()
    samples = at.selectbox(key="explore_sample").options
    assert len(samples) >= 2
    at.selectbox(key="explore_sample").set_value(at.selectbox(key="explore_sample").options[-1]).run()
    assert_clean(at)
    assert len(at.image) >= 1


# --------------------------------------------------------------------------- bad input
def _bad_inputs(crop):
    h16 = (crop[..., 0].astype(np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, format="JPEG", exif=exif)
    cmyk = io.BytesIO()
    Image.fromarray(crop).convert("CMYK").save(cmyk, format="TIFF")
    huge = io.BytesIO()
    Image.new("L", (4200, 4200)).save(huge, format="PNG")
    return {
        # name: (bytes, file name, expected text, is an error)
        "not an image": (b"this is not an image at all" * 10, "notes.png", "not a readable image", True),
        "empty": (b"", "empty.png", "empty", True),
        "truncated": (png(crop)[:300], "cut.png", "damaged or truncated", True),
        "huge": (huge.getvalue(), "huge.png", "the limit is", True),
        "tiny": (png(crop[:3, :5]), "tiny.png", "smaller than 64 pixels", False),
        "grayscale": (png(crop[..., 0]), "gray.png", "grayscale converted", False),
        "rgba": (png(np.dstack([crop, np.full(crop.shape[:2], 128, np.uint8)])), "rgba.png",
                 "transparency flattened", False),
        "16-bit": (png(h16), "deep.png", "16-bit grayscale", False),
        "cmyk": (cmyk.getvalue(), "cmyk.tif", "CMYK converted", False),
        "exif-rotated": (buf.getvalue(), "rotated.jpg", "EXIF orientation", False),
    }


@pytest.mark.parametrize("case", ["not an image", "empty", "truncated", "huge", "tiny", "grayscale",
                                  "rgba", "16-bit", "cmyk", "exif-rotated"])
def test_bad_image_inputs(checkpoint, crop, case):
    data, name, expected, is_error = _bad_inputs(crop)[case]
    at = new_app()
    upload(at, data, name)
    assert not at.exception, [e.value for e in at.exception]
    if is_error:
        assert any(expected in e.value for e in at.error), [e.value for e in at.error]
        assert at.button(key="compress").disabled
    else:
        assert_clean(at)
        assert expected in texts(at), texts(at)
        assert not at.button(key="compress").disabled


def test_tiny_and_grayscale_images_compress(checkpoint, crop):
    at = new_app()
    upload(at, png(crop[:3, :5, 0]), "tiny_gray.png")
    at.button(key="compress").click().run()
    assert_clean(at)
    res = at.session_state["result"]
    assert res.rec.shape == (3, 5, 3)
    assert any(m.label == "MS-SSIM" and m.value == "n/a" for m in at.metric)


def test_broken_checkpoint(tmp_path, monkeypatch):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 100)
    monkeypatch.setenv("GMX_CHECKPOINT", str(bad))
    at = new_app()
    assert not at.exception
    assert any("Loading the checkpoint" in e.value for e in at.error)


# --------------------------------------------------------------------------- other pages
@pytest.fixture(scope="module")
def gmx(checkpoint, crop):
    from gm_core import Codec
    codec = Codec.load(checkpoint)
    data, _ = codec.compress(crop[:64, :96], "kc=2,grid=2x2", 1.0)
    return data


def _decode_page():
    at = new_app()
    at.switch_page("app_pages/decode.py").run()
    assert_clean(at)
    return at


def test_decode_page(gmx):
    at = _decode_page()
    assert "Download a .gmx file" in texts(at)
    at.file_uploader(key="gmx_upload").upload("x.gmx", gmx).run()
    assert_clean(at)
    assert len(at.image) == 1 and len(at.get("download_button")) == 1
    assert any(m.label == "groups" and m.value == "8" for m in at.metric)
    at.toggle(key="decode_cache").set_value(False).run()
    assert_clean(at)


def _other_weights_stream(crop):
    from gm_core import Codec
    from gm_core.checkpoint import random_model
    m, mid = random_model("tiny", seed=7)
    return Codec(m, mid).compress(crop[:64, :64], "kc=1,grid=1x1", 1.0)[0]


@pytest.mark.parametrize("case", ["corrupted", "truncated", "empty", "not gmx", "other weights"])
def test_decode_page_bad_streams(gmx, crop, case):
    bad = bytearray(gmx)
    if case == "corrupted":
        bad[len(bad) // 2] ^= 0xFF
        expected = "checksum mismatch"
    elif case == "truncated":
        bad = bad[: len(bad) - 10]
        expected = "truncated"
    elif case == "empty":
        bad = b""
        expected = "empty"
    elif case == "not gmx":
        bad = b"PNG not a stream" * 4
        expected = "not a .gmx stream"
    else:
        bad = _other_weights_stream(crop)
        expected = "other weights"
    at = _decode_page()
    at.file_uploader(key="gmx_upload").upload("bad.gmx", bytes(bad)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(expected in e.value for e in at.error), [e.value for e in at.error]


def test_ablation_page(checkpoint, small_png):
    at = new_app()
    at.switch_page("app_pages/ablation.py").run()
    assert_clean(at)
    upload(at, small_png, "crop.png", key="ablation")
    at.multiselect(key="abl_parts").set_value(["kc=1,grid=1x1", "kc=2,grid=2x2"]).run()
    at.text_input(key="abl_extra").set_value("slices=16+16+32+128,grid=2x2").run()
    assert_clean(at)
    at.button(key="abl_run").click().run()
    assert_clean(at)
    df = at.session_state["ablation"]
    assert list(df["groups"]) == [1, 8, 16]
    assert df["same_pixels"].all()
    assert (df["bpp"] > 0).all() and (df["decode_cache_off_s"] > 0).all()
    assert len(at.get("plotly_chart")) == 4
    at.text_input(key="abl_extra").set_value("slices=1+2").run()
    assert any("not valid" in e.value for e in at.error)
    assert not at.exception


def test_rd_page_without_results(monkeypatch, tmp_path, checkpoint):
    from app import pipeline as pl
    monkeypatch.setattr(pl, "RESULTS", tmp_path / "no_results_here")
    at = new_app()
    at.switch_page("app_pages/rd.py").run()
    assert_clean(at)
    assert "kodak_tiny.json` is absent" in texts(at)
    assert len(at.get("plotly_chart")) == 1


def test_rd_page_with_results(monkeypatch, tmp_path, checkpoint):
    from app import pipeline as pl
    d = tmp_path / "results"
    d.mkdir()
    ours = {"name": "GroupedMixer-tiny", "description": "test curve", "model_id": "0" * 16,
            "partition": "kc=4,grid=2x2", "qualities": [0, 1, 2, 3], "images": 24,
            "results": {"bpp": [0.2, 0.4, 0.7, 1.1], "psnr-rgb": [26.0, 28.5, 31.0, 33.5],
                        "ms-ssim": [0.9, 0.93, 0.96, 0.98]}}
    cls = {"JPEG": {"name": "JPEG (Pillow, live)",
                    "results": {"bpp": [0.3, 0.6, 1.0, 1.5], "psnr-rgb": [25, 28, 31, 33],
                                "ms-ssim": [0.8, 0.9, 0.95, 0.97], "quality": [10, 30, 60, 80]}}}
    (d / "kodak_tiny.json").write_text(json.dumps(ours))
    (d / "kodak_classical.json").write_text(json.dumps(cls))
    (d / "broken.json").write_text("{not json")
    monkeypatch.setattr(pl, "RESULTS", d)
    at = new_app()
    at.switch_page("app_pages/rd.py").run()
    assert_clean(at)
    assert "broken.json: unreadable" in texts(at)
    assert len(at.dataframe) >= 1
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {"JPEG (Pillow, live)", "VTM (VVC)"} <= {t.get("name") for t in spec["data"]}
    assert "BD-rate of GroupedMixer-tiny" in "\n".join(s.value for s in at.subheader)
    at.multiselect(key="rd_refs").set_value([]).run()
    assert_clean(at)


def test_rd_page_on_the_shipped_results(checkpoint):
    """What a user sees: the shipped assets/results, read without a single warning."""
    at = new_app()
    at.switch_page("app_pages/rd.py").run()
    assert_clean(at)
    assert not at.warning, [w.value for w in at.warning]
    assert "BD-rate of GroupedMixer-tiny" in "\n".join(s.value for s in at.subheader)


def test_about_page(checkpoint):
    at = new_app()
    at.switch_page("app_pages/about.py").run()
    assert_clean(at)
    body = texts(at)
    assert "Limits" in body and "127.0.0.1" in body and "MB" in body


def test_streamlit_config():
    import tomllib
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["headless"] is True
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["browser"]["gatherUsageStats"] is False
    from gm_core.images import MAX_FILE_BYTES
    assert cfg["server"]["maxUploadSize"] == MAX_FILE_BYTES >> 20
