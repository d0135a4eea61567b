"""Responsive defaults: `genlab evaluate` scores a quick protocol unless --full, which says what it
will cost first; the figures drawn after training cost a bounded number of network calls; and
an unlabelled image folder is scored in contrastive (label-free) features instead of being
refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genlab
from genlab import data, recipes
from genlab.figures import plot, plot_all
from genlab.images import to_float
from genlab.models.unet import ReferenceUNet, ResUNet
from genlab.recipes import ddpm
from genlab.recipes.base import QUICK_FIGURE_IMAGES, QUICK_FIGURE_NFE, QUICK_INTERPOLATION
from genlab.recipes.scoring import Scorer
from genlab.training import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))


def tiny_run(tmp_path: Path, family: str = "ddpm", **overrides) -> Path:
    values = dict(dataset="digits", steps=2, batch_size=8, warmup_steps=0, log_every=1,
                  run_dir=str(tmp_path / family))
    if family in ("ddpm", "flow"):
        values["channels"] = (8, 16)
    cfg = genlab.make_config(family, **{**values, **overrides})
    return train(cfg, progress=False)


@pytest.fixture
def unet_calls(monkeypatch):
    """(network calls, images through the network) of every UNet forward."""
    counts = {"calls": 0, "images": 0}

    def counting(forward):
        def counted(self, x_t, t, y=None):
            counts["calls"] += 1
            counts["images"] += x_t.shape[0]
            return forward(self, x_t, t, y)
        return counted
    for cls in (ResUNet, ReferenceUNet):
        monkeypatch.setattr(cls, "forward", counting(cls.forward))
    return counts


def test_the_reference_preset_draws_its_figures_in_a_bounded_number_of_calls(tmp_path,
                                                                            unet_calls):
    """The issue: `train ddpm --preset reference --steps 2` on CIFAR-10 spent minutes drawing
    figures (T = 300 ancestral steps, 100 DDIM-50 samples) after seconds of training."""
    folder = tmp_path / "rgb"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            folder / f"{i:02d}.png")
    cfg = genlab.make_config("ddpm", "reference", dataset=f"folder:{folder}",
                             channels=(4, 4, 4, 4, 4), steps=2, batch_size=4,
                             run_dir=str(tmp_path / "ref"))
    assert cfg.num_steps == 300
    run_dir = train(cfg, progress=False)  # 2 steps and the checkpoint's DDIM-50 preview
    assert unet_calls["calls"] == 2 + 50
    unet_calls.update(calls=0, images=0)
    plot_all(run_dir, device="cpu")  # what `genlab train` draws after training
    assert unet_calls["calls"] <= 2 * QUICK_FIGURE_NFE, unet_calls
    rows, per_row = QUICK_INTERPOLATION
    assert unet_calls["images"] <= (QUICK_FIGURE_IMAGES + rows * per_row) * QUICK_FIGURE_NFE
    assert {p.stem for p in (run_dir / "figures").glob("*.png")} == {
        "forward", "snr", "samples", "interpolation", "curves"}


@pytest.mark.parametrize("family", ["ddpm", "flow"])
def test_figures_after_training_cost_a_bounded_number_of_network_calls(tmp_path, unet_calls,
                                                                       family):
    overrides = {"num_steps": 1000} if family == "ddpm" else {}
    run_dir = tiny_run(tmp_path, family, **overrides)
    unet_calls.update(calls=0, images=0)
    paths = plot_all(run_dir, device="cpu")
    assert "progression" not in {p.stem for p in paths}  # T ancestral calls: on request only
    rows, per_row = QUICK_INTERPOLATION
    # samples + interpolation, QUICK_FIGURE_NFE calls each (flow: + 10 Euler trajectory steps)
    assert unet_calls["calls"] <= 3 * QUICK_FIGURE_NFE, unet_calls
    assert unet_calls["images"] <= (QUICK_FIGURE_IMAGES + rows * per_row + 8) * QUICK_FIGURE_NFE
    # `genlab plot` draws the full figure: DDIM-50 / Heun-20 on 100 images
    unet_calls.update(calls=0, images=0)
    plot(run_dir, "samples", device="cpu")
    assert unet_calls["calls"] >= 20 and unet_calls["images"] >= 100 * 20


def test_ancestral_progression_is_drawn_on_request(tmp_path, unet_calls):
    run_dir = tiny_run(tmp_path, num_steps=40)
    unet_calls.update(calls=0, images=0)
    assert plot(run_dir, "progression", device="cpu").is_file()
    assert unet_calls["calls"] == 40


def test_evaluate_defaults_to_the_quick_protocol(tmp_path, monkeypatch):
    run_dir = tiny_run(tmp_path, num_steps=100)
    monkeypatch.setattr("genlab.featurenet._train", lambda *a, **k: 1 / 0)  # shipped: no training
    m = genlab.evaluate(run_dir, device="cpu")
    assert m["protocol"] == "quick" and m["num_samples_ddim50"] == 500
    assert not any(k.startswith(("fid_ddpm", "num_samples_ddpm")) for k in m)
    assert m["feature_net"].endswith("digits.safetensors") and m["feature_net_task"] == "classes"


def test_full_protocol_scores_more_and_prints_its_cost_first(tmp_path, monkeypatch, capsys):
    run_dir = tiny_run(tmp_path, num_steps=50)  # T >= the protocol's 50 DDIM steps
    drawn = []
    generate = ddpm.generate

    def recording(run, n, gen, sampler="ddim", steps=None, **kwargs):
        drawn.append((sampler, n, steps))
        if n > 100:  # the protocol's own sets: their size is what is checked, not their FID
            return torch.zeros(n, *run.image_shape)
        return generate(run, n, gen, sampler, steps, **kwargs)
    monkeypatch.setattr(ddpm, "generate", recording)
    monkeypatch.setattr("genlab.recipes.scoring.Scorer.score", lambda self, fake, label: {})
    monkeypatch.setattr("genlab.recipes.scoring.Scorer.fid", lambda self, fake: 0.0)
    m = genlab.evaluate(run_dir, device="cpu", full=True)
    err = capsys.readouterr().err
    line = ("full protocol: 10000 DDIM-50 samples + 1000 ancestral T=50 samples, about ")
    assert line in err and line in m["full_protocol"] and m["protocol"] == "full"
    # the cost is measured on small DDIM batches before the protocol's samples are drawn
    assert drawn[-2:] == [("ddim", 10_000, 50), ("ddpm", 1000, None)]
    assert all(n <= 64 and steps <= 2 for _, n, steps in drawn[:-2])
    assert "fid_ddim50_at_1000" in m


def test_full_protocol_keeps_explicit_counts(tmp_path, capsys):
    run_dir = tiny_run(tmp_path, num_steps=30)
    m = genlab.evaluate(run_dir, device="cpu", full=True, num_samples=150, ddpm_samples=140,
                        ddim_steps=5, feature_steps=20)
    assert m["num_samples_ddim5"] == 150 and m["num_samples_ddpm30"] == 140
    assert m["fid_ddim5"] > 0 and m["fid_ddpm30"] > 0
    err = capsys.readouterr().err
    assert "full protocol: 150 DDIM-5 samples + 140 ancestral T=30 samples" in err


def digit_folder(root: Path, count: int = 150) -> Path:
    """A flat (unlabelled) folder of sklearn digits as PNGs."""
    root.mkdir(parents=True)
    for i, image in enumerate(data.load("digits", "train").images[:count, 0].numpy()):
        Image.fromarray(image).save(root / f"{i:04d}.png")
    return root


def test_an_unlabelled_folder_is_scored_in_label_free_features(tmp_path):
    folder = digit_folder(tmp_path / "flat")
    run_dir = tiny_run(tmp_path, "dcgan", dataset=f"folder:{folder}", width=8)
    m = genlab.evaluate(run_dir, device="cpu", num_samples=150, feature_steps=30)
    assert m["feature_net_task"] == "contrastive" and "without labels" in m["score"]
    assert m["fid"] > 0 and 0 <= m["feature_net_test_accuracy"] <= 1
    scorer = Scorer(f"folder:{folder}", None, False, 30)  # the comparison's, same cached net
    assert scorer.info["path"] == m["feature_net"]
    assert m["feature_net_sha1"] == scorer.info["weights_sha1"]  # the feature space, by hash
    scores = scorer.full(to_float(data.load(f"folder:{folder}", "test").images))
    assert "class_kl" not in scores and "coverage" in scores
    assert abs(scores["fid"]) < 1e-3  # the split against itself
    assert recipes.get("dcgan").evaluate_options().full is False
