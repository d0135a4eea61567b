"""The gated PixelCNN: causality read off the gradients (no blind spot, channel order within a
pixel), the exact NLL against a hand computation, the sampler's call count and seed, and the
family end to end: train, sample, evaluate, plot, resume exactly, class conditioning."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import kill_at

from genlab import checkpoint, data, evaluation, figures, recipes
from genlab import training as train_mod
from genlab.errors import ConfigError
from genlab.models.pixelcnn import GatedPixelCNN
from genlab.objectives import pixelcnn_loss, pixelcnn_nll
from genlab.recipes.base import class_labels
from genlab.samplers import pixelcnn_positions, sample_pixelcnn


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread: these tensors are tiny, and the machine's cores are shared."""


TINY = dict(dataset="digits", width=8, layers=2, first_kernel=3, batch_size=16, log_every=1,
            num_threads=1)


def dependence(net: GatedPixelCNN, shape: tuple[int, int, int], c: int, i: int,
               j: int) -> torch.Tensor:
    """|d (sum of the logits of channel c at pixel (i, j)) / d x|, (C, H, W), in float64."""
    x = torch.rand(1, *shape, dtype=torch.float64) * 2 - 1
    x.requires_grad_(True)
    net(x)[0, :, c, i, j].sum().backward()
    return x.grad[0].abs()


@pytest.mark.parametrize("levels", [256, 1])
def test_grey_causality_without_blind_spot(levels):
    """d out(p) / d x(q) is zero for every q >= p in raster order and non-zero for every q < p:
    the left neighbour, the pixel above, the one up-right (the masked PixelCNN's blind spot)."""
    torch.manual_seed(0)
    shape = (1, 5, 5)
    net = GatedPixelCNN(shape, width=8, layers=4, levels=levels).double()
    for i in range(5):
        for j in range(5):
            grad = dependence(net, shape, 0, i, j).flatten()      # raster order
            p = i * 5 + j
            assert torch.all(grad[p:] == 0), (i, j)
            assert torch.all(grad[:p] > 0), (i, j, grad[:p])
    grad = dependence(net, shape, 0, 2, 2)[0]
    assert grad[2, 1] > 0 and grad[1, 2] > 0 and grad[1, 3] > 0 and grad[1, 4] > 0


def test_rgb_channel_order_within_a_pixel():
    """RGB: channel c of pixel p sees every channel of earlier pixels and channels < c of p."""
    torch.manual_seed(0)
    shape = (3, 4, 4)
    net = GatedPixelCNN(shape, width=6, layers=3).double()
    for c in range(3):
        for i, j in ((0, 0), (2, 1), (3, 3)):
            grad = dependence(net, shape, c, i, j)                  # (C, H, W)
            p = i * 4 + j
            flat = grad.permute(1, 2, 0).flatten()                  # pixel-major, then channel
            q = p * 3 + c                                           # this position
            assert torch.all(flat[q:] == 0), (c, i, j)
            assert torch.all(flat[:q] > 0), (c, i, j)
    with pytest.raises(ConfigError, match="multiple of the image's 3 channels"):
        GatedPixelCNN(shape, width=8)


def test_exact_nll_against_a_hand_computation():
    torch.manual_seed(0)
    net = GatedPixelCNN((1, 2, 2), width=4, layers=1, first_kernel=3)
    x = torch.tensor([[[[0, 255], [128, 7]]]], dtype=torch.float32) / 127.5 - 1
    logits = net(x)[0, :, 0].detach()                               # (256, 2, 2)
    hand = 0.0
    for (i, j), level in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [0, 255, 128, 7]):
        z = [float(v) for v in logits[:, i, j]]
        hand += math.log(sum(math.exp(v) for v in z)) - z[level]   # -log softmax
    assert pixelcnn_nll(net, x).item() == pytest.approx(hand, rel=1e-5)
    loss, logs = pixelcnn_loss(net, x)
    assert loss.item() == pytest.approx(hand / 4, rel=1e-5)         # per dimension
    assert logs["bits_per_dim"].item() == pytest.approx(hand / (4 * math.log(2)), rel=1e-5)

    # Bernoulli with a constant logit b: -log p = sum_x -[x log s(b) + (1 - x) log(1 - s(b))]
    bern = GatedPixelCNN((1, 2, 2), width=4, layers=1, levels=1, first_kernel=3)
    with torch.no_grad():
        bern.out2.weight.zero_()
        bern.out2.bias.fill_(0.5)
    x01 = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    s = 1 / (1 + math.exp(-0.5))
    hand = -(3 * math.log(s) + math.log(1 - s))
    assert pixelcnn_nll(bern, x01 * 2 - 1).item() == pytest.approx(hand, rel=1e-6)


class Counting(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x, y=None):
        self.calls += 1
        return self.net(x, y)


