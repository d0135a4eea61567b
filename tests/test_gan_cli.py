"""End-to-end: the GAN denoiser through the `genlab` command, on a small FER-format CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from genlab import training as train_module
from genlab.errors import TrainingDiverged
from genlab.recipes import gan as gan_recipe
from genlab.recipes import make_config
from genlab.samplers import bm3d_available

SIDE = 16


genlab = run_cli


def blob_faces(n: int, side: int, seed: int) -> np.ndarray:
    """Bright discs on a dark background: simple images a denoiser can learn in a few steps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    faces = []
    for _ in range(n):
        cy, cx = rng.uniform(0.3 * side, 0.7 * side, 2)
        r = rng.uniform(0.2 * side, 0.4 * side)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        faces.append(np.clip(60 + 150 * disc + rng.normal(0, 5, (side, side)), 0, 255))
    return np.rint(np.stack(faces)).astype(np.uint8)


@pytest.fixture
def fer_dir(tmp_path: Path) -> Path:
    faces = blob_faces(40, SIDE, 0)
    lines = ["emotion,pixels,Usage"]
    for i, face in enumerate(faces):
        usage = "Training" if i < 32 else "PublicTest"
        lines.append(f"{i % 7},{' '.join(map(str, face.ravel()))},{usage}")
    (tmp_path / "fer2013.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.fixture
def no_bm3d_in_figures(monkeypatch):
    """BM3D costs about a second per image; the figures skip it here (evaluate still runs it)."""
    monkeypatch.setattr(gan_recipe, "bm3d_available", lambda *shape: False)


TRAIN = ("--dataset", "fer2013", "--batch-size", "8", "--width", "8", "--device", "cpu",
         "--log-every", "2")


def test_train_evaluate_denoise(fer_dir, tmp_path, no_bm3d_in_figures, monkeypatch):
    run = tmp_path / "gan"
    code, out, err = genlab("train", "gan", *TRAIN, "--data-dir", str(fer_dir), "--steps", "4",
                            "--run-dir", str(run))
    assert code == 0, err
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4
    assert {"d_real", "d_fake", "d_loss", "g_adv", "l1", "loss"} <= set(log[-1])
    assert 0 < log[-1]["d_real"] < 1 and 0 < log[-1]["d_fake"] < 1
    for kind in ("noisy", "denoised", "curves"):
        assert (run / "figures" / f"{kind}.png").stat().st_size > 1000

    # evaluate runs BM3D where it is installed (3 images): the fixture only spared the figures
    monkeypatch.setattr(gan_recipe, "bm3d_available", bm3d_available)
    code, out, err = genlab("evaluate", str(run), "--num-images", "3", "--device", "cpu")
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["noise"] == "poisson-peak255" and metrics["num_images"] == 3
    methods = metrics["methods"]
    assert {"noisy", "gan", "nlm_anscombe"} <= set(methods)
    assert ("bm3d_anscombe" in methods) == bm3d_available()
    if not bm3d_available():
        assert "bm3d" in metrics["skipped"]
    # The noisy input at the reference noise: about 10 log10(255^2 / mean grey) dB.
    assert 24 < methods["noisy"]["psnr"] < 34
    assert methods["nlm_anscombe"]["psnr"] > methods["noisy"]["psnr"]

    # An odd-sized grey PNG, its clean reference, an RGB JPEG and a 16-bit PNG.
    rng = np.random.default_rng(1)
    clean = np.clip(np.add.outer(np.arange(45), np.arange(51)) * 2.5, 0, 255).astype(np.uint8)
    noisy = np.clip(rng.poisson(clean.astype(float)), 0, 255).astype(np.uint8)
    Image.fromarray(clean).save(tmp_path / "clean.png")
    Image.fromarray(noisy).save(tmp_path / "face.png")
    Image.fromarray(np.stack([noisy, noisy.T[:45, :45].repeat(2, 1)[:, :51], noisy], 2)).save(
        tmp_path / "colour.jpg")
    Image.fromarray(clean.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    outdir = tmp_path / "denoised"
    code, out, err = genlab("denoise", str(run), str(tmp_path / "face.png"), "--clean",
                            str(tmp_path / "clean.png"), "--out", str(outdir), "--device", "cpu")
    assert code == 0, err
    assert "PSNR" in out and "dB" in out
    assert np.asarray(Image.open(outdir / "face.png")).shape == (45, 51)
    code, out, err = genlab("denoise", str(run), str(tmp_path / "colour.jpg"),
                            str(tmp_path / "deep.png"), "--out", str(outdir), "--precision", "bf16")
    assert code == 0, err
    assert np.asarray(Image.open(outdir / "colour.png")).shape == (45, 51, 3)
    deep = Image.open(outdir / "deep.png")
    assert deep.mode.startswith("I;16") and deep.size == (51, 45)
    code, out, err = genlab("denoise", str(run), str(tmp_path / "deep.png"), "--add-noise",
                            "--peak", "30", "--out", str(outdir))
    assert code == 0, err
    assert (outdir / "deep_noisy.png").exists() and "PSNR" in out


def test_denoise_bad_input_is_one_line_and_exit_2(fer_dir, tmp_path, no_bm3d_in_figures):
    run = tmp_path / "gan"
    code, _, err = genlab("train", "gan", *TRAIN, "--data-dir", str(fer_dir), "--steps", "1",
                          "--run-dir", str(run))
    assert code == 0, err
    Image.fromarray(np.zeros((10, 60), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "notes.png").write_text("not an image")
    vae = tmp_path / "vae"
    code, _, err = genlab("train", "vae", "--steps", "1", "--hidden", "8", "--run-dir", str(vae))
    assert code == 0, err
    out = str(tmp_path / "o")
    cases = [
        ((str(run), str(tmp_path / "notes.png")), "notes.png: not a readable image"),
        ((str(run), str(tmp_path / "small.png")),
         "image is 60x10; this denoiser needs at least 43x43"),
        ((str(run), str(tmp_path / "ok.png"), "--add-noise", "--peak", "0"),
         "peak must be a positive number, got 0.0"),
        ((str(run), str(tmp_path / "ok.png"), "--add-noise", "--sigma", "-5"), None),
        ((str(vae), str(tmp_path / "ok.png")), "is a vae run, not a denoiser"),
        ((str(tmp_path), str(tmp_path / "ok.png")), "not a genlab run folder"),
    ]
    for args, message in cases:
        code, _, err = genlab("denoise", *args, "--out", out)
        if message is None:  # sigma only applies to Gaussian runs: this Poisson run ignores it
            assert code == 0, err
            continue
        assert code == 2, (args, err)
        assert err.count("\n") == 1 and message in err, err


def test_discriminator_that_wins_outright_stops_the_run(fer_dir, tmp_path, monkeypatch):
    real_d_loss = gan_recipe.gan_d_loss

    def winning(*args, **kwargs):
        loss, logs = real_d_loss(*args, **kwargs)
        return loss, {**logs, "d_real": torch.tensor(0.999), "d_fake": torch.tensor(0.001)}

    monkeypatch.setattr(gan_recipe, "gan_d_loss", winning)
    cfg = make_config("gan", "default", dataset="fer2013", data_dir=str(fer_dir), steps=6,
                      batch_size=8, width=8, device="cpu", checkpoint_every=2, max_d_wins=3,
                      run_dir=str(tmp_path / "run"))
    with pytest.raises(TrainingDiverged, match=r"won outright .* for 3 consecutive steps at step 2"
                       r".*last good checkpoint \(step 2\)"):
        train_module.train(cfg, progress=False)
    latest = json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 2


def test_resumed_run_matches_an_uninterrupted_one(fer_dir, tmp_path):
    common = dict(dataset="fer2013", data_dir=str(fer_dir), batch_size=8, device="cpu",
                  log_every=1, arch="reference", disc="reference")  # Dropout in D: global RNG
    straight = train_module.train(make_config("gan", "reference", steps=4, **common,
                                              run_dir=str(tmp_path / "a")), progress=False)
    train_module.train(make_config("gan", "reference", steps=2, **common,
                                   run_dir=str(tmp_path / "b")), progress=False)
    resumed = train_module.train(resume=tmp_path / "b", steps=4, progress=False)

    def losses(run: Path) -> list[float]:
        lines = (run / "log.jsonl").read_text().splitlines()
        return [v for r in map(json.loads, lines) for v in (r["d_loss"], r["loss"])]

    assert len(losses(resumed)) == 8
    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-5)


def test_dcgan_trains_and_samples_on_digits(tmp_path):
    run = tmp_path / "dcgan"
    code, _, err = genlab("train", "dcgan", "--dataset", "digits",
                          "--steps", "3", "--batch-size", "16", "--width", "8", "--latent-dim",
                          "8", "--device", "cpu", "--run-dir", str(run))
    assert code == 0, err
    assert {"d_real", "d_fake", "g_adv"} <= set(json.loads(
        (run / "log.jsonl").read_text().splitlines()[-1]))
    assert (run / "figures" / "samples.png").exists()
    code, out, err = genlab("sample", str(run), "-n", "5", "--out", str(tmp_path / "s"))
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "s" / "0004.png")).shape == (8, 8)
    code, _, err = genlab("denoise", str(run), str(tmp_path / "s" / "0000.png"), "--out",
                          str(tmp_path / "o"))
    assert code == 2 and "is a dcgan run, not a denoiser" in err


