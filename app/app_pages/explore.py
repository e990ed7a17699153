"""Compress & explore: pick a photo, a rate point and a partition, press Compress, look inside."""
from pathlib import Path

import streamlit as st

from app import pipeline as pl
from app import ui, views

codec = ui.page_start(
    "GroupedMixer lab",
    "A learned image codec you can look inside. **1.** pick a photo, **2.** choose how the "
    "latent is split into groups, **3.** press **Compress**. The photo is coded into a real "
    "`.gmx` file, decoded again, and every view below is read from that run.")
cfg = codec.cfg

left, right = st.columns([2, 3], gap="large")
with left:
    st.subheader("1. Photo")
    picked = ui.image_input("explore")
    if picked is not None:
        img, name, notices = picked
        st.image(img, caption=f"{name}: {img.shape[1]}x{img.shape[0]} pixels", width="stretch")
        for n in notices:
            st.info(n)
        if min(img.shape[:2]) < 64:
            st.info("This image is smaller than 64 pixels on a side: it is padded to whole 64x64 "
                    "cells for coding, so the header and the padding dominate the file size.")
    st.subheader("3. Compress")
    compress_slot = st.empty()
    st.caption(f"Limits: files up to {pl.MAX_FILE_BYTES >> 20} MB; photos above "
               f"{pl.APP_MAX_PIXELS / 1e6:.2f} megapixels are downscaled; attention maps are traced "
               f"up to {pl.ATTN_MAX_TOKENS} latent positions.")

with right:
    st.subheader("2. Settings")
    n = codec.model.num_rates
    quality = st.slider("Rate point (quality)", 0.0, float(n - 1), codec.default_quality(), 0.25,
                        key="quality",
                        help=f"0 = smallest file, {n - 1} = best quality. One checkpoint serves "
                             "every rate point; fractional values interpolate between the "
                             f"{n} trained points (lambda {cfg.lambdas[0]} .. {cfg.lambdas[-1]}).")
    part = ui.partition_picker(cfg.M, cfg.default_partition, key="explore")
    if part is not None:
        ui.partition_summary(part, cfg.M)
        ui.partition_picture(part, (8, 8), key="explore_part_pic")
    c1, c2 = st.columns(2)
    use_cache = c1.toggle("Context cache", value=True, key="use_cache",
                          help="Reuse the cross-group keys/values of earlier steps while decoding "
                               "(same result, less work).")
    compare = c2.toggle("Compare cache on/off (decode twice)", value=True, key="compare_cache",
                        help="Also decode with the other cache setting for the latency view. "
                             "Costs one more (slower) decode.")

ready = picked is not None and part is not None
clicked = compress_slot.button("Compress", type="primary", disabled=not ready, key="compress",
                               icon=":material/compress:", width="stretch",
                               help="Code the photo into a .gmx file with these settings, decode "
                                    "it, and open the views below.")

key = None
if ready:
    key = (codec.model_id, str(codec.device), pl.image_digest(img), part.to_spec(), float(quality),
           bool(use_cache), bool(compare))

if clicked and ready:
    st.session_state.pop("result", None)
    st.session_state.pop("_prog_cache", None)
    with ui.guard("Compressing"):
        with st.status("Compressing...", expanded=False) as status:
            res = pl.run_core(codec, img, part, float(quality), use_cache=use_cache,
                              compare_cache=compare, progress=lambda m: status.update(label=m))
            res.key = key
            res.notices = notices + res.notices
            st.session_state["result"] = res
            st.session_state["result_name"] = Path(name).stem
            status.update(label=f"Compressed and decoded in {sum(res.wall.values()):.1f} s",
                          state="complete")

res = st.session_state.get("result")
if res is None:
    st.info("Press **Compress** to code the photo and open the views.")
    st.stop()
if res.key[0] != codec.model_id:
    st.warning("The checkpoint changed since the last run; press Compress again.")
    st.stop()
if key is not None and res.key != key:
    st.warning("Settings or photo changed since the last run: the views below still show the last "
               "run. Press **Compress** to update them.")

st.divider()
tabs = st.tabs(["Result", "Bit allocation", "Entropy parameters", "Attention", "Latency",
                "Progressive decoding", "Download"])
renders = [lambda: views.render_result(res), lambda: views.render_bits(res),
           lambda: views.render_entropy(res), lambda: views.render_attention(res),
           None, lambda: views.render_progressive(res, codec),
           lambda: views.render_downloads(res, st.session_state.get("result_name", "image"), codec)]
names = ["the result", "bit allocation", "entropy parameters", "attention", "latency",
         "progressive decoding", "downloads"]
slots = {}
for tab, render, what in zip(tabs, renders, names):
    with tab:
        if render is not None:
            with ui.guard(f"Showing {what}"):
                render()
        if what == "the result":
            slots["classical"] = st.empty()
        if what == "latency":
            slots["latency"] = st.empty()

# The second phase (classical codecs, the second decode) runs after the views above are on the
# page, and fills its two places when done; it resumes on the next run if it was interrupted.
if res.classical_pending:
    slots["classical"].info("Running JPEG, WebP and AVIF at the same bpp...")
else:
    with slots["classical"].container(), ui.guard("Showing the classical codecs"):
        views.render_classical(res)
if res.compare_pending:
    slots["latency"].info("Measuring the second decode (cache on vs off)...")
else:
    with slots["latency"].container(), ui.guard("Showing latency"):
        views.render_latency(res)
if res.pending:
    done = False
    with ui.guard("Running the comparisons"):
        with st.spinner("Running the classical codecs and the second decode..."):
            if res.classical_pending:
                pl.add_classical(res)
                with slots["classical"].container(), ui.guard("Showing the classical codecs"):
                    views.render_classical(res)
            if res.compare_pending:
                pl.add_other_decode(codec, res)
                with slots["latency"].container(), ui.guard("Showing latency"):
                    views.render_latency(res)
        done = True
    if not done:  # do not retry a failing comparison on every rerun
        res.want_classical = res.want_classical and res.classical is not None
        res.want_compare = res.want_compare and res.dec_other is not None
