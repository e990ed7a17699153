"""Partition ablation: the same photo under several partitions, cache on and off."""
import pandas as pd
import plotly.express as px
import streamlit as st

from app import pipeline as pl
from app import ui
from gm_core import GroupPartition, PartitionError
from gm_core.train import partition_menu


def short(spec: str) -> str:
    """kc=4,grid=2x2,order=phase-major -> 'kc=4 2x2 phase-major' (chart labels)."""
    parts = [p.split("=", 1) for p in spec.split(",")]
    return " ".join(v if k in ("slices", "grid", "order", "phases") else f"{k}={v}" for k, v in parts)


codec = ui.page_start(
    "Partition ablation",
    "How does the choice of groups change the file size, the quality and the decoding "
    "time? Pick a few partitions, press **Run ablation**: each one is compressed and "
    "decoded twice (context cache on and off) on the same photo and rate point.")
cfg = codec.cfg

left, right = st.columns([2, 3], gap="large")
with left:
    picked = ui.image_input("ablation")
    if picked is not None:
        img, name, notices = picked
        img, more = pl.downscale(img, pl.ABLATION_MAX_PIXELS)
        for n in notices + more:
            st.info(n)
        st.image(img, caption=f"{name}: {img.shape[1]}x{img.shape[0]}", width="stretch")
with right:
    menu = [p.to_spec() for p in partition_menu(cfg.M)]
    default = [s for s in ("kc=1,grid=1x1", "kc=4,grid=1x1", "kc=1,grid=2x2",
                           GroupPartition.parse(cfg.default_partition, cfg.M).to_spec()) if s in menu]
    chosen = st.multiselect("Partitions (from the checkpoint's training menu)", menu,
                            default=default, key="abl_parts",
                            help="kc = channel slices, grid = spatial phases; G = kc x kh x kw.")
    extra = st.text_input("Another partition (optional), e.g. slices=16+16+32+128,grid=4x4",
                          key="abl_extra")
    quality = st.slider("Rate point", 0.0, float(codec.model.num_rates - 1),
                        codec.default_quality(), 0.25, key="abl_quality")
    ui.explain("G = 1 (kc=1, 1x1) is the plain hyperprior model: no context at all, one decoding "
               "step. More groups give the entropy model more context (fewer bits) but more "
               "decoding steps; the context cache keeps those steps cheap.")

parts = []
for spec in chosen:
    parts.append(GroupPartition.parse(spec, cfg.M))
if extra.strip():
    try:
        parts.append(GroupPartition.parse(extra, cfg.M))
    except PartitionError as e:
        st.error(f"The extra partition is not valid: {e}")
if len(parts) > 8:
    st.warning("At most 8 partitions per run (each costs three codec runs); using the first 8.")
    parts = parts[:8]

run = st.button("Run ablation", type="primary", disabled=picked is None or not parts, key="abl_run")
if run:
    with ui.guard("Running the ablation"):
        bar = st.progress(0.0, text="starting")
        rows = pl.run_ablation(codec, img, parts, quality,
                               progress=lambda k, p: bar.progress(k / len(parts),
                                                                  text=f"{p.to_spec()} ({k + 1}/{len(parts)})"))
        bar.progress(1.0, text="done")
        st.session_state["ablation"] = pd.DataFrame(rows)

df = st.session_state.get("ablation")
if df is None:
    st.stop()
st.dataframe(df, hide_index=True, column_config={
    c: st.column_config.NumberColumn(format="%.3f") for c in
    ("bpp", "psnr", "encode_s", "decode_cache_on_s", "decode_cache_off_s", "entropy_on_s",
     "entropy_off_s", "speedup")})
ui.explain("One row per partition: real file size (bpp), quality (PSNR) and wall-clock times. "
           "'same_pixels' checks that decoding with and without the cache gave the same image.")

lab = df.assign(label=[f"{short(p)} (G={g})" for p, g in zip(df["partition"], df["groups"])])
a, b, c = st.columns(3)
layout = {"height": 400, "template": "plotly_white", "xaxis_title": None,
          "margin": {"l": 10, "r": 10, "t": 40, "b": 10}}
fig = px.bar(lab, x="label", y="bpp", title="bits per pixel (lower is better)")
fig.update_layout(**layout)
a.plotly_chart(fig, key="abl_bpp", theme=None)
fig = px.bar(lab, x="label", y="psnr", title="PSNR dB (higher is better)")
fig.update_layout(**layout)
fig.update_yaxes(range=[max(0, df["psnr"].min() - 2), df["psnr"].max() + 1])
b.plotly_chart(fig, key="abl_psnr", theme=None)
long = lab.melt(id_vars="label", value_vars=["decode_cache_on_s", "decode_cache_off_s"],
                var_name="decode", value_name="seconds")
long["decode"] = long["decode"].map({"decode_cache_on_s": "cache on", "decode_cache_off_s": "cache off"})
fig = px.bar(long, x="label", y="seconds", color="decode", barmode="group",
             title="decode time, cache on vs off")
fig.update_layout(**layout, legend={"orientation": "h", "y": 1.02, "x": 0, "title": None})
c.plotly_chart(fig, key="abl_time", theme=None)
fig = px.scatter(lab, x="bpp", y="psnr", text="label", size="groups", title="rate vs quality",
                 template="plotly_white", height=380)
fig.update_traces(textposition="top center")
st.plotly_chart(fig, key="abl_rd", theme=None)
ui.explain("Same photo, same rate point. The PSNR is the same for every partition: the latent "
           "is rounded the same way whatever the grouping, so the partition changes only the "
           "number of bits (and the time), never the decoded image. Partitions that give the "
           "entropy model more useful context need fewer bits (points further left). The time "
           "chart shows the price: the decoder runs G steps, and without the cache step g redoes "
           "the work of all steps before it.")
