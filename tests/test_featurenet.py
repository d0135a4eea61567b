"""The feature networks of the offline FID/KID: the shipped ones load without training and keep
their recorded accuracy on the real test splits; other datasets train and cache once; a
dataset without labels gets a rotation network whose FID still orders corrupted images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_data, write_idx
from PIL import Image

from genlab import data, featurenet
from genlab.errors import ConfigError
from genlab.featurenet import (
    SHIPPED_DIR,
    feature_network,
    held_out_accuracy,
    rotate,
    shipped_info,
)
from genlab.images import to_float
from genlab.metrics import fid_kid
from genlab.models.classifier import Features

pytestmark = pytest.mark.usefixtures("one_thread")
SHIPPED = ("digits", "mnist", "cifar10", "fer2013")
REAL_DATA = {"mnist": "mnist", "cifar10": "cifar10", "fer2013": "fer2013"}
# the MNIST network the long comparison benchmark scores with (1500 fp32 steps, 0.9804)
MNIST_SHA256 = "c149dcf28efdc51e50e4df3035b91d4e9060c893fa39856fd997bef029c45ba1"


@pytest.fixture
def no_training(monkeypatch):
    """Any feature-network training fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a feature network was trained")
    monkeypatch.setattr(featurenet, "_train", refuse)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_named_dataset_but_fashion_mnist_ships_a_small_fp32_network():
    for name in SHIPPED:
        info = shipped_info(name)
        assert info is not None, name
        assert info["precision"] == "fp32" and info["dataset"] == name
        assert {"steps", "test_accuracy", "num_train", "num_test", "source", "train_seconds",
                "cpu", "image_shape", "classes"} <= set(info)
        assert (SHIPPED_DIR / f"{name}.safetensors").stat().st_size < 500_000
    assert shipped_info("fashion-mnist") is None  # no data here to train one: trained on use
    weights = (SHIPPED_DIR / "mnist.safetensors").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == MNIST_SHA256
    assert shipped_info("mnist")["steps"] == 1500


def test_a_shipped_network_loads_without_training(no_training, cache):
    for name in SHIPPED:
        net, info = feature_network(name, data_dir="/nowhere", download=False)
        c, h, w = info["image_shape"]
        assert net(torch.zeros(2, c, h, w)).shape == (2, 128)
        assert info["task"] == "classes" and info["path"].endswith(f"{name}.safetensors")
        # the native size, and the shipped step count, are the same network
        again, _ = feature_network(name, steps=info["steps"], resolution=h, channels=c)
        assert torch.equal(again.classifier.head.weight, net.classifier.head.weight)
    assert not cache.exists()


def test_shipped_digits_accuracy_is_reproduced():
    net, info = feature_network("digits")
    accuracy = held_out_accuracy(net.classifier, data.load("digits", "test"))
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-6)


@pytest.mark.parametrize("name", sorted(REAL_DATA))
def test_shipped_accuracy_is_reproduced_on_the_real_test_split(name):
    root = shared_data(REAL_DATA[name])
    net, info = feature_network(name, data_dir=str(root), download=False)
    test = data.load(name, "test", root, download=False)
    assert len(test) == info["num_test"]
    assert held_out_accuracy(net.classifier, test) == pytest.approx(info["test_accuracy"],
                                                                     abs=1e-6)


def test_an_override_or_another_step_count_trains_once_and_caches(cache, monkeypatch):
    calls = []
    train = featurenet._train
    monkeypatch.setattr(featurenet, "_train", lambda *a, **k: calls.append(1) or train(*a, **k))
    net, info = feature_network("digits", steps=5, resolution=12)
    assert calls == [1] and info["steps"] == 5 and info["image_shape"] == [1, 12, 12]
    assert Path(info["path"]).parent == cache / "feature-nets"
    _, again = feature_network("digits", steps=5, resolution=12)
    assert calls == [1] and again["path"] == info["path"]
    assert info["path"] != feature_network("digits")[1]["path"]


