import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gm_core.train import has_cpp_compiler, lr_at, native_bf16, partition_menu

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, kodak_image):
    d = tmp_path_factory.mktemp("data")
    for i, (t, l) in enumerate(((0, 0), (200, 300), (300, 500))):
        Image.fromarray(np.ascontiguousarray(kodak_image[t:t + 160, l:l + 192])).save(d / f"im{i}.png")
    return d


def _run(args, cwd):
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_partition_menu_covers_the_app_menu():
    specs = {p.to_spec() for p in partition_menu(192)}
    for s in ("kc=1,grid=1x1", "kc=4,grid=2x2", "kc=8,grid=4x4", "slices=32+32+64+64,grid=2x2",
              "slices=16+16+32+64+64,grid=4x4", "kc=4,grid=2x2,order=phase-major"):
        assert s in specs


def test_lr_schedule_warms_up_holds_then_anneals_to_a_tenth():
    base = 1e-3
    assert lr_at(base, 0, 100, 0.0, 0.4) == pytest.approx(base / 100)  # fresh moments: warm-up
    assert lr_at(base, 49, 100, 0.0, 0.4) == pytest.approx(base / 2)
    assert lr_at(base, 5000, 100, 0.3, 0.4) == base  # constant until the anneal
    assert lr_at(base, 5000, 100, 0.6, 0.4) == base
    assert lr_at(base, 5000, 100, 0.8, 0.4) == pytest.approx(base * 0.55)  # cosine midpoint
    assert lr_at(base, 5000, 100, 1.0, 0.4) == pytest.approx(base * 0.1)
    assert lr_at(base, 5000, 100, 1.7, 0.4) == pytest.approx(base * 0.1)  # past the budget: floor
    assert lr_at(base, 5000, 100, 0.99, 0.0) == base  # no anneal asked for
    lrs = [lr_at(base, 5000, 100, f / 100, 0.4) for f in range(101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_train_resume_and_loss_is_finite(tmp_path, tiny_data):
    out = tmp_path / "run"
    common = ["-m", "gm_core", "train", "--out", str(out), "--data", str(tiny_data), "--val", str(tiny_data),
              "--val-images", "1", "--val-every", "2", "--batch", "2", "--crop", "64", "--log-every", "1",
              "--quiet", "--threads", "1"]
    _run(common + ["--steps", "2"], ROOT)
    st = torch.load(out / "last.pt", weights_only=True)
    assert st["step"] == 2
    _run(common + ["--steps", "4"], ROOT)  # resumes at 2
    st = torch.load(out / "last.pt", weights_only=True)
    assert st["step"] == 4
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    assert all(np.isfinite(losses))
    assert any("val" in r for r in log)
    from gm_core.checkpoint import read_metadata
    assert read_metadata(out / "model.safetensors")["meta"]["steps"] == 4


def test_torchrun_two_gloo_processes(tmp_path, tiny_data):
    out = tmp_path / "ddp"
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gm_core", "train",
          "--out", str(out), "--data", str(tiny_data), "--val", "", "--batch", "1", "--crop", "64",
          "--steps", "2", "--quiet", "--threads", "1", "--log-every", "1"], ROOT)
    st = torch.load(out / "last.pt", weights_only=True)
    assert st["step"] == 2


def test_train_bench_writes_its_report(tmp_path, tiny_data):
    report = tmp_path / "r.json"
    _run(["-m", "gm_core", "train-bench", "--recipe", "smoke", "--minutes", "0.05", "--images", str(tiny_data),
          "--limit", "1", "--out", str(tmp_path / "tb"), "--json", str(report), "--beside", "nothing", "--",
          "--data", str(tiny_data), "--batch", "2", "--crop", "64", "--threads", "1"], ROOT)
    r = json.loads(report.read_text())
    assert r["recipe"] == "smoke" and r["steps"] >= 1 and r["ran_beside"] == "nothing"
    assert len(r["points"]) == 6
    for p in r["points"]:
        assert p["bpp"] > 0 and np.isfinite(p["gap_to_jpeg_db"])


