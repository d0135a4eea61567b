"""Budget-true schedules: the learning rate and the EMA as functions of the run's progress (its
steps or its time budget), checked against hand-computed values, EDM2's published numbers and
a direct weighted average; and, in the loop, that a time budget is spent whole, decays to zero,
and that a resumed run takes up the training seconds it had."""

from __future__ import annotations

import json
import math

import pytest
import torch

from genlab import checkpoint, recipes, schedules
from genlab.errors import ConfigError
from genlab.training import train


def test_progress_is_the_bound_nearer_its_end():
    assert schedules.progress(50, 200, 0.0, 0.0) == 0.25
    assert schedules.progress(0, None, 30.0, 120.0) == 0.25
    # steps and minutes: whichever the run reaches first ends it, so it sets the schedule
    assert schedules.progress(50, 200, 90.0, 120.0) == 0.75
    assert schedules.progress(150, 200, 30.0, 120.0) == 0.75
    assert schedules.progress(10, None, 500.0, 120.0) == 1.0
    with pytest.raises(ValueError):
        schedules.progress(1, None, 1.0, 0.0)


@pytest.mark.parametrize("schedule, fraction, expected", [
    ("constant", 0.0, 1.0), ("constant", 0.9, 1.0),
    ("linear", 0.0, 1.0), ("linear", 0.25, 0.75), ("linear", 1.0, 0.0),
    ("cosine", 0.0, 1.0), ("cosine", 0.5, 0.5), ("cosine", 1.0, 0.0),
    ("cosine", 0.25, (1 + math.cos(math.pi / 4)) / 2),
])
def test_lr_factor_without_warmup(schedule, fraction, expected):
    assert schedules.lr_factor(schedule, fraction) == pytest.approx(expected, abs=1e-12)


def test_warmup_as_a_share_of_the_run_then_decay_over_the_rest():
    f = lambda fraction: schedules.lr_factor("linear", fraction, warmup_fraction=0.2)  # noqa
    assert f(0.0) == 0.01  # the first step is not wasted at rate 0
    assert f(0.1) == pytest.approx(0.5)
    assert f(0.2) == pytest.approx(1.0)
    assert f(0.6) == pytest.approx(0.5)  # halfway through the 0.8 that follow the warm-up
    assert f(1.0) == pytest.approx(0.0)


def test_warmup_in_steps_keeps_genlabs_earlier_cosine():
    """A run bounded by steps with a warm-up in steps decays over the steps after the warm-up,
    as genlab <= 0.3 did (old runs resume on the same rates)."""
    total, warmup = 1000, 100
    for step in (0, 50, 99, 100, 400, 999):
        old = ((step + 1) / warmup if step < warmup else
               0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup)))))
        new = schedules.lr_factor("cosine", step / total, 0.0, step, warmup, total)
        assert new == pytest.approx(old, abs=1e-12)


def test_power_ema_matches_edm2():
    """EDM2 (Karras et al. 2024, sec. 3.1): sigma_rel 0.05 and 0.10 are gamma 16.97 and 6.94."""
    assert schedules.power_ema_gamma(0.05) == pytest.approx(16.97, abs=0.01)
    assert schedules.power_ema_gamma(0.10) == pytest.approx(6.94, abs=0.01)
    for gamma in (0.5, 3.0, 40.0):
        assert schedules.power_ema_gamma(schedules.power_ema_sigma(gamma)) == pytest.approx(gamma)
    with pytest.raises(ValueError):
        schedules.power_ema_gamma(0.3)


@pytest.mark.parametrize("steps", [50, 2000])
def test_power_ema_is_the_power_weighted_average(steps):
    """Run the recursion ema <- b_t ema + (1 - b_t) x_t with b_t = (1 - 1/t)^(gamma+1) over a
    rising sequence and compare with the direct average sum t^gamma x_t / sum t^gamma (EDM2's
    profile): the EMA of a short run and of a long one weigh the same share of their run, here
    the last ~10% (a plain mean would be 0.5, the power average is near (g+1)/(g+2) = 0.89)."""
    gamma = schedules.power_ema_gamma(0.1)
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    x = t / steps
    ema = 0.0
    for step in range(steps):
        b = schedules.ema_decay(step, sigma_rel=0.1)
        ema = b * ema + (1 - b) * float(x[step])
    direct = float((t ** gamma * x).sum() / (t ** gamma).sum())
    assert ema == pytest.approx(direct, abs=0.002)
    assert ema == pytest.approx((gamma + 1) / (gamma + 2), abs=0.01)