def test_fashion_mnist_trains_on_first_use(cache, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    raw = tmp_path / "FashionMNIST" / "raw"
    for prefix, n in (("train", 20), ("t10k", 10)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    seen = {}

    def record(train_data, test_data, recipe, *args, **kwargs):
        seen.update(recipe)
        raise RuntimeError("stop here")
    monkeypatch.setattr(featurenet, "_train", record)
    with pytest.raises(RuntimeError, match="stop here"):
        feature_network("fashion-mnist", data_dir=str(tmp_path), download=False)
    assert seen["steps"] == featurenet.DEFAULT_STEPS and seen["dataset"] == "fashion-mnist"


def test_rotate_turns_each_image_by_its_own_quarter_turns():
    x = torch.arange(2 * 4 * 16, dtype=torch.float32).reshape(4, 2, 4, 4)
    k = torch.tensor([0, 1, 2, 3])
    out = rotate(x, k)
    for i in range(4):
        assert torch.equal(out[i], torch.rot90(x[i], i, dims=(1, 2)))
    assert torch.equal(out[1][0, 0], x[1][0, :, -1])  # 90 degrees counter-clockwise


def _digit_folder(root: Path, count: int = 120, size: tuple[int, int] = (8, 8)) -> Path:
    """A flat (unlabelled) folder of sklearn digits as PNGs."""
    images = data.load("digits", "train").images[:count, 0].numpy()
    root.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).resize(size[::-1]).save(root / f"{i:04d}.png")
    return root


def test_an_unlabelled_folder_gets_a_cached_contrastive_network(cache, tmp_path, monkeypatch):
    folder = _digit_folder(tmp_path / "flat")
    net, info = feature_network(f"folder:{folder}", steps=40)
    assert info["task"] == "contrastive"
    assert info["classes"] == [f"z{i}" for i in range(featurenet.CONTRASTIVE_DIM)]
    assert info["num_test"] == 12 and 0.0 <= info["test_accuracy"] <= 1.0
    recorded = json.loads((Path(info["path"]) / "info.json").read_text())
    assert recorded["task"] == "contrastive" and recorded["steps"] == 40
    monkeypatch.setattr(featurenet, "_train", lambda *a, **k: 1 / 0)
    again, info2 = feature_network(f"folder:{folder}", steps=40)  # cached: nothing trains
    assert info2["path"] == info["path"]
    assert torch.equal(again.classifier.head.weight, net.classifier.head.weight)


def test_label_free_features_take_images_that_are_not_square(cache, tmp_path):
    folder = _digit_folder(tmp_path / "wide", count=20, size=(8, 12))
    net, info = feature_network(f"folder:{folder}", steps=5)
    assert info["task"] == "contrastive" and info["image_shape"] == [1, 8, 12]
    assert net(torch.zeros(3, 1, 8, 12)).shape == (3, 128)


def test_rotation_features_need_square_images(tmp_path):
    folder = _digit_folder(tmp_path / "wide", count=20, size=(8, 12))
    split = data.load(f"folder:{folder}", "train")
    with pytest.raises(ConfigError, match="rotation features need square images.*--resolution"):
        featurenet.train_rotation_net(split, split, {**featurenet.FEATURE_NET, "steps": 1,
                                                     "precision": "fp32"})


def linear_probe(net: Features, train: data.ImageData, test: data.ImageData) -> float:
    """Test accuracy of a logistic regression on the standardised features of the train split."""
    from sklearn.linear_model import LogisticRegression

    with torch.no_grad():
        f_train, f_test = net(to_float(train.images)), net(to_float(test.images))
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    fit = LogisticRegression(max_iter=1000).fit(((f_train - mean) / std).numpy(),
                                                train.labels.numpy())
    return fit.score(((f_test - mean) / std).numpy(), test.labels.numpy())


def test_rotation_features_carry_classes_and_order_corruptions(one_thread):
    """A quick version of benchmarks/rotation_features.py: 150 steps on digits, labels hidden."""
    train, test = data.load("digits", "train"), data.load("digits", "test")
    recipe = {**featurenet.FEATURE_NET, "precision": "fp32", "steps": 150, "task": "rotation"}
    info = featurenet.train_rotation_net(train, test, recipe)
    assert info["test_accuracy"] > 0.4  # chance is 0.25; 0.50 measured at 150 steps
    rotation = Features(info["net"]).eval()

    assert linear_probe(rotation, train, test) > 0.5  # 10 classes: chance is 0.1
    reference, real = to_float(train.images), to_float(test.images)
    gen = torch.Generator().manual_seed(0)
    eps = torch.randn(real.shape, generator=gen)
    fids = [fid_kid(rotation, reference, (real + s * eps).clamp(-1, 1), kid_subsets=2)["fid"]
            for s in (0.0, 0.1, 0.3, 0.8)]
    assert fids == sorted(fids) and fids[-1] > 3 * fids[0], fids


def test_flips_and_cosine_decay_are_applied_when_the_recipe_asks(monkeypatch):
    """Optional recipe keys (the shipped CIFAR-10 and FER2013 networks use both): flips change
    what the network sees, and the cosine schedule ends the learning rate at 0."""
    train, test = data.load("digits", "train"), data.load("digits", "test")
    recipe = {**featurenet.FEATURE_NET, "precision": "fp32", "steps": 6, "batch_size": 32,
              "dataset": "digits"}
    rates: list[float] = []
    step = torch.optim.Adam.step

    def record(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    plain = featurenet.train_classifier(train, test, recipe)
    assert rates == [recipe["lr"]] * 6
    rates.clear()
    both = featurenet.train_classifier(train, test, {**recipe, "flip": True, "cosine": True})
    assert rates[0] == recipe["lr"] and rates[-1] < rates[0] * 0.1
    assert rates == sorted(rates, reverse=True)
    assert both["flip"] and both["cosine"]  # recorded with the network
    flipped = featurenet.train_classifier(train, test, {**recipe, "flip": True})
    a, b = plain["net"].state_dict(), flipped["net"].state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_nt_xent_matches_a_hand_computation():
    # two images, two views each: rows 0, 1 are the first views and rows 2, 3 their twins
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 2.0]])
    unit = z / z.norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    t = 0.5
    expected = 0.0
    for i, twin in enumerate([2, 3, 0, 1]):
        others = [j for j in range(4) if j != i]
        expected += -(cos[i, twin] / t - torch.logsumexp(cos[i, others] / t, 0))
    assert featurenet.nt_xent(z, temperature=t).item() == pytest.approx(expected.item() / 4,
                                                                        rel=1e-6)


def test_random_views_stay_in_range_differ_and_are_seeded():
    x = to_float(data.load("digits", "test").images[:16])
    a = featurenet.random_view(x, torch.Generator().manual_seed(3))
    b = featurenet.random_view(x, torch.Generator().manual_seed(3))
    c = featurenet.random_view(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a - x).abs().mean() > 0.05  # a view is not the image


def test_contrastive_features_match_views_and_carry_classes(one_thread):
    """A quick version of the contrastive part of benchmarks/rotation_features.py: 150 steps on
    the digits without their labels."""
    train, test = data.load("digits", "train"), data.load("digits", "test")
    recipe = {**featurenet.FEATURE_NET, "precision": "fp32", "steps": 150, "task": "contrastive"}
    info = featurenet.train_contrastive_net(train, test, recipe)
    assert info["test_accuracy"] > 0.15  # chance: 1 in 511; 0.25 measured at 150 steps
    assert info["classes"] == [f"z{i}" for i in range(featurenet.CONTRASTIVE_DIM)]
    assert linear_probe(Features(info["net"]).eval(), train, test) > 0.8
