"""Precision chosen by the hardware: 'auto' resolves to bf16 only where bf16 is native, and the
choice is recorded in config.json."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli

from genlab import training
from genlab.hardware import bf16_slowdown, native_bf16, resolve_precision
from genlab.recipes import load_run, make_config


def test_auto_follows_the_hardware_and_explicit_choices_stay():
    native = native_bf16("cpu")
    precision, reason = resolve_precision("auto", "cpu")
    assert precision == ("bf16" if native else "fp32")
    assert reason.startswith(f"precision auto -> {precision}")
    assert resolve_precision("fp32", "cpu")[0] == "fp32"
    precision, reason = resolve_precision("bf16", "cpu")
    assert precision == "bf16"
    assert ("warning" in reason and "slower than fp32" in reason) == (not native)


def test_gpus_without_bf16_get_fp16_with_gradient_scaling_and_cpus_never_do(monkeypatch):
    import genlab.hardware as hw
    from genlab.errors import ConfigError

    monkeypatch.setattr(hw, "native_bf16", lambda device_type="cpu": False)
    assert hw.resolve_precision("auto", "cuda")[0] == "fp16"
    assert "gradient scaling" in hw.resolve_precision("auto", "cuda")[1]
    assert hw.resolve_precision("auto", "cpu")[0] == "fp32"
    monkeypatch.setattr(hw, "native_bf16", lambda device_type="cpu": True)
    assert hw.resolve_precision("auto", "cuda")[0] == "bf16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        hw.resolve_precision("fp16", "cpu")
    code, _, err = run_cli("train", "vae", "--dataset", "digits", "--steps", "1",
                           "--precision", "fp16", "--device", "cpu")
    assert code == 2 and "fp16 needs a CUDA GPU" in err


def test_bf16_slowdown_is_measured():
    ratio = bf16_slowdown()
    assert ratio > 0
    if not native_bf16("cpu"):
        assert ratio > 2  # emulated bf16 is far slower than fp32


def test_auto_is_resolved_once_and_written_into_the_run(tmp_path, capsys):
    cfg = make_config("vae", "reference", dataset="digits", steps=2, batch_size=16,
                      hidden=(8,), run_dir=str(tmp_path / "r"))
    assert cfg.precision == "auto"
    run_dir = training.train(cfg, progress=False)
    saved = json.loads((run_dir / "config.json").read_text())["precision"]
    assert saved == ("bf16" if native_bf16("cpu") else "fp32")
    assert f"precision auto -> {saved}" in capsys.readouterr().err
    run = load_run(run_dir)
    assert run.config.precision == saved and run.model(torch.rand(2, 1, 8, 8))[0].dtype == \
        torch.float32


def test_runs_of_different_precision_train_one_after_another_in_one_process(tmp_path):
    """Accelerate keeps one mixed-precision setting per process; genlab resets it per run, so a
    notebook can train fp32, then bf16, then fp32 again, and the last run is the first one's
    twin (the bf16 run left nothing behind)."""
    from safetensors.torch import load_file

    def run(name: str, precision: str):
        cfg = make_config("vae", "reference", dataset="digits", steps=3, batch_size=16,
                          hidden=(8,), precision=precision, run_dir=str(tmp_path / name))
        return training.train(cfg, progress=False)

    def weights(run_dir):
        return load_file(sorted((run_dir / "checkpoints").rglob("*.safetensors"))[0])

    first, mixed, last = run("a", "fp32"), run("b", "bf16"), run("c", "fp32")
    assert json.loads((mixed / "config.json").read_text())["precision"] == "bf16"
    a, b, c = weights(first), weights(mixed), weights(last)
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # bf16 autocast did act on run b


def test_openmp_threads_wait_passively_unless_the_user_or_torch_came_first():
    """genlab sets OMP_WAIT_POLICY=PASSIVE before torch loads its OpenMP runtime (idle threads
    that spin steal the cores of a second busy process: benchmarks/bench_threads.py)."""
    import os
    import subprocess
    import sys

    probe = "import os, {first}; print(os.environ.get('OMP_WAIT_POLICY'))"

    def policy(first: str, **env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        done = subprocess.run([sys.executable, "-c", probe.format(first=first)],
                              env={**clean, **env}, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    assert policy("genlab") == "PASSIVE"
    assert policy("genlab", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"  # the user's choice stays
    assert policy("torch, genlab") == "None"  # too late to matter: left alone
