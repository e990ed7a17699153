import math
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
KODAK = ROOT.parent / "shared" / "data" / "kodak"


@pytest.fixture(scope="session")
def kodak_image() -> np.ndarray:
    """A real photo (kodim23) when shared/ is beside the repo, else a synthetic one."""
    from gm_core.images import load_image
    p = KODAK / "kodim23.png"
    if p.is_file():
        return load_image(p)[0]
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:768]
    img = np.stack([128 + 100 * np.sin(xx / 40), 128 + 100 * np.cos(yy / 30), (xx + yy) % 256], -1)
    return np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def crop(kodak_image) -> np.ndarray:
    return np.ascontiguousarray(kodak_image[100:228, 200:392])  # 128 x 192


def make_scaled_codec(seed=0):
    """An untrained tiny model whose gain units are boosted so that most latent symbols are
    non-zero: a round trip of all-zero latents would prove nothing."""
    from gm_core.checkpoint import random_model
    from gm_core.codec import Codec
    model, mid = random_model("tiny", seed)
    with torch.no_grad():
        model.log_gain += math.log(40.0)
        model.log_hyper_gain += math.log(4.0)
    model.update(force=True)
    from gm_core.checkpoint import model_id
    return Codec(model, model_id(model.state_dict()))


@pytest.fixture(scope="session")
def scaled_codec():
    return make_scaled_codec()