def test_final_crop_switches_crop_and_batch_for_the_last_part(tmp_path, tiny_data, monkeypatch):
    import signal

    from gm_core import train as train_mod
    seen = []
    real_batch = train_mod.ImageBank.batch

    def spy(self, n, crop, gen):
        seen.append((n, crop))
        return real_batch(self, n, crop, gen)

    monkeypatch.setattr(train_mod.ImageBank, "batch", spy)
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # keep pytest's own handlers
    args = train_mod.build_parser().parse_args(
        ["--out", str(tmp_path / "run"), "--data", str(tiny_data), "--val", "", "--steps", "4",
         "--batch", "2", "--crop", "64", "--final-crop", "128", "--final-batch", "1",
         "--final-frac", "0.5", "--quiet"])
    train_mod.train(args)
    assert seen == [(2, 64), (2, 64), (1, 128), (1, 128)]
    from gm_core.checkpoint import read_metadata
    meta = read_metadata(tmp_path / "run" / "model.safetensors")["meta"]
    assert meta["final_crop"] == 128 and meta["final_batch"] == 1


def test_g1_warm_start_codes_the_first_part_at_g1(tmp_path, tiny_data, monkeypatch):
    import signal

    from gm_core import train as train_mod
    seen = []
    real_step = train_mod.train_step

    def spy(net, model, x, part, *a, **k):
        seen.append(part.num_groups)
        return real_step(net, model, x, part, *a, **k)

    monkeypatch.setattr(train_mod, "train_step", spy)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    args = train_mod.build_parser().parse_args(
        ["--out", str(tmp_path / "run"), "--data", str(tiny_data), "--val", "", "--steps", "4",
         "--batch", "1", "--crop", "64", "--g1-frac", "0.5", "--default-prob", "1", "--quiet"])
    train_mod.train(args)
    assert seen == [1, 1, 16, 16]  # then the default partition, slices=32+32+64+64 x 2x2
    from gm_core.checkpoint import read_metadata
    assert read_metadata(tmp_path / "run" / "model.safetensors")["meta"]["g1_frac"] == 0.5


def test_bf16_autocast_covers_only_the_pixel_transforms():
    from gm_core.model import GroupedMixerModel
    from gm_core.config import get_config
    from gm_core.partition import GroupPartition
    from gm_core.train import rd_loss

    torch.manual_seed(0)
    cfg = get_config("tiny")
    model = GroupedMixerModel(cfg).train()
    dtypes = {}

    def record(name):
        def hook(module, inputs, output):
            dtypes[name] = (output[0] if isinstance(output, tuple) else output).dtype
        return hook

    for name in ("g_a", "g_s", "hyper", "latent"):
        getattr(model, name).register_forward_hook(record(name))
    x = torch.rand(2, 3, 64, 64)
    q = torch.tensor([0.0, 5.0])
    part = GroupPartition.parse(cfg.default_partition, cfg.M)
    out = model(x, part, q, amp=torch.bfloat16)
    assert dtypes == {"g_a": torch.bfloat16, "g_s": torch.bfloat16,
                      "hyper": torch.float32, "latent": torch.float32}
    assert out["x_hat"].dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values())
    loss, _, _ = rd_loss(out, x, model.lmbda(q))
    loss.backward()
    assert torch.isfinite(loss)
    assert model.g_a[0].weight.grad.dtype == torch.float32  # float32 master weights
    assert model.g_a[0].weight.grad.abs().sum() > 0 and model.g_s[-1].weight.grad.abs().sum() > 0


def test_train_records_amp_in_the_checkpoint(tmp_path, tiny_data, monkeypatch):
    import signal

    from gm_core import train as train_mod
    from gm_core.checkpoint import read_metadata
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    args = train_mod.build_parser().parse_args(
        ["--out", str(tmp_path / "run"), "--data", str(tiny_data), "--val", "", "--steps", "1",
         "--batch", "1", "--crop", "64", "--amp", "bf16", "--quiet"])
    train_mod.train(args)
    assert read_metadata(tmp_path / "run" / "model.safetensors")["meta"]["amp"] == "bf16"


