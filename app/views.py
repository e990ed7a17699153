"""The result views of the Compress page, one function per tab; all numbers come from the Result
(real bytes and traces) through gm_core.analysis."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import pipeline as pl
from app.ui import colorize, explain, guard, upscale
from gm_core import analysis as an

PLOT_CFG = {"displayModeBar": False}


def chart(fig, key: str, where=st) -> None:
    """A plotly figure with its own colours (Streamlit's theme would recolour the heat maps)."""
    where.plotly_chart(fig, key=key, config=PLOT_CFG, theme=None)


def _fmt_s(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


# --------------------------------------------------------------------------- result
def render_result(res: pl.Result) -> None:
    enc = res.enc
    H, W = res.image.shape[:2]
    c = st.columns(6)
    c[0].metric("bits per pixel", f"{enc.bpp:.3f}", help="8 x (file bytes) / (pixels): the real .gmx size")
    c[1].metric("file size", f"{len(res.data):,} B", help=f"{H}x{W} image; the raw RGB would be "
                f"{H * W * 3:,} bytes")
    c[2].metric("PSNR", f"{res.psnr:.2f} dB", help="RGB, 8-bit, of the decoded image")
    c[3].metric("MS-SSIM", "n/a" if np.isnan(res.ms_ssim) else f"{res.ms_ssim:.4f}",
                help="needs at least 161 pixels per side")
    c[4].metric("groups G", enc.partition.num_groups)
    c[5].metric("encode / decode", f"{res.wall['compress']:.1f} / {res.wall['decode']:.1f} s",
                help="wall-clock seconds of this run; the Latency tab has the details")
    for n in res.notices:
        st.info(n)
    explain("The photo was compressed to a real .gmx file, and that file was decoded again: the "
            "size and quality here are those of the actual bytes, not an estimate. Bits per pixel "
            "(bpp) is the file size per pixel; PSNR (higher is better, ~30 dB looks decent) and "
            "MS-SSIM (1.0 = identical) compare the decoded image with the original.")

    st.markdown("#### Original and reconstruction")
    a, b = st.columns(2)
    a.image(res.image, caption=f"original ({W}x{H})", width="stretch")
    b.image(res.rec, caption=f"decoded from {len(res.data):,} bytes ({enc.bpp:.3f} bpp)",
            width="stretch")

    st.markdown("#### Zoom and error map")
    z1, z2, z3 = st.columns(3)
    cy = z1.slider("zoom centre, vertical (%)", 0, 100, 50, key="zoom_y")
    cx = z2.slider("zoom centre, horizontal (%)", 0, 100, 50, key="zoom_x")
    size = z3.select_slider("crop size (pixels)", [32, 64, 96, 128, 192], value=96, key="zoom_size")
    err = an.error_map(res.image, res.rec)
    emax = max(float(np.percentile(err, 99.5)), 4.0)
    zoom_row(st.columns(5), [("original", res.image), ("GroupedMixer (ours)", res.rec),
                             ("our error (same crop)", colorize(err, emax))], (cy / 100, cx / 100), size)
    e1, e2 = st.columns([1, 1])
    e1.image(colorize(err, emax), caption=f"error map: |original - decoded| averaged over RGB; "
             f"black = 0, white = {emax:.0f} or more (of 255)", width="stretch")
    with e2:
        explain("The zoomed crops show the same spot of the original and of our decoding, "
                "enlarged so single pixels are visible (the classical codecs' crops of the same "
                "spot are below their table). The error map is bright where the decoded image differs most from the "
                "original: usually edges and fine texture, which cost the most bits to keep.")



def zoom_row(cols, items, center, size: int) -> None:
    """The same spot of several images, enlarged so single pixels are visible."""
    factor = max(1, 256 // size)
    for col, (name, im) in zip(cols, items):
        col.image(upscale(an.zoom_crop(im, center, size), factor), caption=name, width="stretch")


def render_classical(res: pl.Result) -> None:
    enc = res.enc
    st.markdown("#### Classical codecs at about the same bpp")
    rows = [{"codec": "GroupedMixer (this model)", "setting": f"quality {enc.quality:g}",
             "bpp": enc.bpp, "bytes": len(res.data), "PSNR dB": res.psnr, "MS-SSIM": res.ms_ssim}]
    for r in res.classical:
        if "error" in r:
            rows.append({"codec": r["codec"], "setting": f"unavailable: {r['error']}"})
        else:
            rows.append({"codec": f"{r['codec']} (Pillow)", "setting": f"quality {r['quality']}",
                         "bpp": r["bpp"], "bytes": len(r["bytes"]), "PSNR dB": r["psnr"],
                         "MS-SSIM": r["ms_ssim"]})
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "bpp": st.column_config.NumberColumn(format="%.3f"),
        "PSNR dB": st.column_config.NumberColumn(format="%.2f"),
        "MS-SSIM": st.column_config.NumberColumn(format="%.4f")})
    ok = [r for r in res.classical if "image" in r]
    if ok:
        cy = st.session_state.get("zoom_y", 50) / 100
        cx = st.session_state.get("zoom_x", 50) / 100
        size = st.session_state.get("zoom_size", 96)
        zoom_row(st.columns(5), [("original", res.image), ("GroupedMixer (ours)", res.rec)]
                 + [(f"{r['codec']} q{r['quality']}: {r['bpp']:.3f} bpp, "
                     f"{r['psnr']:.2f} dB", r["image"]) for r in ok], (cy, cx), size)
        with st.expander("the classical codecs' full images"):
            cols = st.columns(len(ok))
            for col, r in zip(cols, ok):
                col.image(r["image"], caption=f"{r['codec']} quality {r['quality']}", width="stretch")
    explain("JPEG, WebP and AVIF (through Pillow) were each run at the quality setting whose file "
            "size lands closest to ours, so the comparison is at (about) equal size. At equal bpp, "
            "the higher PSNR / MS-SSIM wins. The crops show the same spot as the zoom above. A "
            "small, briefly trained model may lose to AVIF; the RD page shows the full curves.")


# --------------------------------------------------------------------------- bits
def render_bits(res: pl.Result) -> None:
    enc = res.enc
    s = an.bits_summary(enc)
    c = st.columns(4)
    c[0].metric("header", f"{s['header_bits'] // 8} B")
    c[1].metric("z (side information)", f"{s['z_bits'] // 8:,} B")
    c[2].metric("y, all groups (real)", f"{s['y_bits'] // 8:,} B")
    c[3].metric("y (model's estimate)", f"{s['y_est_bits'] / 8:,.0f} B")
    chart(an.group_bits_figure(enc), "bits_groups")
    explain("All groups share one rANS string (y). Each bar is what one group costs in it: the "
            "exact cost of its symbols under the coder's integer tables, in the order the decoder "
            f"reads them; with the coder's final state ({s['state_bits']:.0f} bits, read first) they "
            "add up to y's length. z is the hyperprior's side information, sent first. Red diamonds "
            "are what the entropy model expected to spend (-log2 of its probabilities). Early "
            "groups are predicted only from the hyperprior, later ones also from the groups "
            "before them, so later groups usually cost fewer bits per element.")
    df = an.group_table(enc)
    st.dataframe(df, hide_index=True, column_config={
        "coded_bits": st.column_config.NumberColumn(format="%.0f"),
        "est_bits": st.column_config.NumberColumn(format="%.0f"),
        "cumulative_bits": st.column_config.NumberColumn(format="%.0f"),
        "share_%": st.column_config.NumberColumn(format="%.1f"),
        "bits_per_element": st.column_config.NumberColumn(format="%.3f"),
        "overhead_%": st.column_config.NumberColumn(format="%+.1f")})

    a, b = st.columns(2)
    with a:
        chart(an.split_figure(an.bits_by_slice(enc), "channels", "Bits by channel slice"),
              "bits_slice")
        explain("The same coded bits added up per channel slice (slices can hold different numbers "
                "of channels: compare the table's bits per element). In a well-trained model the "
                "first channels carry most of the image's energy and most of the bits per channel.")
    with b:
        chart(an.split_figure(an.bits_by_phase(enc), "phase",
                              "Bits by spatial phase (coding order)"), "bits_phase")
        explain("Added up per spatial phase (i, j), in the order the phases are first coded. The "
                "first phase has no decoded spatial neighbours; if the model uses spatial context, "
                "later phases cost less. Equal bars mean it gains little from neighbours (yet).")

    st.markdown("#### Where the bits go in the picture")
    G = enc.partition.num_groups
    g = st.select_slider("group", list(range(G)), value=0, key="bits_group",
                         format_func=lambda k: enc.partition.group_label(k))
    a, b, c3 = st.columns(3)
    with a:
        chart(an.heatmap_figure(an.group_bit_map(enc, g), f"group {g} on its sub-lattice",
                                colorbar="bits"), "bits_sub")
    with b:
        chart(an.heatmap_figure(an.group_bit_map(enc, g, full=True),
                                f"group {g} on the full latent grid", colorbar="bits"), "bits_full")
    with c3:
        total = an.total_bit_map(enc)
        heat = np.kron(total, np.ones((16, 16)))[: res.image.shape[0], : res.image.shape[1]]
        st.image(an.overlay(res.image, heat, alpha=0.55), caption="all groups: bits per 16x16 "
                 "block over the photo (bright = many bits)", width="stretch")
    explain("Left: the (estimated) bits of the chosen group at each of its positions, summed over "
            "its channels; a group covers every kh-th row and kw-th column of the latent grid, so it "
            "is a small sub-sampled image. Middle: the same values placed on the full latent grid "
            "(blank = positions of other phases). Right: all groups together over the photo: "
            "textured regions cost bits, flat sky is nearly free.")


# --------------------------------------------------------------------------- entropy parameters
def render_entropy(res: pl.Result) -> None:
    enc = res.enc
    part = enc.partition
    G = part.num_groups
    g = st.select_slider("group", list(range(G)), value=min(1, G - 1), key="ent_group",
                         format_func=lambda k: part.group_label(k))
    maps = an.group_param_maps(enc, g)
    cols = st.columns(2) + st.columns(2)
    specs = [("mean", "predicted mean (avg over channels)", "RdBu", 0),
             ("scale", "predicted scale (avg)", "Viridis", None),
             ("y_hat", "actual |y_hat| (avg)", "Viridis", None),
             ("bits", "bits (sum over channels)", "Plasma", None)]
    for col, (k, title, cs, zmid) in zip(cols, specs):
        with col:
            chart(an.heatmap_figure(maps[k], title, cs, zmid=zmid, height=320), f"ent_{k}")
    explain("For every latent element the entropy model predicts a Gaussian: a mean (its best "
            "guess of the value) and a scale (how unsure it is). Small scale + good mean = few "
            "bits. Compare the scale map with the bits map: they look alike, because uncertainty "
            "is what costs bits.")

    st.markdown("#### Latent channel viewer")
    M = enc.y_hat.shape[0]
    pc = an.bits_per_channel(enc)
    c = st.slider("channel", 0, M - 1, int(pc["est_bits"].idxmax()), key="ent_channel",
                  help="starts at the channel that costs the most bits")
    ch = an.latent_channel(enc, c)
    cols = st.columns(3) + st.columns(3)
    for col, (k, title, cs, zmid) in zip(cols, [
            ("y_hat", "y_hat (decoded value)", "RdBu", 0), ("mean", "predicted mean", "RdBu", 0),
            ("scale", "predicted scale", "Viridis", None), ("residual", "y_hat - mean", "RdBu", 0),
            ("bits", "bits", "Plasma", None), ("step", "decoding step", "Turbo", None)]):
        with col:
            chart(an.heatmap_figure(ch[k], title, cs, zmid=zmid, height=280), f"ch_{k}")
    explain(f"Channel {c} of the {M}-channel latent over the whole image: the quantised value the "
            "synthesis transform receives, what the entropy model predicted for it, how unsure it "
            "was, what was left over (the residual is what the bits actually describe) and the step "
            "at which each position was decoded. Channels that are almost all zero cost nearly "
            "nothing.")
    import plotly.express as px
    fig = px.bar(pc.assign(slice=pc["slice"].astype(str)), x="channel", y="est_bits", color="slice",
                 height=280,
                 title="estimated bits per channel", template="plotly_white")
    fig.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10})
    chart(fig, "ch_bits_bar")
    explain("Bits per latent channel (model estimate), coloured by channel slice. When a few "
            "channels carry most of the information, small slices for them (uneven slices, "
            "coded first) give the later channels the most context.")


