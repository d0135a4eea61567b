"""NoiseSchedule against hand-computed numbers and against the Gaussian algebra derived anew."""

import math

import pytest
import torch

from genlab.diffusion import NoiseSchedule, make_betas
from genlab.recipes import make_config


def test_linear_schedule_hand_values() -> None:
    s = NoiseSchedule("linear", 3)
    # betas 1e-4, (1e-4 + 0.02) / 2, 0.02; alpha_bar the running product of 1 - beta
    assert s.betas.tolist() == pytest.approx([1e-4, 0.01005, 0.02], rel=1e-6)
    assert s.alphas.tolist() == pytest.approx([0.9999, 0.98995, 0.98], rel=1e-6)
    assert s.alpha_bar.tolist() == pytest.approx([0.9999, 0.989851005, 0.9700539849], rel=1e-6)
    assert s.alpha_bar_prev.tolist() == pytest.approx([1.0, 0.9999, 0.989851005], rel=1e-6)
    assert s.sqrt_one_minus_alpha_bar[2].item() == pytest.approx(math.sqrt(1 - 0.9700539849),
                                                                  rel=1e-5)
    assert s.snr[2].item() == pytest.approx(0.9700539849 / (1 - 0.9700539849), rel=1e-4)


def test_linear_scaled_multiplies_endpoints_by_1000_over_t() -> None:
    betas = make_betas("linear-scaled", 100)
    assert betas[0].item() == pytest.approx(1e-3)
    assert betas[-1].item() == pytest.approx(0.2)
    assert betas[1].item() == pytest.approx(1e-3 + (0.2 - 1e-3) / 99)
    assert torch.equal(make_betas("linear-scaled", 1000), make_betas("linear", 1000))


def test_cosine_schedule_matches_formula() -> None:
    T, s = 4, 0.008

    def f(t: float) -> float:
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    sched = NoiseSchedule("cosine", T)
    expected = [f(t + 1) / f(0) for t in range(T - 1)]
    assert sched.alpha_bar[:-1].tolist() == pytest.approx(expected, rel=1e-5)
    # f(T) = 0 would make beta_T = 1; the schedule clips it to 0.999
    assert sched.betas[-1].item() == pytest.approx(0.999)
    assert sched.betas[0].item() == pytest.approx(1 - f(1) / f(0), rel=1e-5)


def test_default_preset_destroys_the_signal_and_reference_does_not() -> None:
    default = make_config("ddpm", "default")
    sched = NoiseSchedule(default.schedule, default.num_steps)
    assert sched.alpha_bar[-1].item() < 1e-3
    # The notebook's T = 300 with raw linear betas: alpha_bar_T = prod(1 - beta) ~ 0.048
    reference = make_config("ddpm", "reference")
    ref = NoiseSchedule(reference.schedule, reference.num_steps)
    expected = math.prod(1 - (1e-4 + i * (0.02 - 1e-4) / 299) for i in range(300))
    assert ref.alpha_bar[-1].item() == pytest.approx(expected, rel=1e-4)
    assert 0.04 < expected < 0.06
    for name, steps in [("linear-scaled", 300), ("linear-scaled", 1000), ("cosine", 300)]:
        assert NoiseSchedule(name, steps).alpha_bar[-1].item() < 1e-3, name


def test_snr_decreases() -> None:
    for name in ["linear", "linear-scaled", "cosine"]:
        snr = NoiseSchedule(name, 50).snr
        assert (snr[1:] < snr[:-1]).all(), name


def test_bad_schedules() -> None:
    with pytest.raises(ValueError, match="unknown noise schedule 'quadratic'"):
        NoiseSchedule("quadratic", 10)
    with pytest.raises(ValueError, match="needs T > 20"):
        NoiseSchedule("linear-scaled", 20)
    assert NoiseSchedule("linear-scaled", 21).betas.max().item() < 1


def test_q_sample_moments() -> None:
    s = NoiseSchedule("linear-scaled", 50)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1, 2, 2), 0.5)
    t = 7
    x_t = s.q_sample(x0, torch.full((20000,), t), torch.randn(x0.shape, generator=gen))
    ab = s.alpha_bar[t].item()
    assert x_t.mean().item() == pytest.approx(math.sqrt(ab) * 0.5, abs=0.01)
    assert x_t.std().item() == pytest.approx(math.sqrt(1 - ab), rel=0.01)


def test_q_sample_per_image_timesteps_and_predict_x0_inverts_it() -> None:
    s = NoiseSchedule("cosine", 10)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand((3, 2, 4, 4), generator=gen) * 2 - 1
    eps = torch.randn(x0.shape, generator=gen)
    t = torch.tensor([0, 4, 9])
    x_t = s.q_sample(x0, t, eps)
    for i, ti in enumerate(t.tolist()):
        ab = s.alpha_bar[ti].item()
        assert torch.allclose(x_t[i], math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * eps[i], atol=1e-6)
    assert torch.allclose(s.predict_x0(x_t, t, eps), x0, atol=1e-4)


def test_posterior_matches_bayes_rule() -> None:
    """q(x_{t-1} | x_t, x_0) by multiplying q(x_t | x_{t-1}) and q(x_{t-1} | x_0) directly."""
    s = NoiseSchedule("linear-scaled", 40)
    x0, x_t = torch.tensor([[[[0.3]]]]), torch.tensor([[[[-0.8]]]])
    for t in [1, 5, 39]:
        beta, alpha = s.betas[t].item(), s.alphas[t].item()
        ab_prev = s.alpha_bar[t - 1].item()
        precision = 1 / (1 - ab_prev) + alpha / beta
        var = 1 / precision
        mean = var * (math.sqrt(ab_prev) * 0.3 / (1 - ab_prev) + math.sqrt(alpha) * -0.8 / beta)
        assert s.posterior_variance[t].item() == pytest.approx(var, rel=1e-5)
        assert s.posterior_mean_x0(x_t, t, x0).item() == pytest.approx(mean, rel=1e-5)
    # at t = 0 the posterior is x_0 itself
    assert s.posterior_variance[0].item() == 0.0
    assert s.posterior_coef_x0[0].item() == pytest.approx(1.0)
    assert s.posterior_coef_xt[0].item() == pytest.approx(0.0, abs=1e-7)
    assert torch.allclose(s.sigma("beta") ** 2, s.betas)
    with pytest.raises(ValueError, match="reverse variance"):
        s.sigma("learned")


def test_posterior_mean_from_eps_equals_mean_from_x0() -> None:
    s = NoiseSchedule("cosine", 30)
    gen = torch.Generator().manual_seed(2)
    x_t = torch.randn((4, 1, 3, 3), generator=gen)
    eps = torch.randn((4, 1, 3, 3), generator=gen)
    t = torch.tensor([1, 10, 20, 29])
    via_x0 = s.posterior_mean_x0(x_t, t, s.predict_x0(x_t, t, eps))
    assert torch.allclose(s.posterior_mean(x_t, t, eps), via_x0, atol=1e-4)
    # the reference notebook's parenthesis: the whole mean divided by sqrt(1 - alpha_bar)
    i = 1
    beta, alpha, ab = s.betas[10].item(), s.alphas[10].item(), s.alpha_bar[10].item()
    wrong = (x_t[i] - beta * eps[i]) / math.sqrt(alpha) / math.sqrt(1 - ab)
    right = (x_t[i] - beta / math.sqrt(1 - ab) * eps[i]) / math.sqrt(alpha)
    assert torch.allclose(s.posterior_mean(x_t, t, eps)[i], right, atol=1e-5)
    assert not torch.allclose(right, wrong, atol=1e-2)
