"""Stacked MNIST: the dataset (three MNIST digits, one per channel; the digit triple is the mode),
the per-channel mode classifier, and the mode-collapse measures of `genlab compare` (modes
covered, KL(sample modes || uniform)) checked on sample sets of known modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import shared_data
from scipy import stats as sps
from torch import nn

from genlab import comparison, data, featurenet
from genlab.errors import DataError
from genlab.images import to_float
from genlab.metrics import expected_modes_covered, mode_scores
from genlab.models.classifier import ChannelStack
from genlab.recipes.scoring import Scorer


def test_stacking_puts_one_drawn_image_per_channel_and_reads_the_mode_from_their_labels():
    # each source image is filled with its own index, so a stacked channel says which it is
    images = torch.arange(30, dtype=torch.uint8).view(30, 1, 1, 1).expand(30, 1, 4, 4)
    labels = torch.arange(30) % 10
    stacked, modes = data.stack_channels(images, labels, 500, seed=3)
    assert stacked.shape == (500, 3, 4, 4) and modes.shape == (500,)
    source = stacked[:, :, 0, 0].long()                                   # (500, 3) indices
    assert torch.equal(stacked, source[:, :, None, None].expand(-1, -1, 4, 4).to(torch.uint8))
    digits = labels[source]
    assert torch.equal(modes, 100 * digits[:, 0] + 10 * digits[:, 1] + digits[:, 2])
    assert len(set(source.flatten().tolist())) == 30  # every image drawn, at random
    again, _ = data.stack_channels(images, labels, 500, seed=3)
    other, _ = data.stack_channels(images, labels, 500, seed=4)
    assert torch.equal(again, stacked) and not torch.equal(other, stacked)
    with pytest.raises(DataError, match=r"grey \(M, 1, H, W\).*\(30, 3, 4, 4\)"):
        data.stack_channels(images.expand(30, 3, 4, 4), labels, 5, seed=0)


def test_stacked_mnist_is_built_from_the_mnist_files_of_the_same_split(tiny_mnist, one_thread):
    train = data.load("stacked-mnist", "train", tiny_mnist, download=False)
    test = data.load("stacked-mnist", "test", tiny_mnist, download=False)
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.image_shape == (3, 28, 28) and train.images.dtype == torch.uint8
    assert len(train.classes) == 1000 and train.classes[307] == "307"
    digits = {split: data.load("mnist", split, tiny_mnist, download=False)
              for split in ("train", "test")}
    for split, stacked in (("train", train), ("test", test)):
        source = digits[split].images[:, 0].flatten(1)                    # (M, 784)
        for image, mode in zip(stacked.images[:50], stacked.labels[:50]):
            # each channel is one of this split's MNIST images, and the label its digits
            found = [int((source == channel.flatten()).all(1).nonzero()[0])
                     for channel in image]
            d = [int(digits[split].labels[i]) for i in found]
            assert int(mode) == 100 * d[0] + 10 * d[1] + d[2]
    assert torch.equal(data.load("stacked-mnist", "test", tiny_mnist, False).images, test.images)


class BrightnessDigits(nn.Module):
    """A stand-in digit classifier: the digit is the image's mean brightness, 0 (black) to 9
    (white), read into one-hot features."""

    num_features = 10

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))  # a network has parameters (and a device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = ((x.mean((1, 2, 3)) * self.gain + 1) / 2 * 9).round().long()
        return torch.nn.functional.one_hot(level, 10).float()

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return features.argmax(1)


def images_of(modes: torch.Tensor) -> torch.Tensor:
    """(N, 3, 8, 8) images whose channels have the brightness of each mode's three digits."""
    digits = torch.stack([modes // 100, modes // 10 % 10, modes % 10], 1).float()  # (N, 3)
    return (digits / 9 * 2 - 1)[:, :, None, None].expand(-1, -1, 8, 8).contiguous()


def scorer_with(real_modes: torch.Tensor) -> Scorer:
    """A Scorer whose mode classifier is BrightnessDigits per channel, with these real modes."""
    stack = ChannelStack(BrightnessDigits(), 3, 10)
    scorer = Scorer.__new__(Scorer)
    scorer.net = scorer.mode_net = stack
    scorer.num_modes = 1000
    scorer.real_modes = real_modes
    scorer.real_order = torch.arange(len(real_modes))
    return scorer


def test_a_sample_set_on_k_known_modes_covers_k_and_is_log_1000_over_k_from_uniform():
    known = torch.tensor([0, 7, 70, 307, 555, 999, 123, 42, 808, 461, 9, 900])   # k = 12
    fake = images_of(known.repeat(25))                                      # N = 300
    real = torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:300]
    scorer = scorer_with(real)
    stack = scorer.mode_net
    assert torch.equal(stack.classify(stack(fake)), known.repeat(25))     # modes read back
    scores = scorer.modes(fake)
    assert scores["modes_covered"] == 12 and scores["mode_num_samples"] == 300
    assert scores["mode_kl"] == pytest.approx(math.log(1000 / 12), rel=1e-12)
    # the real reference at the same N: 300 distinct modes, log(1000 / 300) from uniform
    assert scores["modes_covered_real"] == 300 and scores["mode_num_real"] == 300
    assert scores["mode_kl_real"] == pytest.approx(math.log(1000 / 300), rel=1e-12)
    assert scores["modes_covered_even"] == pytest.approx(1000 * (1 - 0.999**300))


def test_mode_scores_agree_with_scipy_on_an_uneven_histogram():
    rng = np.random.default_rng(1)
    modes = torch.from_numpy(rng.choice(1000, size=2000, p=rng.dirichlet(np.full(1000, 0.3))))
    counts = np.bincount(modes.numpy(), minlength=1000)
    scores = mode_scores(modes, 1000)
    assert scores["modes_covered"] == int((counts > 0).sum())
    assert scores["mode_kl"] == pytest.approx(sps.entropy(counts, np.ones(1000)), rel=1e-10)
    one = mode_scores(torch.full((50,), 5), 1000)  # total collapse: one mode, log(1000)
    assert one["modes_covered"] == 1 and one["mode_kl"] == pytest.approx(math.log(1000))
    with pytest.raises(ValueError, match=r"0\.\.999, got 0\.\.1000"):
        mode_scores(torch.tensor([0, 1000]), 1000)


def test_expected_modes_covered_by_hand_and_by_simulation():
    assert expected_modes_covered(2, 2) == pytest.approx(1.5)  # {0,0},{1,1}: 1; {0,1},{1,0}: 2
    assert expected_modes_covered(1000, 1) == pytest.approx(1.0)
    gen = torch.Generator().manual_seed(0)
    draws = [len(torch.randint(0, 1000, (1000,), generator=gen).unique()) for _ in range(400)]
    assert np.mean(draws) == pytest.approx(expected_modes_covered(1000, 1000), abs=1.5)
    assert expected_modes_covered(1000, 1000) == pytest.approx(632.3, abs=0.05)


def test_the_mode_measures_join_the_mode_collapse_claim_only_where_recorded(tmp_path):
    from test_compare import state_with

    from genlab import reporting

    def covers(values):
        state = state_with(values, seeds=3)
        claim = next(c for c in comparison.verdicts(state) if c["claim"].startswith("Diffusion "
                                                                                   "models train"))
        return state, claim["parts"][0]

    base = {"ddpm": dict(coverage=(0.9, 0.01), recall=(0.8, 0.01)),
            "dcgan": dict(coverage=(0.4, 0.03), recall=(0.3, 0.03))}
    _, part = covers(base)
    assert [t["measure"] for t in part["tests"]] == ["coverage", "recall"]
    stacked = {"ddpm": {**base["ddpm"], "modes_covered": (600.0, 8.0), "mode_kl": (0.5, 0.02),
                        "modes_covered_real": (630.0, 0.0), "mode_kl_real": (0.47, 0.0),
                        "num_modes": (1000, 0), "mode_num_samples": (1000, 0),
                        "modes_covered_even": (632.3, 0.0)},
               "dcgan": {**base["dcgan"], "modes_covered": (150.0, 30.0),
                         "mode_kl": (2.0, 0.2)}}
    state, part = covers(stacked)
    tests = {t["measure"]: t for t in part["tests"]}
    assert list(tests) == ["coverage", "recall", "modes_covered", "mode_kl"]
    assert tests["modes_covered"]["verdict"] == tests["mode_kl"]["verdict"] == "supported"
    # 600 against 150 modes: a factor 4 on the ratio scale, against the 10% effect
    assert math.exp(tests["modes_covered"]["decision"]["improvement"]) == pytest.approx(4, rel=0.05)
    state.update(verdicts=comparison.verdicts(state), summary=comparison.summary(state),
                 budget=comparison.budget(state), rule=comparison.rule(state))
    state["settings"].update(dataset="stacked-mnist", num_samples=1000)
    assert state["summary"]["mode_reference"]["modes_covered_real"] == 630
    page = reporting.compare_report(state, tmp_path / "report.html").read_text()
    assert "modes covered (of 1,000), N = 1000 a set" in page
    assert "the real test images cover 630 modes" in page and "covers 632 on average" in page


@pytest.mark.slow
def test_the_shipped_mnist_network_reads_the_modes_of_real_stacked_mnist(monkeypatch, one_thread):
    root = shared_data("mnist")
    monkeypatch.setattr(featurenet, "_train", lambda *a, **k: 1 / 0)  # nothing is trained
    net, info = featurenet.feature_network("stacked-mnist", str(root), download=False)
    assert isinstance(net, ChannelStack) and net.num_features == 3 * 128
    assert info["modes"] == 1000 and info["per_channel"] == "mnist"
    assert info["test_accuracy"] == pytest.approx(info["channel_test_accuracy"] ** 3)
    mnist_sha1 = featurenet.feature_network("mnist")[1]["weights_sha1"]
    assert info["weights_sha1"] != mnist_sha1  # another feature space than MNIST's own
    test = data.load("stacked-mnist", "test", str(root), download=False)
    x = to_float(test.images[:1500])
    with torch.no_grad():
        modes = net.classify(net(x))
    accuracy = float((modes == test.labels[:1500]).float().mean())
    # three digits right at once: the per-channel accuracy (0.98) cubed, about 0.94
    assert accuracy == pytest.approx(info["test_accuracy"], abs=0.025)
    scores = mode_scores(test.labels, 1000)  # the real modes: nearly even
    assert scores["modes_covered"] == 1000 and scores["mode_kl"] < 0.1
    # a request for a trained network (another step count) is not the per-channel one
    assert not featurenet._uses_channel_stack("stacked-mnist", 700, 0, 0)
    assert not featurenet._uses_channel_stack("stacked-mnist", 0, 32, 0)
