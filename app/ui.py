"""Shared Streamlit pieces: model loading (once), the sidebar, image input, partition picker,
error handling and the "what am I looking at" notes."""
from __future__ import annotations

import logging
import os
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from app import pipeline as pl
from gm_core import Codec, ContainerError, GroupPartition, ImageError, PartitionError
from gm_core.checkpoint import CheckpointError
from gm_core.train import partition_menu

log = logging.getLogger("gmx.app")


# --------------------------------------------------------------------------- errors and notes
@contextmanager
def guard(what: str):
    """Show any failure inside the block as a message on the page, never a traceback."""
    try:
        yield
    except (ImageError, ContainerError, PartitionError, CheckpointError) as e:
        st.error(f"{what}: {e}")
    except MemoryError:
        st.error(f"{what}: out of memory. Try a smaller image or a partition with fewer groups.")
    except Exception as e:  # noqa: BLE001 - the page must never show a traceback
        log.error("%s failed:\n%s", what, traceback.format_exc())
        st.error(f"{what} failed: {type(e).__name__}: {e}. The details are in the server log; "
                 "try another image or setting.")


def explain(text: str) -> None:
    """The short note for a student that sits beside every view."""
    st.caption(f"**What am I looking at?** {text}")


# --------------------------------------------------------------------------- model
@st.cache_resource(show_spinner="Loading the model (once per server)...", max_entries=4)
def _load_codec(path: str, mtime: float, device: str) -> Codec:
    codec = Codec.load(path, device)
    # One small round trip both ways builds the CDF tables and the float64 copy and warms the
    # kernels, so the first timings a user sees are not start-up costs.
    data, _ = codec.compress(np.zeros((64, 64, 3), np.uint8), "kc=2,grid=2x2")
    for cache in (True, False):
        codec.decompress(data, use_cache=cache)
    return codec


def load_codec(path: Path, device: str) -> Codec:
    return _load_codec(str(path), path.stat().st_mtime, device)


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def page_start(title: str, intro: str) -> Codec:
    """Title, a line of what the page is for, and the sidebar's model; stops the page if the
    checkpoint cannot be loaded (sidebar_model has said why)."""
    st.title(title)
    st.markdown(intro)
    codec = sidebar_model()
    if codec is None:
        st.stop()
    return codec


def sidebar_model() -> Codec | None:
    """Checkpoint, device and threads in the sidebar; returns the loaded codec (or None)."""
    sb = st.sidebar
    sb.subheader("Model")
    choices = pl.checkpoint_choices()
    existing = [p for p in choices if p.is_file()]
    if not existing:
        st.error("No checkpoint found. Put a trained `gmx_tiny.safetensors` in `assets/` "
                 "(or set the GMX_CHECKPOINT environment variable to a checkpoint file).")
        return None
    labels = {str(p): (p.name if p.parent == pl.ASSETS else str(p)) for p in existing}
    path = sb.selectbox("Checkpoint", [str(p) for p in existing], format_func=labels.get,
                        key="checkpoint",
                        help="The *.safetensors checkpoints shipped in assets/. One checkpoint "
                             "serves every rate point and every partition.")
    devs = devices()
    device = sb.radio("Device", devs, horizontal=True, key="device",
                      help="CUDA appears only when a GPU is present.")
    max_threads = max(1, os.cpu_count() or 1)
    threads = sb.slider("CPU threads", 1, max_threads, min(2, max_threads), key="threads",
                        help="torch.set_num_threads for this run: fewer threads = slower, but "
                             "the bitstream is the same.")
    torch.set_num_threads(int(threads))
    codec = None
    with guard("Loading the checkpoint"):
        codec = load_codec(Path(path), device)
    if codec is not None:
        meta = codec.meta or {}
        facts = [f"config **{codec.cfg.name}**", f"M = {codec.cfg.M} latent channels",
                 f"{codec.model.num_rates} rate points", f"id `{codec.model_id}`"]
        if "steps" in meta:
            facts.append(f"{meta['steps']:,} training steps")
        if "train_minutes" in meta:
            facts.append(f"{meta['train_minutes']} min of training")
        sb.caption(" · ".join(facts))
    return codec


# --------------------------------------------------------------------------- image input
def image_input(key: str, allow_upload: bool = True):
    """Sample photo or upload -> (image, name, notices), or None (with a message shown)."""
    samples = pl.sample_images()
    modes = (["Sample photo", "Upload my own"] if allow_upload else ["Sample photo"])
    mode = st.radio("Image", modes, horizontal=True, key=f"{key}_mode",
                    label_visibility="collapsed")
    if mode == "Sample photo":
        if not samples:
            st.error("No sample photos in assets/samples/; upload an image instead.")
            return None
        path = st.selectbox("Sample photo", samples, format_func=lambda p: p.stem.replace("_", " "),
                            key=f"{key}_sample")
        src, name = Path(path), Path(path).name
    else:
        up = st.file_uploader(
            f"Upload a photo ({', '.join(t.upper() for t in pl.UPLOAD_TYPES)}; up to "
            f"{pl.MAX_FILE_BYTES >> 20} MB)", type=pl.UPLOAD_TYPES, key=f"{key}_upload")
        if up is None:
            st.info("Drop a photo above, or switch to a sample photo.")
            return None
        src, name = up.getvalue(), up.name
    out = None
    with guard(f"Reading {name}"):
        img, notices = pl.prepare_image(src)
        out = (img, name, notices)
    return out


