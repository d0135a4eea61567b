"""End-to-end: `genlab train ddpm`, then `sample` and `evaluate`, on the embedded digits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from genlab.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def genlab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENLAB_CACHE": str(cwd / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "genlab.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_train_sample_evaluate_on_digits(tmp_path: Path) -> None:
    run = tmp_path / "ddpm"
    r = genlab("train", "ddpm", "--channels", "8,16", "--num-steps", "30", "--steps", "12",
               "--batch-size", "32", "--warmup-steps", "3", "--class-conditional",
               "--hflip", "--log-every", "4", "--run-dir", str(run), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in log] == [4, 8, 12]
    assert {"loss", "grad_norm", "images_per_s"} <= set(log[-1])
    assert 0.05 < log[-1]["loss"] < 3
    assert (run / "samples" / "step-00000012.png").exists()
    for kind in ("forward", "snr", "samples", "interpolation", "curves"):
        assert (run / "figures" / f"{kind}.png").stat().st_size > 1000, kind
    assert not (run / "figures" / "progression.png").exists()  # T ancestral steps: on request

    out = tmp_path / "gallery"
    r = genlab("sample", str(run), "-n", "20", "--sampler", "ddim", "--steps", "5",
               "--class", "3", "--guidance", "2", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(list(out.glob("0*.png"))) == 20
    # 20 images on a sqrt(n) = 5-column grid: 4 rows of 8x8 digits (enlarged), row-major
    width, height = Image.open(out / "gallery.png").size
    assert width > height and abs(width / height - 5 / 4) < 0.05
    r = genlab("sample", str(run), "-n", "4", "--sampler", "ddpm", "--out", str(out / "d"),
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    r = genlab("evaluate", str(run), "--num-samples", "40", "--ddpm-samples", "10",
               "--ddim-steps", "5", "--ddim-eta", "0.5", "--feature-steps", "40", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads((run / "metrics.json").read_text())
    assert m["num_samples_ddim5"] == 40 and m["num_samples_ddpm30"] == 10 and m["ddim_eta"] == 0.5
    assert m["fid_ddim5"] > 0 and m["fid_ddpm30"] > 0 and "kid_ddim5" in m
    assert "fid_ddim5_at_10" in m and m["seconds_per_image_ddpm30"] > 0
    assert 0.1 < m["feature_net_test_accuracy"] <= 1.0
    info = json.loads((Path(m["feature_net"]) / "info.json").read_text())
    assert info["steps"] == 40 and info["dataset"] == "digits"


def test_bad_ddpm_requests_are_one_line_errors(tmp_path: Path, capsys) -> None:
    run = tmp_path / "u"
    assert main(["train", "ddpm", "--channels", "8,16", "--num-steps", "10", "--steps", "2",
                 "--batch-size", "8", "--run-dir", str(run)]) == 0
    capsys.readouterr()
    cases = [
        (["--class", "3"], "this run is unconditional"),
        (["--guidance", "2"], "guidance scale needs a class-conditional run"),
        (["--steps", "11"], "between 1 and the run's T = 10, got 11"),
        (["--sampler", "ddpm", "--steps", "5"], "apply to the ddim sampler"),
    ]
    for flags, message in cases:
        assert main(["sample", str(run), "-n", "2", *flags, "--out", str(tmp_path / "s")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and err.count("\n") == 0, (flags, err)
    assert main(["train", "ddpm", "--preset", "reference", "--dataset", "digits", "--steps", "1",
                 "--run-dir", str(tmp_path / "ref")]) == 2
    err = capsys.readouterr().err
    assert "multiples of 16" in err and "got 8x8" in err
