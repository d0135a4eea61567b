"""End-to-end: the `genlab` command on the embedded digits, as a new user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from genlab.cli import main


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def genlab(*args: str, cwd: Path, subprocess_run: bool = False):
    """Run the CLI: in-process by default (saves the 3 s torch import), or as a real process."""
    if subprocess_run:
        return subprocess.run([sys.executable, "-m", "genlab.cli", *args], cwd=cwd,
                              capture_output=True, text=True, timeout=300)
    import contextlib
    import io
    import os

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = exc.code
    finally:
        os.chdir(old)
    return Result(code, out.getvalue(), err.getvalue())


def test_train_evaluate_sample_plot_on_digits(tmp_path):
    run = tmp_path / "vae"
    r = genlab("train", "vae", "--preset", "reference", "--epochs", "3", "--hidden", "32",
               "--run-dir", str(run), cwd=tmp_path, subprocess_run=True)
    assert r.returncode == 0, r.stderr
    assert f"run folder: {run}" in r.stdout
    for name in ("reconstructions", "latent", "manifold", "samples", "curves"):
        assert (run / "figures" / f"{name}.png").stat().st_size > 1000
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 36 and {"loss", "recon", "kl", "images_per_s"} <= set(log[-1])

    r = genlab("evaluate", str(run), "--k", "20", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["iwae_k"] == 20 and metrics["num_images"] == 297 and metrics["beta"] == 0.1
    assert metrics["nll_iwae_nats"] <= metrics["nll_elbo_nats"] + 1.0

    r = genlab("sample", str(run), "-n", "12", "--out", str(tmp_path / "s"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "s").glob("0*.png"))) == 12
    assert (tmp_path / "s" / "gallery.png").exists()

    r = genlab("plot", str(run), "latent", "--out", str(tmp_path / "l.png"), cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "l.png").exists()
    r = genlab("plot", str(run), "tsne", cwd=tmp_path)
    assert r.returncode == 0  # a 2-d latent can still be embedded on request


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", "vae", "--dataset", "nope", "--run-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown dataset 'nope'" in err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a genlab run folder" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "say what to train" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "vae", "--arch", "transformer"])
    assert exc.value.code == 2


def test_help_lists_every_flag_with_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "vae", "--help"])
    out = capsys.readouterr().out
    for flag in ("--latent-dim", "--beta", "--binarize", "--epochs", "--steps", "--seed",
                 "--data-dir", "--run-dir", "--preset"):
        assert flag in out
    assert "reference: 0.1" in out and "{mlp,conv}" in out


def test_sweep_writes_comparison_figure(tmp_path):
    r = genlab("sweep", "vae", "--latent-dims", "2,3", "--epochs", "2", "--hidden", "16",
               "--run-dir", str(tmp_path / "sw"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sw" / "reconstructions_by_latent_dim.png").exists()
    assert (tmp_path / "sw" / "z3" / "figures" / "tsne.png").exists()
    assert json.loads((tmp_path / "sw" / "z2" / "metrics.json").read_text())["step"] == 24


def test_resume_from_the_cli(tmp_path):
    run = tmp_path / "r"
    assert genlab("train", "vae", "--steps", "5", "--checkpoint-every", "5", "--run-dir",
                  str(run), cwd=tmp_path).returncode == 0
    r = genlab("train", "vae", "--resume", str(run), "--steps", "8", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 8
    r = genlab("train", "--resume", str(run), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = genlab("train", "vae", "--resume", str(run), "--beta", "0.5", cwd=tmp_path,
               subprocess_run=True)
    assert r.returncode == 2 and "beta (saved 1.0, given 0.5)" in r.stderr


def test_conv_vae_on_an_rgb_image_folder(tiny_folder, tmp_path):
    run = tmp_path / "conv"
    r = genlab("train", "vae", "--dataset", f"folder:{tiny_folder}", "--arch", "conv",
               "--hidden", "4,8", "--latent-dim", "3", "--steps", "4", "--batch-size", "4",
               "--run-dir", str(run), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    metrics = json.loads(json.dumps(__import__("genlab").evaluate(run, k=10)))
    assert metrics["num_images"] == 4 and metrics["nll_iwae_nats"] > 0
    assert (run / "figures" / "tsne.png").exists()
    r = genlab("train", "vae", "--dataset", f"folder:{tiny_folder}", "--arch", "conv",
               "--hidden", "4,8,16,32", "--steps", "1", "--run-dir", str(tmp_path / "c2"),
               cwd=tmp_path)
    assert r.returncode == 2 and "divisible by 16; got 8x8" in r.stderr