@pytest.mark.parametrize("shape,levels", [((1, 4, 5), 256), ((1, 4, 5), 1), ((3, 3, 3), 256)])
def test_sampler_calls_once_per_position_and_is_seeded(shape, levels):
    torch.manual_seed(0)
    net = Counting(GatedPixelCNN(shape, width=6, layers=2, levels=levels, first_kernel=3))
    a = sample_pixelcnn(net, (3, *shape), gen=torch.Generator().manual_seed(1))
    assert net.calls == math.prod(shape) == pixelcnn_positions(shape)   # for all 3 images
    b = sample_pixelcnn(net, (3, *shape), gen=torch.Generator().manual_seed(1))
    c = sample_pixelcnn(net, (3, *shape), gen=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    levels_drawn = (a + 1) * 127.5
    assert torch.allclose(levels_drawn, levels_drawn.round(), atol=1e-4)  # on the 256-level grid
    if levels == 1:
        assert set(a.unique().tolist()) <= {-1.0, 1.0}
    # a completion keeps the given positions and draws the rest
    net.calls = 0
    start = pixelcnn_positions(shape) // 2
    d = sample_pixelcnn(net, a.shape, x=a, start=start, gen=torch.Generator().manual_seed(3))
    assert net.calls == pixelcnn_positions(shape, start)
    order = d.permute(0, 2, 3, 1).flatten(1)
    assert torch.equal(order[:, :start], a.permute(0, 2, 3, 1).flatten(1)[:, :start])


def test_train_sample_evaluate_plot_on_digits(tmp_path):
    cfg = recipes.make_config("pixelcnn", steps=3, checkpoint_every=3,
                              run_dir=str(tmp_path / "run"), **TINY)
    run_dir = train_mod.train(cfg, progress=False)
    log = checkpoint.read_log(run_dir)
    assert [r["step"] for r in log] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in log)
    assert log[0]["bits_per_dim"] == pytest.approx(log[0]["loss"] / math.log(2), rel=1e-4)
    run = recipes.load_run(run_dir)
    recipe = recipes.get("pixelcnn")
    opts = recipes.verb_options("pixelcnn", "sample", {"batch_size": 4})
    images = recipe.sample(run, 5, torch.Generator().manual_seed(0), opts)
    assert images.shape == (5, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    metrics = evaluation.evaluate(run_dir, num_samples=20, nll_images=40)
    assert metrics["nfe"] == 64 and metrics["num_samples"] == 20
    assert metrics["nll_num_images"] == 40 and metrics["pixel_model"] == "categorical-256"
    assert metrics["nll_bits_per_dim"] == pytest.approx(
        metrics["nll_nats"] / (64 * math.log(2)))
    assert 0 < metrics["nll_bits_per_dim"] < 9  # near 8 bits (uniform) after three steps
    assert math.isfinite(metrics["fid"]) and metrics["seconds_per_image"] > 0
    path = figures.plot(run_dir, "completions", quick=True)
    assert path.is_file()
    nll = recipe.likelihood(run, data.load_split(run.config, "test"), 0)
    assert nll["bound"] == "exact" and nll["nll_bits_per_dim"] > 0


def test_resume_matches_uninterrupted(tmp_path, monkeypatch):
    """Train to step 2 (killed at 3), resume to 4: the same weights as 4 steps straight, with
    dynamic binarisation drawing from the run's generator."""
    values = dict(TINY, steps=4, checkpoint_every=2, pixel_model="bernoulli", binarize=True)
    straight = train_mod.train(recipes.make_config("pixelcnn", "reference",
                                                   run_dir=str(tmp_path / "a"), **values),
                               progress=False)
    with monkeypatch.context() as m:
        kill_at(m, "pixelcnn", 2)
        with pytest.raises(KeyboardInterrupt):
            train_mod.train(recipes.make_config("pixelcnn", "reference",
                                                run_dir=str(tmp_path / "b"), **values),
                            progress=False)
    assert checkpoint.latest_checkpoint(tmp_path / "b")["step"] == 2
    train_mod.train(resume=tmp_path / "b", progress=False)
    w1, _ = checkpoint.load_weights(straight)
    w2, _ = checkpoint.load_weights(tmp_path / "b")
    assert all(torch.equal(w1["model"][k], w2["model"][k]) for k in w1["model"])
    losses = [[r["loss"] for r in checkpoint.read_log(d)] for d in (straight, tmp_path / "b")]
    assert losses[0] == losses[1]
    # a Bernoulli run's NLL is kept out of the recipe's declared 256-level column
    run = recipes.load_run(straight)
    nll = recipes.get("pixelcnn").likelihood(run, data.load_split(run.config, "test"), 0)
    assert nll["nll_bits_per_dim"] is None and nll["nll_bits_per_dim_bernoulli"] > 0
    assert nll["pixel_model"] == "bernoulli" and nll["nll_nats"] > 0


def test_class_conditional_build_and_sample():
    cfg = recipes.make_config("pixelcnn", class_conditional=True, width=8, layers=2,
                              first_kernel=3)
    net = recipes.build_modules(cfg, (1, 6, 6), 10)["model"]
    assert net.num_classes == 10
    y = class_labels(net, 4, label=3)
    assert y.tolist() == [3, 3, 3, 3]
    x = torch.zeros(2, 1, 6, 6)
    assert not torch.equal(net(x, torch.tensor([0, 0])), net(x, torch.tensor([1, 1])))
    images = sample_pixelcnn(net, (4, 1, 6, 6), y, torch.Generator().manual_seed(0))
    assert images.shape == (4, 1, 6, 6)
    plain = recipes.build_modules(recipes.make_config("pixelcnn", width=8, layers=2), (1, 6, 6),
                                  10)["model"]
    with pytest.raises(ConfigError, match="this run is unconditional"):
        class_labels(plain, 2, label=1)
    with pytest.raises(ConfigError, match="class_conditional needs a labelled dataset"):
        recipes.build_modules(cfg, (1, 6, 6), 1)


def test_config_refuses_binarize_without_bernoulli():
    with pytest.raises(ConfigError, match="binarize needs pixel_model 'bernoulli'"):
        recipes.make_config("pixelcnn", binarize=True)
    assert recipes.make_config("pixelcnn", "reference").pixel_model == "bernoulli"
