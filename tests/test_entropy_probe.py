"""scripts/entropy_probe.py: the grown mixer starts as the model it grew from, and its probes run."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from gm_core.checkpoint import random_model, save_checkpoint
from gm_core.partition import GroupPartition

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "entropy_probe.py"


def _probe():
    spec = importlib.util.spec_from_file_location("entropy_probe", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_grown_mixer_computes_what_the_original_does_and_learns():
    model, _ = random_model()
    big = _probe().grow_mixer(model, 1)
    assert big.cfg.depth == model.cfg.depth + 1
    assert len(big.latent.mixer.blocks) == len(model.latent.mixer.blocks) + 2
    torch.manual_seed(0)
    y_hat = torch.randint(-3, 4, (1, model.cfg.M, 8, 8)).float()
    psi = torch.randn(1, model.cfg.psi, 8, 8)
    part = GroupPartition.parse(model.cfg.default_partition, model.cfg.M)
    with torch.no_grad():
        m0, s0, _ = model.latent.params(y_hat, psi, part)
        m1, s1, _ = big.latent.params(y_hat, psi, part)
    assert torch.allclose(m0, m1, atol=1e-6) and torch.allclose(s0, s1, atol=1e-6)
    # the new blocks are not dead: their zeroed output projections receive gradient
    m, s, _ = big.latent.params(y_hat, psi, part)
    (m.square().mean() + s.mean()).backward()
    assert big.latent.mixer.blocks[-1].proj.weight.grad.abs().sum() > 0


def test_finetune_probe_writes_its_report(tmp_path, kodak_image):
    model, _ = random_model()
    ck = tmp_path / "m.safetensors"
    save_checkpoint(model, ck, {"steps": 0})
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(kodak_image[:256, :256].copy()).save(data / "a.png")
    out = tmp_path / "r.json"
    subprocess.run([sys.executable, str(SCRIPT), "finetune", "--checkpoint", str(ck), "--minutes", "0.05",
                    "--extra-depth", "1", "--data", str(data), "--val", str(data), "--val-images", "1",
                    "--crop", "128", "--batch", "2", "--out", str(out)], check=True, cwd=ROOT,
                   capture_output=True)
    rep = json.loads(out.read_text())
    assert rep["depth"] == model.cfg.depth + 1 and rep["steps"] >= 1
    assert len(rep["bpp_change_percent"]["default"]) == model.num_rates
    assert all(v > 0 for v in rep["log"][-1]["val"]["g1"])
