"""Rate-distortion curves: shipped Kodak results of our checkpoints against published and classical
codecs. Nothing is recomputed here: the page reads the JSON files in assets/results/."""
import json

import pandas as pd
import streamlit as st

from app import pipeline as pl
from app import ui
from gm_core import evaluate

st.title("Rate-distortion curves on Kodak")
st.markdown("How good is the codec overall? Each curve is the average over the 24 Kodak photos "
            "at every rate point: further **up** (better quality) and further **left** (fewer bits) "
            "is better. This page only reads shipped result files; it computes nothing.")

RES = pl.RESULTS
try:
    RES_SHOWN = RES.relative_to(pl.ROOT)
except ValueError:
    RES_SHOWN = RES
ours, problems = [], []
classical_res = {}
if RES.is_dir():
    for p in sorted(RES.glob("*.json")):
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            problems.append(f"{p.name}: unreadable ({e})")
            continue
        if p.name == "kodak_classical.json":
            classical_res = d if isinstance(d, dict) else {}
        elif p.name == "kodak_bd.json":  # release.py's summary; this page computes its own BD-rates
            continue
        elif isinstance(d, dict) and "results" in d and "bpp" in d["results"]:
            d.setdefault("description", p.stem)
            d["label"] = f"{d.get('name', p.stem)} ({p.name})"
            ours.append(d)
        else:
            problems.append(f"{p.name}: not a CompressAI-format result file")
for msg in problems:
    st.warning(msg)

if not ours:
    st.warning(f"No results of our checkpoints yet: `{RES_SHOWN}/kodak_tiny.json` is "
               "absent. It is written by `python -m gm_core eval --out assets/results/kodak_tiny.json`. "
               "The curves below are the published and classical references only.")
if not classical_res:
    st.info(f"The classical codecs' Kodak curves (`{RES_SHOWN}/kodak_classical.json`) "
            "are absent; only published curves are shown for JPEG/WebP.")
reference = {}
with ui.guard("Reading the published curves"):
    reference = evaluate.load_reference()
if not reference:
    st.info(f"Published reference curves not found in {evaluate.REFERENCE_DIR}.")

pick = st.multiselect("Published curves to show", list(reference), default=list(reference),
                      key="rd_refs")
with ui.guard("Drawing the curves"):
    fig = evaluate.rd_figure(ours, classical_res, {k: reference[k] for k in pick},
                             title="Kodak, PSNR (RGB) vs bits per pixel")
    st.plotly_chart(fig, key="rd_fig", theme=None)
ui.explain("Thick lines: our checkpoint(s), real bitstreams, all 24 Kodak images. Dashed: JPEG, "
           "WebP and AVIF through Pillow on the same images. Dotted: published results of "
           "standard codecs (VTM is the VVC reference encoder, the state of the art among "
           "classical codecs) and of learned codecs from papers, which trained for days on GPUs. "
           "A small model trained for a few CPU hours is expected to sit well below them.")

if ours:
    with ui.guard("Computing BD-rates"):
        table = evaluate.rd_report(ours, classical_res, reference)
        st.subheader("BD-rate of " + ours[0]["label"])
        st.dataframe(pd.DataFrame([{"against": k, "BD-rate %": v} for k, v in table.items()]),
                     hide_index=True, column_config={
                         "BD-rate %": st.column_config.NumberColumn(format="%+.1f")})
        ui.explain("BD-rate: the average change in file size for the same PSNR, compared with "
                   "another codec over the range where both curves overlap (bjontegaard package). "
                   "Negative = we need fewer bits; +50% = we need 1.5x the bits. Empty when the "
                   "curves do not overlap.")
    for r in ours:
        with st.expander(f"details: {r['label']}"):
            st.write(r.get("description", ""))
            keep = {k: r.get(k) for k in ("model_id", "partition", "qualities", "images")}
            st.json(keep, expanded=False)
            st.dataframe(pd.DataFrame(r["results"]), hide_index=True)
