"""BD-rate and rate interpolation, the two numbers every RD comparison here rests on."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from gm_core.evaluate import bd_rate, psnr_at


def curve(bpp, psnr):
    return {"results": {"bpp": list(bpp), "psnr-rgb": list(psnr)}}


BPP = np.array([0.2, 0.35, 0.5, 0.7, 0.9, 1.2])
PSNR = 24 + 4 * np.log2(BPP / 0.2)  # +4 dB per doubling of the rate


def test_bd_rate_of_a_curve_with_ten_percent_fewer_bits():
    anchor = curve(BPP, PSNR)
    assert bd_rate(anchor, anchor) == pytest.approx(0.0, abs=1e-6)
    assert bd_rate(anchor, curve(0.9 * BPP, PSNR)) == pytest.approx(-10.0, abs=1e-3)
    assert bd_rate(anchor, curve(1.1 * BPP, PSNR)) == pytest.approx(10.0, abs=1e-3)


def test_bd_rate_is_none_without_a_curve_or_an_overlap():
    anchor = curve(BPP, PSNR)
    assert bd_rate(anchor, curve([0.55], [29.4])) is None  # a single-rate recipe
    assert bd_rate(anchor, curve(BPP, PSNR + 20)) is None  # no PSNR in common


def test_psnr_at_interpolates_in_log_rate_and_holds_at_the_points():
    c = curve(BPP[::-1], PSNR[::-1])  # order of the points does not matter
    for b, p in zip(BPP, PSNR):
        assert psnr_at(b, c) == pytest.approx(p)
    # the curve is linear in log(bpp), so the midpoint in log-rate sits halfway in PSNR
    mid = float(np.sqrt(BPP[1] * BPP[2]))
    assert psnr_at(mid, c) == pytest.approx((PSNR[1] + PSNR[2]) / 2)


@pytest.fixture
def tt():
    """scripts/train_table.py, the recipe table (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location(
        "train_table", Path(__file__).resolve().parent.parent / "scripts" / "train_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_train_table_compares_a_single_rate_recipe_at_equal_bpp(tt, tmp_path, monkeypatch):

    def report(name, bpps, psnrs):
        return {"recipe": name, "train_args": "", "budget_minutes": 60, "steps": 1,
                "machine": {"cpu_threads": 1},
                "points": [{"bpp": b, "psnr": p, "gap_to_jpeg_db": 0.0} for b, p in zip(bpps, psnrs)]}
    (tmp_path / "a.json").write_text(json.dumps(report("anchor", BPP.tolist(), PSNR.tolist())))
    (tmp_path / "b.json").write_text(json.dumps(report("single", [0.5], [float(PSNR[2]) + 1.0])))
    monkeypatch.setattr(tt, "BENCH", tmp_path)
    rows = {line.split("|")[1].strip(): line for line in tt.table("anchor").splitlines()[2:]}
    cells = [c.strip() for c in rows["single"].split("|")]
    assert cells[-3] == ""  # no BD-rate from one point
    assert cells[-2] == "+1.00"  # 1 dB above the anchor's curve at 0.5 bpp
    rows = {line.split("|")[1].strip(): line for line in tt.table("single").splitlines()[2:]}
    assert [c.strip() for c in rows["anchor"].split("|")][-2] == ""  # one point is no curve


def test_train_table_names_the_device_of_a_run_trained_elsewhere(tt, tmp_path, monkeypatch):
    gpu = {"recipe": "gpu", "train_args": "--device cuda", "budget_minutes": 1.5, "steps": 2435,
           "machine": {"trained_on": "one NVIDIA H200 (device tool, 16 CPU cores)", "evaluated_on": "Linux"},
           "points": [{"bpp": 0.46, "psnr": 27.2, "gap_to_jpeg_db": -1.45}]}
    (tmp_path / "g.json").write_text(json.dumps(gpu))
    monkeypatch.setattr(tt, "BENCH", tmp_path)
    cells = [c.strip() for c in tt.table("none").splitlines()[2].split("|")]
    assert cells[1] == "gpu" and cells[6] == "one NVIDIA H200"


def test_train_table_lists_fine_tunes_apart_with_their_gain_over_the_start(tt, tmp_path, monkeypatch):
    scratch = {"recipe": "scratch", "train_args": "", "budget_minutes": 60, "steps": 5000,
               "machine": {"cpu_threads": 1},
               "points": [{"bpp": b, "psnr": p, "gap_to_jpeg_db": 0.0} for b, p in zip(BPP.tolist(), PSNR.tolist())]}
    tune = {"recipe": "tune", "train_args": "--init CK", "budget_minutes": 30, "steps": 25100,
            "machine": {"cpu_threads": 1}, "start": {"model_id": "abc", "steps": 24437},
            "points": [{"quality": 0, "bpp": 0.66, "psnr": 32.9, "gap_to_jpeg_db": 2.0,
                        "gain_over_start_db": 0.25}]}
    (tmp_path / "a.json").write_text(json.dumps(scratch))
    (tmp_path / "b.json").write_text(json.dumps(tune))
    monkeypatch.setattr(tt, "BENCH", tmp_path)
    assert "tune" not in tt.table("scratch")  # not a from-scratch recipe
    row = tt.fine_tune_table().splitlines()[2]
    cells = [c.strip() for c in row.split("|")]
    assert cells[1] == "tune" and cells[5] == "abc (24437)" and cells[6] == "663"
    assert cells[-2] == "+0.25"
    (tmp_path / "b.json").unlink()
    assert tt.fine_tune_table() == ""
