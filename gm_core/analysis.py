"""What the app and the notebooks show, computed from a real ``Trace``: plain functions, no UI.

Every function takes a ``Trace`` (from ``Codec.compress`` / ``Codec.decompress``), a
``GroupPartition`` or arrays, and returns numpy arrays, pandas DataFrames or plotly figures.
Nothing here codes anything or estimates what the bitstream already says: real bits come from the
lengths of the z and y strings (``trace.z_bits``, ``trace.y_bits``); what each group costs inside
the y string is ``trace.group_bits`` (the exact cost of its symbols in the rANS coder, which with
the coder's final state, ``trace.state_bits``, adds up to the y string); the per-element maps are
the model's own -log2 likelihoods (``trace.bits_map``), whose per-group sums are
``trace.group_est_bits``.

Geometry used throughout (see ``gm_core.partition``): a group is one channel slice at one spatial
phase (i, j) of a kh x kw grid; its positions on the latent grid are (r * kh + i, c * kw + j) for
(r, c) on its sub-lattice of hg x wg = (h / kh) x (w / kw) positions. A latent position covers a
16 x 16 pixel block of the (padded) image.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .partition import GroupPartition

DOWNSAMPLE = 16  # pixels per latent position along each side (g_a downsamples by 16)
STAGES = ("analysis", "hyper", "entropy_model", "rans", "synthesis")
STAGE_LABELS = {"analysis": "analysis g_a", "hyper": "hyperprior z", "entropy_model": "entropy model",
                "rans": "rANS", "synthesis": "synthesis g_s"}


# --------------------------------------------------------------------------- geometry
def group_geometry(part: GroupPartition, g: int) -> dict:
    """Slice, phase and channel range of the group coded at step g."""
    if not 0 <= g < part.num_groups:
        raise IndexError(f"step {g} is out of range (0..{part.num_groups - 1})")
    s, p = part.order[g]
    i, j = part.phase_coords(p)
    a, b = part.slice_bounds[s]
    return {"step": g, "slice": s, "phase": p, "phase_ij": (i, j), "channels": (a, b),
            "label": part.group_label(g)}


def group_view(arr: np.ndarray, part: GroupPartition, g: int) -> np.ndarray:
    """(M, h, w) -> (C_g, hg, wg): the elements of group g on its sub-lattice."""
    geo = group_geometry(part, g)
    i, j = geo["phase_ij"]
    kh, kw = part.grid
    a, b = geo["channels"]
    return arr[a:b, i::kh, j::kw]


def sublattice_to_latent(grid_map: np.ndarray, part: GroupPartition, g: int,
                         latent_shape: tuple[int, int], fill=np.nan) -> np.ndarray:
    """(hg, wg) values of group g -> (h, w) latent grid; positions of other phases get ``fill``."""
    i, j = group_geometry(part, g)["phase_ij"]
    kh, kw = part.grid
    out = np.full(latent_shape, fill, dtype=np.float64)
    out[i::kh, j::kw] = grid_map
    return out


def step_grid(part: GroupPartition, latent_shape: tuple[int, int]) -> np.ndarray:
    """(num_slices, h, w) int: the coding step of every (slice, latent position)."""
    h, w = latent_shape
    kh, kw = part.grid
    out = np.empty((part.num_slices, h, w), dtype=np.int64)
    for g, (s, p) in enumerate(part.order):
        i, j = part.phase_coords(p)
        out[s, i::kh, j::kw] = g
    return out


def step_matrix(part: GroupPartition) -> np.ndarray:
    """(num_slices, num_phases) int: the step at which each (slice, phase) group is coded."""
    out = np.empty((part.num_slices, part.num_phases), dtype=np.int64)
    for g, (s, p) in enumerate(part.order):
        out[s, p] = g
    return out


def channel_step_map(part: GroupPartition, latent_shape: tuple[int, int]) -> np.ndarray:
    """(M, h, w) int: the coding step of every latent element (channel, position)."""
    sg = step_grid(part, latent_shape)
    return np.concatenate([np.repeat(sg[s:s + 1], b - a, axis=0)
                           for s, (a, b) in enumerate(part.slice_bounds)], axis=0)


# --------------------------------------------------------------------------- bits
def group_table(trace, include_z: bool = False) -> pd.DataFrame:
    """One row per group in coding order: the bits it costs in the file (``coded_bits``) vs the
    model's estimate."""
    part = trace.partition
    rows = []
    if include_z:
        rows.append({"step": -1, "label": "z (hyperprior side information)", "slice": None,
                     "phase": None, "channels": "", "elements": None, "coded_bits": trace.z_bits,
                     "est_bits": np.nan})
    h, w = trace.latent_shape
    kh, kw = part.grid
    for g in range(part.num_groups):
        geo = group_geometry(part, g)
        a, b = geo["channels"]
        rows.append({"step": g, "label": geo["label"], "slice": geo["slice"],
                     "phase": f"({geo['phase_ij'][0]},{geo['phase_ij'][1]})",
                     "channels": f"{a}-{b - 1}", "elements": (b - a) * (h // kh) * (w // kw),
                     "coded_bits": float(trace.group_bits[g]), "est_bits": float(trace.group_est_bits[g])})
    df = pd.DataFrame(rows)
    df["share_%"] = 100.0 * df["coded_bits"] / (8.0 * trace.total_bytes)
    df["bits_per_element"] = df["coded_bits"] / df["elements"].astype(float)
    df["overhead_%"] = 100.0 * (df["coded_bits"] - df["est_bits"]) / df["est_bits"]
    # bits of the payload read once the group is decoded: the rANS state comes before group 0
    before = np.where(df["step"] >= 0, trace.state_bits, 0.0) + (0 if include_z else trace.z_bits)
    df["cumulative_bits"] = df["coded_bits"].cumsum() + before
    return df


def bits_summary(trace) -> dict:
    """Where every bit of the file went: header, z, y (all real); y is the groups' coded bits
    plus the rANS coder's final state."""
    return {"header_bits": 8 * trace.header_bytes, "z_bits": int(trace.z_bits),
            "y_bits": int(trace.y_bits), "state_bits": float(trace.state_bits),
            "total_bytes": trace.total_bytes, "bpp": trace.bpp,
            "y_est_bits": float(sum(trace.group_est_bits)),
            "groups": trace.partition.num_groups}


def bits_by_slice(trace) -> pd.DataFrame:
    """Coded and estimated bits summed over the groups of each channel slice."""
    df = group_table(trace)
    part = trace.partition
    out = df.groupby("slice", sort=True)[["coded_bits", "est_bits", "elements"]].sum().reset_index()
    out["channels"] = [f"{a}-{b - 1}" for a, b in part.slice_bounds]
    out["bits_per_channel"] = out["coded_bits"] / np.array(part.slices, dtype=float)
    out["share_%"] = 100.0 * out["coded_bits"] / out["coded_bits"].sum()
    return out


def bits_by_phase(trace) -> pd.DataFrame:
    """Coded and estimated bits summed over the groups of each spatial phase (i, j)."""
    df = group_table(trace)
    out = df.groupby("phase", sort=False)[["coded_bits", "est_bits", "elements"]].sum().reset_index()
    first = {ph: int(df.loc[df["phase"] == ph, "step"].min()) for ph in out["phase"]}
    out["first_step"] = out["phase"].map(first)
    out = out.sort_values("first_step").reset_index(drop=True)
    out["share_%"] = 100.0 * out["coded_bits"] / out["coded_bits"].sum()
    return out


def group_bit_map(trace, g: int, full: bool = False) -> np.ndarray:
    """Estimated bits of group g at each position, summed over its channels.

    full=False: (hg, wg) on the group's sub-lattice; full=True: (h, w) on the latent grid with NaN
    at the positions of other phases.
    """
    m = group_view(trace.bits_map, trace.partition, g).sum(0)
    return sublattice_to_latent(m, trace.partition, g, trace.latent_shape) if full else m


def total_bit_map(trace) -> np.ndarray:
    """(h, w) estimated bits per latent position, all channels (where the bits go spatially)."""
    return trace.bits_map.sum(0)


def bits_per_channel(trace) -> pd.DataFrame:
    """Per latent channel: estimated bits, mean |y_hat|, share of non-zero symbols, coding steps."""
    part = trace.partition
    slice_of = np.concatenate([[s] * c for s, c in enumerate(part.slices)])
    return pd.DataFrame({
        "channel": np.arange(trace.bits_map.shape[0]),
        "slice": slice_of,
        "est_bits": trace.bits_map.reshape(trace.bits_map.shape[0], -1).sum(1),
        "mean_abs_y": np.abs(trace.y_hat).reshape(trace.y_hat.shape[0], -1).mean(1),
        "nonzero_%": 100.0 * (trace.y_hat != 0).reshape(trace.y_hat.shape[0], -1).mean(1),
        "mean_scale": trace.scale.reshape(trace.scale.shape[0], -1).mean(1),
    })


# --------------------------------------------------------------------------- entropy parameters
def group_param_maps(trace, g: int, channel: int | None = None, full: bool = False) -> dict:
    """Mean, scale, y_hat and bits of group g on its sub-lattice (or the full grid with NaN).

    channel=None averages |mean| ... over the group's channels (mean: average of the means, scale:
    average scale, y_hat: average |y_hat|, bits: sum); an int picks one channel of the group.
    """
    part = trace.partition
    a, b = group_geometry(part, g)["channels"]
    out = {}
    for name, arr in (("mean", trace.mean), ("scale", trace.scale), ("y_hat", trace.y_hat),
                      ("bits", trace.bits_map)):
        v = group_view(arr, part, g)
        if channel is not None:
            if not a <= channel < b:
                raise IndexError(f"channel {channel} is not in group {g} (channels {a}-{b - 1})")
            m = v[channel - a]
        elif name == "bits":
            m = v.sum(0)
        elif name == "y_hat":
            m = np.abs(v).mean(0)
        else:
            m = v.mean(0)
        out[name] = sublattice_to_latent(m, part, g, trace.latent_shape) if full else m
    return out


def latent_channel(trace, c: int) -> dict:
    """One latent channel over the whole grid: y_hat, mean, scale, residual, bits, coding step."""
    if not 0 <= c < trace.y_hat.shape[0]:
        raise IndexError(f"channel {c} is out of range (0..{trace.y_hat.shape[0] - 1})")
    steps = channel_step_map(trace.partition, trace.latent_shape)[c]
    return {"y_hat": trace.y_hat[c], "mean": trace.mean[c], "scale": trace.scale[c],
            "residual": trace.y_hat[c] - trace.mean[c], "bits": trace.bits_map[c], "step": steps}


# --------------------------------------------------------------------------- attention
def _layers(attention):
    if not attention:
        raise ValueError("this trace has no attention weights (compress with want_attn=True)")
    if "layers" in attention[0]:  # a decoder trace: per step
        return None
    return attention


def attention_layers(attention) -> pd.DataFrame:
    """The layers of an (encoder) attention trace: index, kind, and its index within that kind."""
    layers = _layers(attention)
    if layers is None:
        layers = attention[0]["layers"]
    rows, count = [], {"inner": 0, "cross": 0}
    for k, layer in enumerate(layers):
        rows.append({"layer": k, "kind": layer["kind"], "block": count[layer["kind"]],
                     "heads": layer["weights"].shape[2 if layer["kind"] == "inner" else 2]})
        count[layer["kind"]] += 1
    return pd.DataFrame(rows)


def _inner_layer(attention, layer: int, step: int) -> tuple[dict, np.ndarray]:
    """The inner layer dict and its weights at ``step``: (windows, heads, Q, K)."""
    layers = _layers(attention)
    if layers is None:  # decoder trace: attention[step]["layers"][layer], S = 1
        lay = attention[step]["layers"][layer]
        w = lay["weights"][0]
    else:
        lay = layers[layer]
        w = lay["weights"][step]
    if lay["kind"] != "inner":
        raise ValueError(f"layer {layer} is a {lay['kind']}-group layer, not an inner-group one")
    return lay, w


def inner_attention_map(attention, layer: int, step: int, query: tuple[int, int],
                        head: int | str = "mean") -> np.ndarray:
    """Where the token at ``query`` (row, col on the group's grid) looks, at coding step ``step``.

    Returns an (H, W) map on the group's sub-lattice grid: the attention weights of that query
    over the keys of its window, NaN outside the window (inner attention is windowed). The
    weights in the window sum to 1. head: an index or "mean" (average over heads).
    """
    lay, w = _inner_layer(attention, layer, step)
    H, W = lay["grid"]
    wh, ww = lay["window"]
    nh, nw = lay["windows"]
    r, c = int(query[0]), int(query[1])
    if not (0 <= r < H and 0 <= c < W):
        raise IndexError(f"query {query} is outside the {H}x{W} group grid")
    wi, wj = r // wh, c // ww
    qi = (r % wh) * ww + (c % ww)
    ws = w[wi * nw + wj]  # (heads, Q, K)
    vec = ws[:, qi].mean(0) if head == "mean" else ws[int(head), qi]
    out = np.full((H, W), np.nan)
    block = vec.reshape(wh, ww)
    r0, c0 = wi * wh, wj * ww
    r1, c1 = min(r0 + wh, H), min(c0 + ww, W)
    out[r0:r1, c0:c1] = block[:r1 - r0, :c1 - c0]
    return out


def inner_attention_window(attention, layer: int, query: tuple[int, int]) -> tuple[slice, slice]:
    """The rows and columns of the group grid that share the query's attention window."""
    layers = _layers(attention)
    lay = (attention[0]["layers"] if layers is None else layers)[layer]
    H, W = lay["grid"]
    wh, ww = lay["window"]
    r0, c0 = (query[0] // wh) * wh, (query[1] // ww) * ww
    return slice(r0, min(r0 + wh, H)), slice(c0, min(c0 + ww, W))


def cross_attention_matrix(attention, layer: int, position: tuple[int, int],
                           head: int | str = "mean") -> np.ndarray:
    """(S, S) causal attention along the coding steps at one position of the group grid:
    row g = query step g, column k = the weight it puts on step k (zero for k > g)."""
    layers = _layers(attention)
    r, c = int(position[0]), int(position[1])
    if layers is None:  # decoder trace: one query row per step, keys 0..g
        G = len(attention)
        out = np.zeros((G, G))
        for st in attention:
            lay = st["layers"][layer]
            if lay["kind"] != "cross":
                raise ValueError(f"layer {layer} is not a cross-group layer")
            w = lay["weights"][r, c]  # (heads, 1, g+1)
            v = w.mean(0)[0] if head == "mean" else w[int(head), 0]
            out[st["step"], :len(v)] = v
        return out
    lay = layers[layer]
    if lay["kind"] != "cross":
        raise ValueError(f"layer {layer} is a {lay['kind']}-group layer, not a cross-group one")
    Hc, Wc = lay["weights"].shape[:2]
    if not (0 <= r < Hc and 0 <= c < Wc):
        raise IndexError(f"position {position} is outside the {Hc}x{Wc} group grid")
    w = lay["weights"][r, c]  # (heads, S, S)
    return w.mean(0) if head == "mean" else w[int(head)]


def cross_attention_table(attention, part: GroupPartition, layer: int, position: tuple[int, int],
                          step: int, head: int | str = "mean") -> pd.DataFrame:
    """Weights that the token of ``step`` at ``position`` puts on each step 0..step.

    The token of step k carries the values of the group decoded at step k-1 (step 0: the start
    token), so the weight on step k is attention to what group k-1 revealed.
    """
    m = cross_attention_matrix(attention, layer, position, head)
    rows = []
    for k in range(step + 1):
        rows.append({"key_step": k,
                     "carries": "start token (hyperprior only)" if k == 0 else
                     f"values of {part.group_label(k - 1)}",
                     "weight": float(m[step, k])})
    return pd.DataFrame(rows)


def grid_to_image(grid_map: np.ndarray, part: GroupPartition, g: int, image_size: tuple[int, int],
                  fill: float = np.nan) -> np.ndarray:
    """A map on group g's sub-lattice -> a pixel map of the image (H, W).

    Each sub-lattice cell (r, c) is the latent position (r*kh+i, c*kw+j), i.e. the 16x16 pixel
    block at that position; the cell is stretched over the kh x kw latent block it stands for so
    the map covers the picture without holes.
    """
    kh, kw = part.grid
    cell_h, cell_w = DOWNSAMPLE * kh, DOWNSAMPLE * kw
    up = np.repeat(np.repeat(np.nan_to_num(grid_map, nan=fill), cell_h, 0), cell_w, 1)
    H, W = image_size
    return up[:H, :W]


def overlay(img: np.ndarray, heat: np.ndarray, alpha: float = 0.6, cmap: str = "inferno") -> np.ndarray:
    """Blend a heat map (H, W, NaN = none) over an RGB uint8 image; returns RGB uint8."""
    import matplotlib

    h = np.asarray(heat, dtype=np.float64)
    finite = np.isfinite(h)
    lo = np.nanmin(h) if finite.any() else 0.0
    hi = np.nanmax(h) if finite.any() else 1.0
    norm = np.where(finite, (h - lo) / max(hi - lo, 1e-12), 0.0)
    colors = matplotlib.colormaps[cmap](norm)[..., :3] * 255
    base = img[: h.shape[0], : h.shape[1]].astype(np.float64)
    # inside the map: blend; outside (NaN): the photo dimmed, so the map stands out
    out = np.where(finite[..., None], base * (1 - alpha) + colors * alpha, base * 0.45)
    return np.clip(out, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- latency
def latency_table(encode=None, decodes: dict | None = None) -> pd.DataFrame:
    """Per-stage seconds: one column per run (encode, and each decode trace by name)."""
    cols = {}
    if encode is not None:
        cols["encode"] = encode.timings
    for name, tr in (decodes or {}).items():
        cols[name] = tr.timings
    rows = []
    for st in STAGES:
        rows.append({"stage": STAGE_LABELS[st], **{k: float(v.get(st, np.nan)) if st in v else np.nan
                                                    for k, v in cols.items()}})
    df = pd.DataFrame(rows)
    total = {"stage": "total"}
    for k in cols:
        total[k] = float(np.nansum(df[k].to_numpy(dtype=float)))
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def step_table(decodes: dict) -> pd.DataFrame:
    """Per decode step: entropy-model and rANS seconds for each decode trace (e.g. cache on/off)."""
    first = next(iter(decodes.values()))
    part = first.partition
    df = pd.DataFrame({"step": np.arange(part.num_groups),
                       "group": [part.group_label(g) for g in range(part.num_groups)]})
    for name, tr in decodes.items():
        df[f"entropy_s ({name})"] = tr.step_s
        df[f"rans_s ({name})"] = tr.rans_step_s
    return df


def speedup(cache_on, cache_off) -> dict:
    """How much the context cache saves: entropy model alone and the whole decode."""
    e_on, e_off = cache_on.timings["entropy_model"], cache_off.timings["entropy_model"]
    d_on, d_off = sum(cache_on.timings.values()), sum(cache_off.timings.values())
    return {"entropy_on_s": e_on, "entropy_off_s": e_off, "entropy_speedup": e_off / max(e_on, 1e-12),
            "decode_on_s": d_on, "decode_off_s": d_off, "decode_speedup": d_off / max(d_on, 1e-12),
            "groups": cache_on.partition.num_groups,
            "expected_speedup": (cache_on.partition.num_groups + 1) / 2}


# --------------------------------------------------------------------------- progressive decoding
def progressive_latent(trace, upto: int) -> np.ndarray:
    """y_hat with only the groups of steps 0..upto-1 decoded (others zero): (M, h, w).

    upto = 0 is "nothing decoded yet", upto = G the full latent. Equal to what the decoder holds
    after step upto-1 (``Codec.decompress(on_step=...)``).
    """
    G = trace.partition.num_groups
    if not 0 <= upto <= G:
        raise IndexError(f"upto must lie in 0..{G}")
    steps = channel_step_map(trace.partition, trace.latent_shape)
    return np.where(steps < upto, trace.y_hat, 0.0)


def cumulative_bits(trace) -> pd.DataFrame:
    """Bits of the file read after each decode step: header, z and the rANS coder's state first,
    then group by group; the last row is the whole file."""
    base = 8 * trace.header_bytes + trace.z_bits + trace.state_bits
    cum = base + np.concatenate([[0], np.cumsum(trace.group_bits)])
    n = trace.num_pixels
    return pd.DataFrame({"groups_decoded": np.arange(len(cum)), "bits": cum, "bpp": cum / n,
                         "share_%": 100.0 * cum / cum[-1]})


def progressive_image(codec, trace, upto: int) -> np.ndarray:
    """The reconstruction from the groups of steps 0..upto-1 (others zero), cropped: HxWx3 uint8."""
    import torch

    from .codec import tensor_to_image
    y = torch.from_numpy(progressive_latent(trace, upto))[None]
    x = codec.model.synthesize(y, trace.quality)
    H, W = trace.image_size
    return tensor_to_image(x[..., :H, :W])


def progressive_reconstructions(codec, trace, steps=None) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Reconstructions after each number of decoded groups in ``steps`` (default 0..G) and the
    cumulative bits table for the same points."""
    G = trace.partition.num_groups
    steps = list(range(G + 1)) if steps is None else list(steps)
    imgs = [progressive_image(codec, trace, k) for k in steps]
    cb = cumulative_bits(trace).set_index("groups_decoded").loc[steps].reset_index()
    return imgs, cb


# --------------------------------------------------------------------------- quality
def error_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel absolute error, averaged over RGB: (H, W) float in 0..255."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(-1)


def psnr_map(a: np.ndarray, b: np.ndarray, block: int = 16) -> np.ndarray:
    """PSNR of each block x block tile (dB): where the codec spends its distortion."""
    H, W = a.shape[:2]
    hb, wb = H // block, W // block
    d = (a[:hb * block, :wb * block].astype(np.float64) - b[:hb * block, :wb * block]) ** 2
    mse = d.reshape(hb, block, wb, block, -1).mean((1, 3, 4))
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def zoom_crop(img: np.ndarray, center: tuple[float, float], size: int = 128) -> np.ndarray:
    """A size x size crop (smaller images: all of it) around a relative (y, x) centre in 0..1."""
    H, W = img.shape[:2]
    sh, sw = min(size, H), min(size, W)
    cy = int(round(center[0] * (H - 1)))
    cx = int(round(center[1] * (W - 1)))
    y0 = int(np.clip(cy - sh // 2, 0, H - sh))
    x0 = int(np.clip(cx - sw // 2, 0, W - sw))
    return img[y0:y0 + sh, x0:x0 + sw]


# --------------------------------------------------------------------------- figures
def _go():
    import plotly.graph_objects as go
    return go


def heatmap_figure(arr: np.ndarray, title: str = "", colorscale: str = "Viridis",
                   colorbar: str = "", zmid=None, height: int = 320, text=None):
    """A plotly heat map with row 0 at the top (image orientation) and square cells."""
    go = _go()
    fig = go.Figure(go.Heatmap(z=arr, colorscale=colorscale, zmid=zmid, colorbar={"title": colorbar},
                               text=text, texttemplate="%{text}" if text is not None else None,
                               hovertemplate="row %{y}, col %{x}: %{z:.3g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_xaxes(constrain="domain")
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      template="plotly_white")
    return fig


def group_bits_figure(trace):
    """Bar chart of the coded bits of each group in coding order, the model's estimate as
    markers, z (its real string) first."""
    go = _go()
    df = group_table(trace)
    fig = go.Figure()
    fig.add_bar(x=["z"], y=[trace.z_bits], name="z (side info), real", marker_color="#9e9e9e")
    fig.add_bar(x=[f"g{g}" for g in df["step"]], y=df["coded_bits"], name="group, coded bits",
                marker_color="#1f77b4", customdata=df["label"],
                hovertemplate="%{customdata}<br>%{y:.0f} bits<extra></extra>")
    fig.add_scatter(x=[f"g{g}" for g in df["step"]], y=df["est_bits"], mode="markers",
                    name="model's estimate", marker={"symbol": "diamond", "color": "#d62728", "size": 8})
    fig.update_layout(title="Bits per group, in coding order", xaxis_title="coding step",
                      yaxis_title="bits", template="plotly_white", height=360,
                      legend={"orientation": "h", "y": -0.25},
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def split_figure(df: pd.DataFrame, by: str, title: str):
    go = _go()
    fig = go.Figure(go.Bar(x=[str(v) for v in df[by]], y=df["coded_bits"],
                           text=[f"{v:.0f}%" for v in df["share_%"]], textposition="auto"))
    fig.update_layout(title=title, xaxis_title=by, yaxis_title="coded bits", template="plotly_white",
                      height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def partition_figure(part: GroupPartition, latent_shape: tuple[int, int] = (8, 8), height: int = 260):
    """The groups over a small latent tile: one panel per channel slice, each latent position
    coloured and labelled by the step at which that (slice, position) is coded."""
    from plotly.subplots import make_subplots
    go = _go()
    sg = step_grid(part, latent_shape)
    n = part.num_slices
    titles = [f"ch {a}-{b - 1}" for a, b in part.slice_bounds]
    fig = make_subplots(rows=1, cols=n, subplot_titles=titles, horizontal_spacing=0.02)
    G = part.num_groups
    for s in range(n):
        fig.add_trace(go.Heatmap(z=sg[s], zmin=0, zmax=max(G - 1, 1), colorscale="Turbo",
                                 showscale=(s == n - 1), text=sg[s], texttemplate="%{text}",
                                 colorbar={"title": "step"},
                                 hovertemplate="row %{y}, col %{x}: step %{z}<extra></extra>"),
                      row=1, col=s + 1)
        fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor=f"x{s + 1 if s else ''}",
                         row=1, col=s + 1)
        fig.update_xaxes(showticklabels=False, row=1, col=s + 1)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title=None, template="plotly_white")
    return fig


def cross_attention_figure(df: pd.DataFrame, step: int):
    go = _go()
    fig = go.Figure(go.Bar(x=df["key_step"], y=df["weight"],
                           customdata=df["carries"], hovertemplate="%{customdata}<br>weight %{y:.3f}<extra></extra>"))
    fig.update_layout(title=f"Cross-group attention of step {step} over steps 0..{step}",
                      yaxis_title="attention weight", xaxis_title="key step",
                      template="plotly_white", height=300,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def latency_figure(df: pd.DataFrame):
    """Grouped bars: seconds per stage for each run column of ``latency_table``."""
    go = _go()
    d = df[df["stage"] != "total"]
    fig = go.Figure()
    for col in d.columns[1:]:
        fig.add_bar(x=d["stage"], y=d[col], name=col)
    fig.update_layout(barmode="group", yaxis_title="seconds", template="plotly_white", height=340,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": -0.3})
    return fig


def step_latency_figure(df: pd.DataFrame):
    go = _go()
    fig = go.Figure()
    for col in df.columns:
        if col.startswith("entropy_s"):
            fig.add_scatter(x=df["step"], y=df[col], mode="lines+markers", name=col)
    fig.update_layout(xaxis_title="decode step", yaxis_title="entropy model seconds",
                      template="plotly_white", height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


# --------------------------------------------------------------------------- partition sweeps
def partition_sweep(codec, images: dict, partitions, quality: float | None = None,
                    cache_off: bool = True, progress=None) -> pd.DataFrame:
    """Code every image under every partition: one row per (partition, image).

    images: {name: H x W x 3 uint8}; partitions: specs or ``GroupPartition``s. Each run is a real
    compress, a decode with the context cache and (cache_off=True) one without it; the rate is the
    file's bytes, the times are wall-clock seconds of one run plus the entropy-model share of each
    decode. ``same_pixels`` says whether the cache-on and cache-off decodes agree bit for bit.
    y_bits are the real bits of the y string, y_est_bits the model's estimate of the latent's.
    """
    import time

    from .classical import psnr as _psnr
    rows = []
    for part in partitions:
        part = codec.partition(part)
        for name, img in images.items():
            if progress:
                progress(part, name)
            t0 = time.perf_counter()
            data, enc = codec.compress(img, part, quality)
            t1 = time.perf_counter()
            rec, on = codec.decompress(data, use_cache=True)
            t2 = time.perf_counter()
            row = {"partition": part.to_spec(), "groups": part.num_groups, "image": name,
                   "bytes": len(data), "bpp": len(data) * 8 / (img.shape[0] * img.shape[1]),
                   "psnr": _psnr(img, rec), "header_bytes": enc.header_bytes, "z_bits": enc.z_bits,
                   "y_bits": int(enc.y_bits), "y_est_bits": float(sum(enc.group_est_bits)),
                   "encode_s": t1 - t0, "decode_on_s": t2 - t1,
                   "entropy_on_s": on.timings["entropy_model"]}
            if cache_off:
                rec_off, off = codec.decompress(data, use_cache=False)
                row.update(decode_off_s=time.perf_counter() - t2,
                           entropy_off_s=off.timings["entropy_model"],
                           same_pixels=bool(np.array_equal(rec, rec_off)))
            rows.append(row)
    return pd.DataFrame(rows)


def sweep_summary(df: pd.DataFrame, baseline: str = "kc=1,grid=1x1") -> pd.DataFrame:
    """Per partition, averaged over the images of a ``partition_sweep``, in the sweep's order.

    rate_vs_baseline_%: mean over images of the per-image change in bytes against ``baseline``
    (negative = smaller files); model_rate_vs_baseline_%: the same for the model's estimate of the
    latent's bits alone (the entropy model's own gain, without the header bytes that a longer
    partition spec adds to the file); cache_speedup: entropy-model seconds without / with
    the cache, next to expected_speedup = (G + 1) / 2, the ratio of the work.
    """
    order = list(dict.fromkeys(df["partition"]))
    cols = [c for c in ("bpp", "psnr", "encode_s", "decode_on_s", "decode_off_s", "entropy_on_s",
                        "entropy_off_s") if c in df]
    out = df.groupby("partition", sort=False).agg(groups=("groups", "first"),
                                                  **{c: (c, "mean") for c in cols})
    if baseline in order:
        for col, key in (("bytes", "rate_vs_baseline_%"), ("y_est_bits", "model_rate_vs_baseline_%")):
            if col in df:
                base = df[df["partition"] == baseline].set_index("image")[col]
                rel = 100.0 * (df[col] / df["image"].map(base).to_numpy() - 1)
                out[key] = rel.groupby(df["partition"], sort=False).mean()
    if "entropy_off_s" in df:
        out["cache_speedup"] = out["entropy_off_s"] / out["entropy_on_s"].clip(lower=1e-12)
        out["expected_speedup"] = (out["groups"] + 1) / 2
        out["same_pixels"] = df.groupby("partition", sort=False)["same_pixels"].all()
    return out.loc[order].reset_index()


__all__ = [n for n in dir() if not n.startswith("_") and n not in ("annotations", "np", "pd",
                                                                    "GroupPartition")]
