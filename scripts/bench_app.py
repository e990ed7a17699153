"""Click-to-all-views time of the app for a Kodak-size photo (768x512), printed as JSON.

    .venv/bin/python scripts/bench_app.py [--image ../shared/data/kodak/kodim23.png] [--repeats 2]
                                          [--apptest] [--checkpoint PATH]

It runs what the Compress button runs (app.pipeline: compress with attention, decode with the
cache, PSNR/MS-SSIM, JPEG/WebP/AVIF at the same bpp, every computation behind the default views
(gm_core.analysis), then the second decode without the cache for the latency comparison, which
the page shows last). With --apptest it also times the
whole Streamlit script run after a click on Compress (Streamlit's AppTest: the real page code,
rendering to protobufs, no browser). The model is loaded and warmed up once before timing, as the
app does with st.cache_resource. The 1-minute load average is recorded: a training run in the
background slows everything down.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def views_work(res, codec) -> None:
    """What the default views compute after a run (the same gm_core.analysis calls)."""
    import numpy as np

    from gm_core import analysis as an
    enc, G = res.enc, res.enc.partition.num_groups
    err = an.error_map(res.image, res.rec)
    an.zoom_crop(err, (0.5, 0.5), 96)
    an.group_bits_figure(enc)
    an.group_table(enc)
    an.split_figure(an.bits_by_slice(enc), "channels", "")
    an.split_figure(an.bits_by_phase(enc), "phase", "")
    an.heatmap_figure(an.group_bit_map(enc, 0))
    an.heatmap_figure(an.group_bit_map(enc, 0, full=True))
    an.overlay(res.image, np.kron(an.total_bit_map(enc), np.ones((16, 16)))[: res.image.shape[0],
                                                                          : res.image.shape[1]])
    for m in an.group_param_maps(enc, min(1, G - 1)).values():
        an.heatmap_figure(m)
    pc = an.bits_per_channel(enc)
    for m in an.latent_channel(enc, int(pc["est_bits"].idxmax())).values():
        an.heatmap_figure(m)
    if enc.attention:
        grid = enc.attention[0]["grid"]
        m = an.inner_attention_map(enc.attention, 0, min(1, G - 1), (grid[0] // 2, grid[1] // 2))
        an.overlay(res.image, an.grid_to_image(m, enc.partition, min(1, G - 1), res.image.shape[:2]))
        an.cross_attention_figure(an.cross_attention_table(enc.attention, enc.partition, 1, (0, 0), G - 1), G - 1)
        an.cross_attention_matrix(enc.attention, 1, (0, 0))
    an.cumulative_bits(res.dec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=str(ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png"))
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--partition", default=None, help="default: the checkpoint's default partition")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--apptest", action="store_true", help="also time a Streamlit AppTest click")
    args = ap.parse_args()

    import numpy as np
    import torch

    from app import pipeline as pl
    from gm_core import Codec

    torch.set_num_threads(args.threads)
    ckpt = Path(args.checkpoint) if args.checkpoint else pl.checkpoint_choices()[0]
    t0 = time.perf_counter()
    codec = Codec.load(ckpt)
    data, _ = codec.compress(np.zeros((64, 64, 3), np.uint8), "kc=2,grid=2x2")
    for cache in (True, False):
        codec.decompress(data, use_cache=cache)
    load_s = time.perf_counter() - t0
    img, _ = pl.prepare_image(args.image)
    part = codec.partition(args.partition)
    q = codec.default_quality()

    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = pl.run_core(codec, img, part, q, use_cache=True, compare_cache=True)
        t1 = time.perf_counter()
        pl.add_classical(res)
        views_work(res, codec)  # (the app shows these before the second decode)
        t2 = time.perf_counter()
        pl.add_other_decode(codec, res)
        from gm_core import analysis as an
        decs = {"on": res.dec_on, "off": res.dec_off}
        an.latency_figure(an.latency_table(res.enc, decs))
        an.step_latency_figure(an.step_table(decs))
        t3 = time.perf_counter()
        runs.append({"core_s": t1 - t0, "classical_and_views_s": t2 - t1,
                     "second_decode_s": t3 - t2, "first_views_s": t2 - t0, "total_s": t3 - t0,
                     "stages_s": {k: round(v, 3) for k, v in res.wall.items()},
                     "cache_speedup_entropy": res.dec_off.timings["entropy_model"]
                     / res.dec_on.timings["entropy_model"]})
    out = {"image": args.image, "size": f"{img.shape[1]}x{img.shape[0]}",
           "checkpoint": str(ckpt), "partition": part.to_spec(), "groups": part.num_groups,
           "quality": q, "bpp": res.enc.bpp, "threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "loadavg_1min": os.getloadavg()[0],
           "model_load_and_warmup_s": round(load_s, 3),
           "click_to_all_views_s": round(statistics.median(r["total_s"] for r in runs), 3),
           "click_to_views_before_second_decode_s": round(statistics.median(
               r["first_views_s"] for r in runs), 3),
           "runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                    for r in runs]}

    if args.apptest:
        from streamlit.testing.v1 import AppTest
        os.environ["GMX_CHECKPOINT"] = str(ckpt)
        at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=600)
        at.run()  # loads and warms up the model (st.cache_resource)
        at.radio(key="explore_mode").set_value("Upload my own").run()
        at.file_uploader(key="explore_upload").upload(Path(args.image).name,
                                                      Path(args.image).read_bytes(), "image/png")
        at.run()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            at.button(key="compress").click().run()
            times.append(time.perf_counter() - t0)
            assert not at.exception and not at.error, [e.value for e in at.error]
        out["apptest_click_to_views_s"] = round(statistics.median(times), 3)
        out["apptest_runs_s"] = [round(t, 3) for t in times]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