# --------------------------------------------------------------------------- partition picker
def slice_presets(M: int) -> dict[str, tuple[int, ...]]:
    """Channel slicings: every one in the training menu, even and uneven."""
    out = {}
    for part in partition_menu(M):
        sl = part.slices
        if len(set(sl)) == 1:
            label = f"kc={len(sl)}: even, {len(sl)} x {sl[0]} channels"
        else:
            label = f"kc={len(sl)}: uneven, {'+'.join(map(str, sl))}"
        out.setdefault(label, sl)
    return out


def partition_picker(M: int, default_spec: str, key: str) -> GroupPartition | None:
    """kc (even or uneven), grid, coding order and phase order -> a validated GroupPartition."""
    presets = slice_presets(M)
    default = GroupPartition.parse(default_spec, M)
    labels = list(presets) + ["custom slices..."]
    idx = next((i for i, sl in enumerate(presets.values()) if sl == default.slices), 0)
    c1, c2 = st.columns([3, 2])
    choice = c1.selectbox("Channel slices (kc)", labels, index=idx, key=f"{key}_slices",
                          help="How the latent's channels are cut into slices. Uneven slices "
                               "(small first) let the first, most informative channels be coded "
                               "early and cheaply.")
    if choice == "custom slices...":
        text = c1.text_input("Slices, e.g. 16+16+32+128", value="+".join(map(str, default.slices)),
                             key=f"{key}_custom")
        try:
            slices = tuple(int(v) for v in text.replace(",", "+").split("+") if v.strip())
        except ValueError:
            st.error(f"Slices must be whole numbers joined by '+', got {text!r}.")
            return None
    else:
        slices = presets[choice]
    grid = c2.radio("Spatial grid", ["1x1", "2x2", "4x4"], index=["1x1", "2x2", "4x4"].index(
        f"{default.grid[0]}x{default.grid[1]}") if default.grid in ((1, 1), (2, 2), (4, 4)) else 1,
        horizontal=True, key=f"{key}_grid",
        help="kh x kw phases: group (i, j) holds the latent positions with row mod kh = i and "
             "column mod kw = j, so each spatial group spans the whole image.")
    order = c2.radio("Coding order", ["slice-major", "phase-major"], horizontal=True,
                     key=f"{key}_order",
                     help="slice-major: all phases of slice 0, then slice 1, ...; phase-major: all "
                          "slices of phase 0, then phase 1, ...")
    phases = c2.radio("Phase order", ["bayer", "raster"], horizontal=True, key=f"{key}_phases",
                      help="bayer: for 2x2 the first two phases form a checkerboard; raster: "
                           "row by row.")
    kh = int(grid[0])
    try:
        return GroupPartition.build(M, slices=slices, grid=(kh, kh), order=order, phases=phases)
    except PartitionError as e:
        st.error(f"This partition is not valid: {e}")
        return None


def partition_summary(part: GroupPartition, M: int) -> None:
    trained = part in partition_menu(M)
    st.markdown(f"**G = {part.num_groups} groups** ({part.num_slices} slices x "
                f"{part.num_phases} phases): `{part.to_spec()}`")
    if not trained:
        st.warning("This partition is not in the checkpoint's training menu: it still codes and "
                   "decodes exactly, but the entropy model never practised it, so expect more bits.")


def partition_picture(part: GroupPartition, latent_shape=(8, 8), key: str = "part_pic") -> None:
    from gm_core import analysis as an
    st.plotly_chart(an.partition_figure(part, latent_shape, height=220), key=key, theme=None,
                    config={"displayModeBar": False})
    explain("An 8x8 corner of the latent grid (each cell is one latent position = a 16x16 pixel "
            "block). There is one panel per channel slice; the number in a cell is the decoding "
            "step at which that slice at that position is decoded. Low numbers are decoded first and "
            "can only be predicted from the hyperprior; later steps see everything decoded "
            "before them.")


def upscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement so zoomed crops show real pixels, not browser smoothing."""
    return np.repeat(np.repeat(img, factor, 0), factor, 1) if factor > 1 else img


def colorize(arr: np.ndarray, vmax: float | None = None, cmap: str = "magma") -> np.ndarray:
    import matplotlib
    a = np.asarray(arr, dtype=np.float64)
    vmax = float(vmax if vmax is not None else max(np.nanpercentile(a, 99), 1e-9))
    rgb = matplotlib.colormaps[cmap](np.clip(np.nan_to_num(a) / vmax, 0, 1))[..., :3]
    return (rgb * 255).astype(np.uint8)
