"""The GroupedMixer lab: `streamlit run app/main.py` (from the repository root).

A thin entry point: it makes gm_core importable, sets up the page and hands over to the pages in
app/app_pages/. Heavy objects (the model) are loaded once per server with st.cache_resource.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="GroupedMixer lab", page_icon=":material/compress:", layout="wide")

PAGES = Path(__file__).resolve().parent / "app_pages"
nav = st.navigation([
    st.Page(PAGES / "explore.py", title="Compress & explore", icon=":material/compress:", default=True),
    st.Page(PAGES / "decode.py", title="Decode a .gmx file", icon=":material/file_open:"),
    st.Page(PAGES / "ablation.py", title="Partition ablation", icon=":material/table_chart:"),
    st.Page(PAGES / "rd.py", title="Rate-distortion curves", icon=":material/show_chart:"),
    st.Page(PAGES / "about.py", title="About & limits", icon=":material/info:"),
])
from app.ui import guard  # noqa: E402

# A last safety net: the pages guard each view themselves; anything that still escapes is shown
# as a message, never as a traceback (st.stop / st.rerun are not Exceptions and pass through).
with guard("This page"):
    nav.run()