def test_compile_trains_with_compiled_transforms_and_saves_plain_weights(tmp_path, tiny_data, monkeypatch):
    import signal

    from gm_core import train as train_mod
    from gm_core.checkpoint import load_checkpoint
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    args = train_mod.build_parser().parse_args(
        ["--out", str(tmp_path / "run"), "--data", str(tiny_data), "--val", "", "--steps", "2",
         "--batch", "1", "--crop", "64", "--amp", "bf16", "--compile", "--threads", "1", "--log-every", "1", "--quiet"])
    if not train_mod.has_cpp_compiler():
        with pytest.raises(SystemExit, match="C\\+\\+ compiler"):
            train_mod.train(args)
        return
    compiled = []
    real = train_mod.compile_transforms
    monkeypatch.setattr(train_mod, "compile_transforms", lambda m, d: (compiled.append(m), real(m, d)))
    train_mod.train(args)
    model = compiled[0]
    assert model.g_a._compiled_call_impl is not None and model.g_s._compiled_call_impl is not None
    assert model.latent._compiled_call_impl is None  # the entropy side stays eager
    # The weights save under their plain names and load into an uncompiled model.
    loaded, _, meta = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert meta["compile"] is True and meta["steps"] == 2
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)


def test_amp_auto_is_bf16_exactly_where_it_runs_natively(monkeypatch):
    from gm_core import train as train_mod
    cpu = torch.device("cpu")
    assert train_mod.resolve_amp("off", cpu) is None
    assert train_mod.resolve_amp("bf16", cpu) is torch.bfloat16
    for native in (True, False):
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
        assert train_mod.resolve_amp("auto", cpu) is (torch.bfloat16 if native else None)
    args = train_mod.build_parser().parse_args(["--out", "x"])
    assert args.amp == "auto" and args.default_prob == 0.7  # the measured recipe is the default