def test_fixed_ema_ramps_in():
    assert schedules.ema_decay(0, decay=0.999) == pytest.approx(0.1)
    assert schedules.ema_decay(10**6, decay=0.999) == 0.999


def test_config_refuses_two_emas_or_two_warmups_and_unbounded_runs():
    with pytest.raises(ConfigError, match="pick one EMA"):
        recipes.make_config("flow", ema_decay=0.999, ema_sigma_rel=0.05)
    with pytest.raises(ConfigError, match="pick one warm-up"):
        recipes.make_config("flow", warmup_steps=10, warmup_fraction=0.1)
    with pytest.raises(ConfigError, match="nothing bounds the run"):
        recipes.make_config("vae", epochs=0)
    # a flag of one kind replaces the preset's other kind (the flow default: power EMA, fraction)
    cfg = recipes.make_config("flow", warmup_steps=10, ema_decay=0.99)
    assert (cfg.warmup_steps, cfg.warmup_fraction, cfg.ema_decay, cfg.ema_sigma_rel) == (
        10, 0.0, 0.99, 0.0)
    cfg = recipes.make_config("dcgan", ema_sigma_rel=0.05)  # its preset keeps a fixed decay
    assert (cfg.ema_decay, cfg.ema_sigma_rel) == (0.0, 0.05)


def test_a_budget_alone_replaces_the_presets_epochs():
    cfg = recipes.make_config("vae", max_minutes=10)
    assert (cfg.epochs, cfg.steps, cfg.max_minutes) == (0, 0, 10)
    kept = recipes.make_config("vae", max_minutes=10, epochs=3)
    assert (kept.epochs, kept.max_minutes) == (3, 10)


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_a_time_budget_is_spent_whole_and_decays_to_zero(tmp_path):
    """A VAE given 1.5 s and no epochs trains until the time is spent (its preset's 20 epochs
    of the 8x8 digits would take a fraction of it) and ends near rate zero."""
    cfg = recipes.make_config("vae", "reference", dataset="digits", hidden=(16,),
                              max_minutes=0.025, lr_schedule="linear", log_every=1,
                              num_threads=1, run_dir=str(tmp_path / "run"))
    train(cfg, progress=False)
    log = _log(tmp_path / "run")
    assert log[-1]["train_seconds"] >= 1.5
    assert log[-1]["lr"] < 0.1 * cfg.lr
    lrs = [r["lr"] for r in log]
    assert lrs == sorted(lrs, reverse=True)  # no warm-up: the linear decay only falls


def test_resume_takes_up_the_saved_seconds(tmp_path, monkeypatch):
    """A run stopped by a signal saves its training seconds with its state; the resumed run
    continues the clock (its time budget and its schedule) from there, not from zero."""
    run = tmp_path / "run"
    cfg = recipes.make_config("vae", "reference", dataset="digits", hidden=(16,),
                              max_minutes=0.05, lr_schedule="linear", warmup_fraction=0.3,
                              log_every=1, num_threads=1, run_dir=str(run))
    monkeypatch.setenv("GENLAB_TEST_SIGNAL_AT", "0:10")
    with pytest.raises(Exception, match="preempted"):
        train(cfg, progress=False)
    monkeypatch.delenv("GENLAB_TEST_SIGNAL_AT")
    ckpt = checkpoint.load_checkpoint(run, state=True)
    saved = float(ckpt.state["train_seconds"])
    assert ckpt.step == 11 and 0 < saved < 3.0
    train(resume=run, progress=False)
    log = _log(run)
    after = [r for r in log if r["step"] > 11]
    assert after[0]["train_seconds"] > saved
    assert log[-1]["train_seconds"] >= 3.0  # the budget is counted over both parts
    # the first resumed step's rate follows the restored progress, not a fresh warm-up
    expected = cfg.lr * schedules.lr_factor("linear", saved / 3.0, 0.3)
    assert after[0]["lr"] == pytest.approx(expected, rel=1e-9)