# The fields genlab 0.1 wrote into a GAN run's config.json (one family, two modes).
OLD_BASE = ("dataset", "data_dir", "download", "run_dir", "seed", "epochs", "steps", "max_minutes",
            "batch_size", "lr", "precision", "channels_last", "device", "log_every",
            "checkpoint_every", "num_threads")
OLD_GAN = ("family", "mode", "arch", "disc", "width", "noise", "peak", "sigma", "l1_weight",
           "adv_weight", "latent_dim", "lr_d", "beta1", "max_d_wins")
OLD_DEFAULTS = dict(arch="unet", disc="patch", noise="poisson", peak=255.0, sigma=25.0,
                    l1_weight=100.0, latent_dim=100, width=32)


def as_old_gan_run(run: Path, mode: str) -> None:
    """Rewrite a run's config.json exactly as genlab 0.1 wrote it: family 'gan' with a mode."""
    values = json.loads((run / "config.json").read_text())
    old = {k: values.get(k, OLD_DEFAULTS.get(k)) for k in OLD_BASE + OLD_GAN}
    old.update(family="gan", mode=mode)
    (run / "config.json").write_text(json.dumps(old, indent=2))


def test_runs_written_by_genlab_0_1_still_load_sample_denoise_and_evaluate(fer_dir, tmp_path,
                                                                           no_bm3d_in_figures):
    denoiser = tmp_path / "old-denoiser"
    code, _, err = genlab("train", "gan", *TRAIN, "--data-dir", str(fer_dir), "--steps", "2",
                          "--run-dir", str(denoiser))
    assert code == 0, err
    as_old_gan_run(denoiser, "denoise")
    code, out, err = genlab("evaluate", str(denoiser), "--num-images", "4", "--baselines", "nlm")
    assert code == 0 and "psnr" in out, err
    noisy = tmp_path / "face.png"
    Image.fromarray(blob_faces(1, 48, 3)[0]).save(noisy)
    code, out, err = genlab("denoise", str(denoiser), str(noisy), "--out", str(tmp_path / "d"))
    assert code == 0 and (tmp_path / "d" / "face.png").exists(), err
    code, _, err = genlab("sample", str(denoiser), "--out", str(tmp_path / "s0"))
    assert code == 2 and "draws no images of its own" in err and "use `genlab denoise" in err

    generator = tmp_path / "old-generator"
    code, _, err = genlab("train", "dcgan", "--preset", "reference", "--dataset", "digits",
                          "--steps", "2", "--batch-size", "16", "--width", "8", "--device",
                          "cpu", "--run-dir", str(generator))
    assert code == 0, err
    as_old_gan_run(generator, "generate")
    code, _, err = genlab("sample", str(generator), "-n", "3", "--out", str(tmp_path / "s"))
    assert code == 0 and (tmp_path / "s" / "0002.png").exists(), err
    code, _, err = genlab("plot", str(generator), "samples")
    assert code == 0, err
    train_module.train(resume=generator, steps=3, progress=False)
    assert json.loads((generator / "checkpoints" / "latest.json").read_text())["step"] == 3
