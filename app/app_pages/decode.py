"""Decode a .gmx file: read its header, decode it with the loaded checkpoint, download the PNG."""
from pathlib import Path

import streamlit as st

from app import pipeline as pl
from app import ui
from gm_core import analysis as an

codec = ui.page_start(
    "Decode a .gmx file",
    "Upload a `.gmx` file made by this app (or `python -m gm_core compress`). It is "
    "decoded with the checkpoint chosen in the sidebar; a file made with other weights is "
    "refused with a message instead of decoding to garbage.")

up = st.file_uploader(f"A .gmx file (up to {pl.MAX_FILE_BYTES >> 20} MB)", type=["gmx"],
                      key="gmx_upload")
use_cache = st.toggle("Context cache", value=True, key="decode_cache",
                      help="Same image either way; with the cache the entropy model runs faster.")
last = st.session_state.get("result")
use_last = False
if up is None and last is not None:
    use_last = st.checkbox(f"Decode the .gmx from my last Compress run ({len(last.data):,} bytes)",
                           key="decode_last")
if up is None and not use_last:
    st.info("Download a .gmx file from the 'Download' tab of the Compress page, then drop it here.")
    st.stop()

data = up.getvalue() if up is not None else last.data
fname = up.name if up is not None else f"{st.session_state.get('result_name', 'last_run')}.gmx"
with ui.guard(f"Decoding {fname}"):
    header = codec.read_header(data)
    st.subheader("Header")
    st.json(header.to_json(), expanded=1)
    ui.explain("The header says which model made the file (its id must match the loaded "
               "checkpoint), the image size, the rate point and the group partition: everything "
               "the decoder needs besides the strings themselves.")
    with st.spinner("Decoding..."):
        img, trace = codec.decompress(data, use_cache=use_cache)
    H, W = img.shape[:2]
    c = st.columns(4)
    c[0].metric("size", f"{len(data):,} B")
    c[1].metric("bits per pixel", f"{len(data) * 8 / (H * W):.3f}")
    c[2].metric("groups", trace.partition.num_groups)
    c[3].metric("decode time", f"{sum(trace.timings.values()):.2f} s")
    st.image(img, caption=f"decoded: {W}x{H}", width="stretch")
    st.download_button("Download the decoded image (PNG)", pl.png_bytes(img),
                       file_name=f"{Path(fname).stem}_decoded.png", mime="image/png",
                       key="decode_dl_png")
    st.plotly_chart(an.group_bits_figure(trace), key="decode_bits", theme=None,
                    config={"displayModeBar": False})
    ui.explain("What each group costs in the file's y string (the exact cost of its symbols, "
               "measured while decoding), in decoding order, with the model's estimate (red).")