# --------------------------------------------------------------------------- attention
def render_attention(res: pl.Result) -> None:
    enc = res.enc
    if not enc.attention:
        st.info("Attention maps were not traced for this image (it is larger than "
                f"{pl.ATTN_MAX_TOKENS} latent positions). Try a smaller image.")
        return
    part = enc.partition
    layers = an.attention_layers(enc.attention)
    inner = layers[layers["kind"] == "inner"]
    cross = layers[layers["kind"] == "cross"]
    G = part.num_groups
    heads = int(inner.iloc[0]["heads"])
    head_opts = ["mean"] + list(range(heads))

    st.markdown("#### Inner-group attention: who looks where inside one group")
    c = st.columns(4)
    li = c[0].selectbox("inner layer", list(inner["layer"]), key="att_inner_layer",
                        format_func=lambda k: f"block {int(layers.loc[k, 'block'])} (layer {k})")
    step = c[1].slider("step", 0, G - 1, min(1, G - 1), key="att_step")
    head = c[2].selectbox("head", head_opts, key="att_head",
                          format_func=lambda h: "average of heads" if h == "mean" else f"head {h}")
    Hg, Wg = enc.attention[int(li)]["grid"]
    qr = c[3].slider("query row", 0, Hg - 1, Hg // 2, key="att_qr")
    qc = c[3].slider("query column", 0, Wg - 1, Wg // 2, key="att_qc")
    m = an.inner_attention_map(enc.attention, int(li), step, (qr, qc), head)
    a, b = st.columns(2)
    with a:
        fig = an.heatmap_figure(m, f"step {step} ({part.group_label(step)})", "Plasma",
                                colorbar="weight", height=340)
        fig.add_scatter(x=[qc], y=[qr], mode="markers", showlegend=False,
                        marker={"symbol": "x", "size": 14, "color": "cyan"})
        chart(fig, "att_inner")
    with b:
        heat = an.grid_to_image(m, part, step, res.image.shape[:2])
        st.image(an.overlay(res.image, heat, alpha=0.65),
                 caption="the same weights over the photo (dimmed = outside the attention window)",
                 width="stretch")
    win = enc.attention[int(li)]["window"]
    explain(f"Step {step} predicts one group, one token per position of its {Hg}x{Wg} grid. The "
            "map shows how much the token at the cyan cross draws on every other token of the "
            f"same step (weights sum to 1). Attention is windowed ({win[0]}x{win[1]} tokens) to "
            "bound memory, so only the query's window lights up. These are the weights of the "
            "encoder's single teacher-forced pass, which the decoder reproduces step by step.")

    st.markdown("#### Cross-group attention: which earlier steps a position listens to")
    c = st.columns(4)
    lc = c[0].selectbox("cross layer", list(cross["layer"]), key="att_cross_layer",
                        format_func=lambda k: f"block {int(layers.loc[k, 'block'])} (layer {k})")
    Hc, Wc = enc.attention[int(lc)]["weights"].shape[:2]
    pr = c[1].slider("position row", 0, Hc - 1, Hc // 2, key="att_pr")
    pcol = c[2].slider("position column", 0, Wc - 1, Wc // 2, key="att_pc")
    qstep = c[3].slider("query step", 0, G - 1, G - 1, key="att_qstep")
    df = an.cross_attention_table(enc.attention, part, int(lc), (pr, pcol), qstep, "mean")
    a, b = st.columns(2)
    with a:
        chart(an.cross_attention_figure(df, qstep), "att_cross")
    with b:
        mat = an.cross_attention_matrix(enc.attention, int(lc), (pr, pcol))
        chart(an.heatmap_figure(np.where(np.tril(np.ones_like(mat)) > 0, mat, np.nan),
                                "all steps (row = query step, column = key step)",
                                "Plasma", colorbar="weight", height=300), "att_cross_mat")
    explain("At one position, the token of each step may look back at the tokens of every earlier "
            "step (never ahead: that is what makes decoding possible). The token of step k carries "
            "the values decoded at step k-1, so a tall bar at step k means 'the group decoded just "
            "before step k was useful here'. The right panel shows every step at once (averaged "
            "over heads); it is triangular because the future is masked.")


# --------------------------------------------------------------------------- latency
def render_latency(res: pl.Result) -> None:
    enc = res.enc
    decs = {f"decode, cache {'on' if res.dec.use_cache else 'off'}": res.dec}
    if res.dec_other is not None:
        decs[f"decode, cache {'on' if res.dec_other.use_cache else 'off'}"] = res.dec_other
    decs = dict(sorted(decs.items(), key=lambda kv: not kv[1].use_cache))  # cache on first
    df = an.latency_table(enc, decs)
    st.caption(f"device {enc.device}, {enc.threads} CPU threads, G = {enc.partition.num_groups} "
               "groups; single runs (the first run after loading includes warm-up)")
    if res.dec_on is not None and res.dec_off is not None:
        sp = an.speedup(res.dec_on, res.dec_off)
        c = st.columns(4)
        c[0].metric("entropy model, cache on", _fmt_s(sp["entropy_on_s"]))
        c[1].metric("entropy model, cache off", _fmt_s(sp["entropy_off_s"]))
        c[2].metric("entropy-model speed-up", f"{sp['entropy_speedup']:.1f}x",
                    help=f"ideal about (G+1)/2 = {sp['expected_speedup']:.1f}x")
        c[3].metric("whole-decode speed-up", f"{sp['decode_speedup']:.1f}x")
    else:
        st.info("Turn on 'compare cache on/off' before pressing Compress to see both decodes.")
    if res.rec_other_equal is not None:
        (st.success if res.rec_other_equal else st.error)(
            "Decoding with the context cache on and off gave "
            + ("bit-identical images." if res.rec_other_equal else "DIFFERENT images: a bug."))
    chart(an.latency_figure(df), "lat_stages")
    st.dataframe(df, hide_index=True, column_config={
        k: st.column_config.NumberColumn(format="%.3f") for k in df.columns[1:]})
    explain("Seconds spent in each stage. The encoder computes every group's parameters in one "
            "pass (it knows the whole latent); the decoder must run the entropy model once per "
            "group, because each group's prediction needs the groups before it. Without the "
            "context cache, step g recomputes all steps 0..g; with it, step g only computes its "
            "own tokens and reuses the stored keys/values of earlier steps. Both decodes produce "
            "the same image from the same bytes.")
    chart(an.step_latency_figure(an.step_table(decs)), "lat_steps")
    explain("Entropy-model time of every decode step. With the cache each step costs about the "
            "same; without it, the cost grows with the step number (more steps to recompute).")


# --------------------------------------------------------------------------- progressive
def render_progressive(res: pl.Result, codec) -> None:
    dec = res.dec
    G = dec.partition.num_groups
    k = st.slider("groups decoded", 0, G, G, key="prog_k",
                  help="0 = only the hyperprior has been read; G = everything")
    cb = an.cumulative_bits(dec)
    row = cb.iloc[k]
    cache = st.session_state.setdefault("_prog_cache", {})
    ck = (id(res), k)
    img = None
    with guard("Rendering the partial reconstruction"):
        if k == G:
            img = res.rec
        else:
            if ck not in cache:
                if len(cache) > 24:
                    cache.clear()
                cache[ck] = an.progressive_image(codec, dec, k)
            img = cache[ck]
    a, b = st.columns([3, 2])
    if img is not None:
        from gm_core import classical
        a.image(img, caption=f"after {k} of {G} groups" + (f" (last: {dec.partition.group_label(k - 1)})"
                if k else ""), width="stretch")
        b.metric("bits read so far", f"{int(row['bits']):,}", help="header + z + the rANS coder's state + groups 0..k-1")
        b.metric("bpp so far", f"{row['bpp']:.3f}", help=f"{row['share_%']:.0f}% of the file")
        b.metric("PSNR of this partial image", f"{classical.psnr(res.image, img):.2f} dB")
    import plotly.graph_objects as go
    fig = go.Figure()
    fig.add_scatter(x=cb["groups_decoded"], y=cb["bpp"], mode="lines+markers", name="bpp read")
    fig.add_scatter(x=[k], y=[row["bpp"]], mode="markers", marker={"size": 14, "color": "red"},
                    showlegend=False)
    fig.update_layout(xaxis_title="groups decoded", yaxis_title="bits per pixel read",
                      height=260, template="plotly_white", margin={"l": 10, "r": 10, "t": 20, "b": 10})
    chart(fig, "prog_bits", b)
    explain("The decoder fills the latent group by group. Here the synthesis transform is run on "
            "what has been decoded after k groups, with the missing groups set to zero. The first "
            "groups already give a blurry, washed-out picture; each later group adds detail. This is "
            "why a good partition puts the most informative channels and positions first.")


# --------------------------------------------------------------------------- downloads
def render_downloads(res: pl.Result, stem: str, codec) -> None:
    a, b = st.columns(2)
    a.download_button(f"Download the .gmx file ({len(res.data):,} bytes)", res.data, file_name=f"{stem}.gmx",
                      mime="application/octet-stream", key="dl_gmx", icon=":material/download:")
    b.download_button("Download the reconstruction (PNG)", pl.png_bytes(res.rec),
                      file_name=f"{stem}_decoded.png", mime="image/png", key="dl_png",
                      icon=":material/image:")
    st.markdown("**The file's header** (what the decoder reads first)")
    st.json(codec.read_header(res.data).to_json(), expanded=1)
    explain("The .gmx file is the compressed image: a small header (model id, image size, rate "
            "point and partition), the hyperprior string z and one rANS string y with every "
            "group in coding order, "
            "protected by a checksum. Decode it on the 'Decode a .gmx' page with the same "
            "checkpoint; another checkpoint refuses it instead of producing garbage.")
