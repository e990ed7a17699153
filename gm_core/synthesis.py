"""Running the synthesis transform g_s for decoding: the same pixels for every thread count, in
bounded memory.

* Thread count: oneDNN (mkldnn) convolutions change the last bits of their sums with the number
  of threads, which moves a decoded pixel by one level now and then (kodim01: 1 to 22 pixels
  between 1, 2 and 3 threads). Decoding therefore runs g_s on the CPU with oneDNN pinned to one
  thread, whatever the caller's thread count: the same bits every time, at oneDNN's speed
  (PyTorch's native convolutions are also thread-invariant, but 25x slower here).
* Memory: g_s runs on horizontal bands of the latent, each with ``HALO`` rows of context above
  and below. g_s's receptive field reaches less than 3 latent rows, so a band's kept rows are
  computed from the same inputs as in one pass; the banding is a function of the image size
  only, so encoder-side previews, the decoder and every thread count agree.
* Speed: the caller's threads still help, one band per thread: each band is one single-threaded
  oneDNN computation whichever thread runs it, so the bits do not change. A Kodak-size latent
  is cut in two bands (``PARALLEL_ROWS``) for this reason; the 25% of extra rows (the halos)
  cost less than the second core gives.

``DETERMINISTIC = False`` runs g_s with the caller's threads (faster with several cores; y_hat
stays exact either way, only rare pixels may then differ by one level between thread counts).
"""
from __future__ import annotations

import contextlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

DETERMINISTIC = True
HALO = 4  # latent rows of context on each side of a band
BAND_ELEMENTS = 32 * 240  # latent rows x columns per band: 32 rows of a 4K image's 240 columns
UPSAMPLE = 16
PARALLEL_ROWS = 16  # bands of at least this many latent rows, at most two per image for small ones
_LOCK = threading.RLock()


@contextlib.contextmanager
def _mode(device: torch.device):
    """One intra-op thread on the CPU for the duration of the synthesis; yields the caller's
    thread count (the number of bands to run at once)."""
    if not (DETERMINISTIC and device.type == "cpu"):
        yield 1
        return
    with _LOCK:  # the thread count is process-wide: one synthesis at a time keeps it pinned
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield prev
        finally:
            torch.set_num_threads(prev)


def band_rows(h: int, w: int) -> int:
    """Latent rows per band: bounded memory for large images, two bands for Kodak-size ones."""
    return min(max(8, BAND_ELEMENTS // max(w, 1)), max(PARALLEL_ROWS, math.ceil(h / 2)))


def run_synthesis(g_s: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
    """g_s(y) for decoding (B, M, h, w) -> (B, 3, 16h, 16w), banded over rows when large."""
    h, w = y.shape[-2:]
    band = band_rows(h, w)
    with _mode(y.device) as workers:
        if h <= band + 2 * HALO:
            return g_s(y)
        out = y.new_empty(y.shape[0], 3, h * UPSAMPLE, w * UPSAMPLE)
        inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

        def run(r0: int) -> None:
            r1 = min(h, r0 + band)
            a, b = max(0, r0 - HALO), min(h, r1 + HALO)
            if workers > 1:
                torch.set_num_threads(1)  # this pool thread's own OpenMP setting
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):  # modes are per thread
                x = g_s(y[..., a:b, :])
                out[..., r0 * UPSAMPLE:r1 * UPSAMPLE, :] = x[..., (r0 - a) * UPSAMPLE:(r1 - a) * UPSAMPLE, :]

        starts = range(0, h, band)
        if workers > 1 and len(starts) > 1:
            with ThreadPoolExecutor(min(workers, len(starts))) as pool:
                list(pool.map(run, starts))  # list(): re-raise a band's exception here
        else:
            for r0 in starts:
                run(r0)
        return out