def test_bench_train_step_reports_both_modes(tmp_path, tiny_data):
    out = tmp_path / "step.json"
    _run(["scripts/bench_train_step.py", "--data", str(tiny_data), "--batch", "1", "--crop", "64",
          "--rounds", "1", "--steps", "1", "--out", str(out)], ROOT)
    r = json.loads(out.read_text())
    assert set(r["median_step_s"]) == {"fp32", "bf16"} and r["speedup_vs_fp32"]["fp32"] == 1.0
    assert all(np.isfinite(v) and v > 0 for v in r["mean_loss"].values())
    assert r["compile_s"] is None
    # the machine's kernels, as this process sees them: what makes a bf16 ratio readable
    assert r["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert r["native_bf16"] is native_bf16(torch.device("cpu"))


@pytest.mark.skipif(not has_cpp_compiler(),
                    reason="torch.compile on the CPU needs a C++ compiler (the trainer's refusal is tested above)")
def test_bench_train_step_times_the_compiled_mode_against_bf16(tmp_path, tiny_data):
    out = tmp_path / "step.json"
    _run(["scripts/bench_train_step.py", "--data", str(tiny_data), "--batch", "1", "--crop", "64",
          "--rounds", "1", "--steps", "1", "--modes", "bf16,bf16-compile", "--out", str(out)], ROOT)
    r = json.loads(out.read_text())
    assert set(r["median_step_s"]) == {"bf16", "bf16-compile"} and r["speedup_vs_fp32"] is None
    assert r["speedup_vs_bf16"]["bf16"] == 1.0 and r["speedup_vs_bf16"]["bf16-compile"] > 0
    assert r["compile_s"] > 0
    # Same initial weights and batches: the compiled copy trains the same model.
    assert abs(r["mean_loss"]["bf16-compile"] - r["mean_loss"]["bf16"]) < 0.05 * r["mean_loss"]["bf16"]


FT_ARGS = ["--val", "", "--batch", "1", "--crop", "64", "--quiet", "--amp", "off", "--threads", "1"]


@pytest.fixture(scope="module")
def one_step_run(tmp_path_factory, tiny_data):
    """A variable-rate run of one step and its exported Adam state: what a fine-tune starts from."""
    import signal

    from gm_core import train as train_mod
    run = tmp_path_factory.mktemp("one_step") / "run"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    train_mod.train(train_mod.build_parser().parse_args(
        ["--data", str(tiny_data), "--out", str(run), "--steps", "1"] + FT_ARGS))
    for s, h in handlers.items():  # the trainer installs its own; give pytest its own back
        signal.signal(s, h)
    assert train_mod.export_opt_state(run, run / "opt.pt") == 1
    return run


def test_export_opt_state_refuses_moments_of_another_step(one_step_run, tmp_path):
    import torch

    from gm_core import train as train_mod
    with pytest.raises(ValueError, match="from step 1, not 2"):
        train_mod.export_opt_state(one_step_run, tmp_path / "opt.pt", step=2)
    assert not (tmp_path / "opt.pt").exists()
    assert train_mod.export_opt_state(one_step_run, tmp_path / "opt.pt", step=1) == 1
    st = torch.load(tmp_path / "opt.pt", weights_only=True)
    assert st["steps"] == 1
    moments = [v for s in st["opt"]["state"].values() for v in s.values() if torch.is_tensor(v) and v.ndim]
    assert moments and all(v.dtype == torch.bfloat16 for v in moments)


def test_fine_tune_one_rate_point_of_a_variable_rate_checkpoint(tmp_path, tiny_data, one_step_run, monkeypatch):
    import signal

    from gm_core import train as train_mod
    from gm_core.checkpoint import load_checkpoint, select_rate_points
    from gm_core.config import DEFAULT_LAMBDAS
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    base = ["--data", str(tiny_data)] + FT_ARGS
    run = one_step_run

    full, _, _ = load_checkpoint(run / "model.safetensors")
    one, rows = select_rate_points(full, (DEFAULT_LAMBDAS[3],))
    assert rows == [3] and one.cfg.lambdas == (DEFAULT_LAMBDAS[3],)
    assert torch.equal(one.log_gain[0], full.log_gain[3])
    assert torch.equal(one.log_hyper_inv_gain[0], full.log_hyper_inv_gain[3])
    assert torch.equal(one.g_s.state_dict()[next(iter(one.g_s.state_dict()))],
                       full.g_s.state_dict()[next(iter(full.g_s.state_dict()))])

    # The trainer starts from that rate point, with the campaign's Adam moments cut to match.
    tuned = tmp_path / "tuned"
    train_mod.train(train_mod.build_parser().parse_args(
        base + ["--out", str(tuned), "--steps", "3", "--lmbda", str(DEFAULT_LAMBDAS[3]),
                "--init", str(run / "model.safetensors"), "--opt-state", str(run / "opt.pt")]))
    model, _, meta = load_checkpoint(tuned / "model.safetensors")
    assert model.cfg.lambdas == (DEFAULT_LAMBDAS[3],) and meta["steps"] == 3
    assert torch.isfinite(model.log_gain).all()

    with pytest.raises(SystemExit, match="not a rate point.*0.0018"):
        train_mod.train(train_mod.build_parser().parse_args(
            base + ["--out", str(tmp_path / "bad"), "--steps", "2", "--lmbda", "0.02",
                    "--init", str(run / "model.safetensors")]))


def test_train_bench_measures_a_fine_tune_against_its_start(tmp_path, tiny_data, one_step_run, monkeypatch):
    import argparse
    import signal

    from gm_core import train_bench
    from gm_core.codec import Codec
    from gm_core.config import DEFAULT_LAMBDAS
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    base = ["--data", str(tiny_data), "--batch", "1", "--crop", "64", "--amp", "off", "--threads", "1"]
    ck = one_step_run / "model.safetensors"
    # As if ck were the shipped checkpoint: its Kodak curve is in assets/results.
    start_curve = {"bpp": [0.5, 1.0, 2.0, 4.0, 8.0, 16.0], "psnr-rgb": [10.0, 12.0, 14.0, 16.0, 18.0, 20.0]}
    shipped = tmp_path / "kodak_tiny.json"
    shipped.write_text(json.dumps({"model_id": Codec.load(ck).model_id, "results": start_curve}))
    monkeypatch.setattr(train_bench, "SHIPPED_RESULTS", shipped)
    args = argparse.Namespace(recipe="tune", config="tiny", minutes=0.05, images=str(tiny_data), limit=1,
                              out=str(tmp_path / "tune"), resume=False, beside="", evaluate_only=False, trained_on="",
                              train_args=base + ["--init", str(ck), "--lmbda", str(DEFAULT_LAMBDAS[3])])
    r = train_bench.run_train_bench(args)
    assert r["start"]["steps"] == 1 and r["start"]["model_id"] == Codec.load(ck).model_id
    assert len(r["start"]["points"]) == 6 and len(r["points"]) == 1
    p = r["points"][0]
    assert p["gain_over_start_db"] == pytest.approx(p["psnr"] - train_bench.psnr_at(p["bpp"], start_curve),
                                                    abs=2e-3)


def test_train_bench_evaluates_a_run_trained_elsewhere_without_training(tmp_path, tiny_data, one_step_run,
                                                                         monkeypatch):
    """A recipe trained on a lent GPU comes back as a run folder; --evaluate-only measures it here
    with the run's own step count and clock, and never trains."""
    import argparse
    import shutil

    from gm_core import train as train_mod
    from gm_core import train_bench
    from gm_core.codec import Codec

    def no_training(*a, **k):
        raise AssertionError("--evaluate-only trained")

    monkeypatch.setattr(train_mod, "train", no_training)
    args = argparse.Namespace(recipe="gpu", config="tiny", minutes=1.5, images=str(tiny_data), limit=1,
                              out=str(tmp_path / "missing"), resume=False, beside="", evaluate_only=True,
                              trained_on="a lent GPU", train_args=["--amp", "bf16", "--device", "cuda"])
    with pytest.raises(SystemExit, match="needs the run's model.safetensors and log.jsonl"):
        train_bench.run_train_bench(args)
    run = tmp_path / "gpu"
    run.mkdir()
    for f in ("model.safetensors", "log.jsonl"):
        shutil.copyfile(one_step_run / f, run / f)
    args.out = str(run)
    r = train_bench.run_train_bench(args)
    meta = Codec.load(run / "model.safetensors").meta
    assert r["steps"] == meta["steps"] == 1
    assert r["train_seconds"] == pytest.approx(meta["train_minutes"] * 60, abs=0.1)
    assert r["machine"]["trained_on"] == "a lent GPU"
    assert r["train_options"]["device"] == "cuda" and r["train_options"]["minutes"] == 1.5
    assert len(r["points"]) == 6 and all(p["bpp"] > 0 for p in r["points"])
    args.evaluate_only = False  # --trained-on names where a run was trained; here it would train
    with pytest.raises(SystemExit, match="--trained-on describes a run measured with --evaluate-only"):
        train_bench.run_train_bench(args)


def test_an_interrupted_train_bench_evaluates_nothing(tmp_path, tiny_data, monkeypatch):
    """SIGTERM ends training cleanly with a checkpoint that says so; a recipe cut short is not
    comparable at equal compute, so the train-bench writes no report for it."""
    import argparse
    import signal

    from gm_core import train as train_mod
    from gm_core import train_bench
    from gm_core.checkpoint import read_metadata
    handlers = {}
    monkeypatch.setattr(signal, "signal", lambda sig, h: handlers.__setitem__(sig, h))
    real_step = train_mod.train_step

    def step_then_sigterm(*a, **k):
        out = real_step(*a, **k)
        handlers[signal.SIGTERM](signal.SIGTERM, None)
        return out

    monkeypatch.setattr(train_mod, "train_step", step_then_sigterm)
    args = argparse.Namespace(recipe="cut", config="tiny", minutes=5.0, images=str(tiny_data), limit=1,
                              out=str(tmp_path / "cut"), resume=False, beside="", evaluate_only=False, trained_on="",
                              train_args=["--data", str(tiny_data), "--batch", "1", "--crop", "64",
                                          "--amp", "off", "--threads", "1"])
    with pytest.raises(SystemExit, match="interrupted at step 1 .* no report"):
        train_bench.run_train_bench(args)
    meta = read_metadata(tmp_path / "cut" / "model.safetensors")["meta"]
    assert meta["interrupted"] is True and meta["steps"] == 1
