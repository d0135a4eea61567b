"""Gradient accumulation (--grad-accum K): batch_size stays the images per optimizer step, and
each step sums the gradients of K micro-batches of batch_size / K images."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from accelerate import Accelerator
from conftest import kill_at, run_cli
from torch import nn

from genlab import checkpoint, recipes
from genlab import training as train_mod
from genlab.errors import ConfigError
from genlab.recipes.base import TrainState


def tiny_vae(tmp_path, name, **kw):
    values = dict(dataset="digits", steps=3, batch_size=32, log_every=1, checkpoint_every=10,
                  hidden=(16,), latent_dim=2, run_dir=str(tmp_path / name), seed=3, device="cpu",
                  precision="fp32")
    values.update(kw)
    return recipes.make_config("vae", "reference", **values)


def weights(run_dir, module="model"):
    return checkpoint.load_weights(run_dir)[0][module]


def test_grad_accum_field_is_checked():
    with pytest.raises(ConfigError, match="grad_accum must be >= 1, got 0"):
        recipes.make_config("vae", grad_accum=0)
    with pytest.raises(ConfigError, match="batch_size 30 does not divide into grad_accum 4"):
        recipes.make_config("vae", batch_size=30, grad_accum=4)
    assert recipes.make_config("ddpm", batch_size=32, grad_accum=4).grad_accum == 4


def linear_state(cfg) -> tuple[TrainState, nn.Linear]:
    torch.manual_seed(0)
    net = nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    state = TrainState(cfg, Accelerator(cpu=True), {"model": net}, {"model": opt},
                       torch.Generator(), {})
    return state, net


def mse_step(s, x, y, step):
    loss = (s.modules["model"](x).squeeze(1) - y).pow(2).mean()
    return {"loss": loss.detach(), **s.update("model", loss, step)}


def test_micro_batches_give_the_gradient_of_the_batch_mean_even_for_a_short_batch(monkeypatch):
    """A short last batch of 7 images at batch_size 8, K = 2: micro-batches of 4 and 3,
    weighted 4/7 and 3/7, give exactly the SGD step of the whole batch's mean loss."""
    recipe = dataclasses.replace(recipes.get("vae"), step=mse_step)
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(1))
    y = torch.randn(7, generator=torch.Generator().manual_seed(2))
    whole, net1 = linear_state(recipes.make_config("vae", batch_size=8))
    logs1 = train_mod.accumulated_step(recipe, whole, x, y, 0)
    split, net2 = linear_state(recipes.make_config("vae", batch_size=8, grad_accum=2))
    seen = []
    real_update = TrainState.update

    def spy(self, name, loss, step, what="loss"):
        seen.append((self.micro, self.micro_batches, round(self.micro_weight, 6)))
        return real_update(self, name, loss, step, what)

    monkeypatch.setattr(TrainState, "update", spy)
    logs2 = train_mod.accumulated_step(recipe, split, x, y, 0)
    monkeypatch.setattr(TrainState, "update", real_update)
    assert seen == [(0, 2, round(4 / 7, 6)), (1, 2, round(3 / 7, 6))]
    assert split.micro_batches == 1 and split.micro == 0  # reset for the next update
    assert float(logs2["loss"]) == pytest.approx(float(logs1["loss"]), rel=1e-6)
    for p1, p2 in zip(net1.parameters(), net2.parameters()):
        torch.testing.assert_close(p2, p1, rtol=0, atol=1e-7)
    # not the step of the first micro-batch alone: the second one counts
    only_first, net3 = linear_state(recipes.make_config("vae", batch_size=8))
    train_mod.accumulated_step(recipe, only_first, x[:4], y[:4], 0)
    assert (net3.weight - net1.weight).abs().max() > 1e-3


def test_vae_with_two_micro_batches_takes_the_steps_of_the_whole_batch(tmp_path):
    """fp32, no batch norm: K = 2 ends three Adam steps where K = 1 does. The micro-batches draw
    the reparameterisation noise from the same generator, and with 16 latents per micro-batch
    (torch's CPU normal sampler works in blocks of 16) they draw the very same numbers."""
    one = train_mod.train(tiny_vae(tmp_path, "k1"), progress=False)
    two = train_mod.train(tiny_vae(tmp_path, "k2", grad_accum=2), progress=False)
    w1, w2 = weights(one), weights(two)
    moved = max((w1[k] - weights_at_init(tmp_path)[k]).abs().max().item() for k in w1)
    assert moved > 1e-3  # the steps changed the weights, by far more than the tolerance
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=1e-6)
    log1, log2 = checkpoint.read_log(one), checkpoint.read_log(two)
    assert [r["step"] for r in log2] == [1, 2, 3]
    assert [r["loss"] for r in log2] == pytest.approx([r["loss"] for r in log1], rel=1e-5)
    state = checkpoint.load_state(two)
    assert int(state["optimizers"]["model"]["state"][0]["step"]) == 3  # one Adam step per update


def weights_at_init(tmp_path):
    """The VAE's weights before any step (the same seed builds the same network)."""
    cfg = tiny_vae(tmp_path, "unused")
    torch.manual_seed(cfg.seed)
    return recipes.build_modules(cfg, (1, 8, 8), 10)["model"].state_dict()


def test_dcgan_trains_with_two_micro_batches(tmp_path):
    run = tmp_path / "dcgan"
    code, _, err = run_cli("train", "dcgan", "--dataset", "digits", "--steps", "3",
                           "--batch-size", "16", "--grad-accum", "2", "--width", "8",
                           "--latent-dim", "8", "--device", "cpu", "--log-every", "1",
                           "--run-dir", str(run))
    assert code == 0, err
    log = checkpoint.read_log(run)
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 for r in log)
    assert all(r["images_per_s"] > 0 for r in log)
    state = checkpoint.load_state(run)
    for name in ("model", "disc"):  # three steps of each optimizer, not six
        assert int(state["optimizers"][name]["state"][0]["step"]) == 3
    cfg = recipes.make_config("dcgan", width=8, latent_dim=8, seed=0)
    torch.manual_seed(0)
    init = recipes.build_modules(cfg, (1, 8, 8), 10)
    for name in ("model", "disc"):
        trained = weights(run, name)
        assert any(not torch.equal(trained[k], v) for k, v in init[name].state_dict().items()
                   if v.is_floating_point())


def test_resume_with_grad_accum_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    kw = dict(steps=16, checkpoint_every=5, grad_accum=2, batch_size=16, hflip=True)
    straight = train_mod.train(tiny_vae(tmp_path, "straight", **kw), progress=False)
    with monkeypatch.context() as m:
        kill_at(m, "vae", 12)
        with pytest.raises(KeyboardInterrupt):
            train_mod.train(tiny_vae(tmp_path, "killed", **kw), progress=False)
    killed = tmp_path / "killed"
    assert checkpoint.latest_checkpoint(killed)["step"] == 10
    train_mod.train(resume=killed, progress=False)
    assert ([(r["step"], r["loss"]) for r in checkpoint.read_log(killed)]
            == [(r["step"], r["loss"]) for r in checkpoint.read_log(straight)])
    w1, w2 = weights(straight), weights(killed)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
