"""The DDPM variational bound in bits/dim: its pieces against independent formulas, an oracle
network whose bound is known in closed form, the Monte Carlo estimator over t, and a trained run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import genlab
from genlab import data, recipes
from genlab.diffusion import NoiseSchedule
from genlab.images import to_float
from genlab.metrics import discretized_gaussian_log_likelihood, normal_kl
from genlab.recipes import ddpm as ddpm_recipe


def test_normal_kl_matches_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(50, generator=gen), torch.randn(50, generator=gen)
    v1, v2 = torch.rand(50, generator=gen) + 0.1, torch.rand(50, generator=gen) + 0.1
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m1, v1.sqrt()),
                                            torch.distributions.Normal(m2, v2.sqrt()))
    assert torch.allclose(normal_kl(m1, v1, m2, v2), ref, atol=1e-6)


@pytest.mark.parametrize("mean,std", [(0.0, 0.05), (0.93, 0.3), (-1.2, 0.01), (0.4, 2.0)])
def test_discretized_gaussian_is_a_distribution_over_the_256_grey_levels(mean, std) -> None:
    grid = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    logp = discretized_gaussian_log_likelihood(grid, torch.full_like(grid, mean), std)
    assert float(logp.exp().sum()) == pytest.approx(1.0, abs=1e-6)
    normal = torch.distributions.Normal(torch.tensor(mean, dtype=torch.float64), std)
    inner = grid[100]  # an interior level: the Gaussian mass of its bin
    expected = normal.cdf(inner + 1 / 255) - normal.cdf(inner - 1 / 255)
    assert float(logp[100].exp()) == pytest.approx(float(expected), rel=1e-6, abs=1e-11)


class Oracle(nn.Module):
    """The exact noise predictor for a data set of one image x*: eps = (x_t - sqrt(abar) x*) /
    sqrt(1 - abar). Its reverse means equal the true posterior means."""

    def __init__(self, schedule: NoiseSchedule, x_star: torch.Tensor) -> None:
        super().__init__()
        self.schedule, self.x_star = schedule, x_star
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x_t, t, y=None):
        s = self.schedule
        return ((x_t - s.gather(s.sqrt_alpha_bar, t, x_t) * self.x_star)
                / s.gather(s.sqrt_one_minus_alpha_bar, t, x_t))


def test_an_oracle_network_has_zero_diffusion_terms_and_a_hand_computed_bound() -> None:
    schedule = NoiseSchedule("linear", 50)  # alpha_bar_T = 0.6: a prior term worth checking
    x_star = to_float(torch.randint(0, 256, (1, 1, 4, 4), generator=torch.Generator()
                                         .manual_seed(1), dtype=torch.uint8))
    terms = ddpm_recipe.vlb_terms(Oracle(schedule, x_star), schedule, x_star, 49,
                                  torch.Generator().manual_seed(0))
    assert float(terms["diffusion"].abs().max()) < 1e-3
    # decoder: every pixel's bin mass under N(x*, beta_tilde_1), the bin around the mean
    sigma = math.sqrt(float(schedule.posterior_variance[1]))
    normal = torch.distributions.Normal(0.0, sigma)
    inside = (x_star.abs() < 1 - 1 / 255)
    p_inner = float(normal.cdf(torch.tensor(1 / 255)) - normal.cdf(torch.tensor(-1 / 255)))
    p_edge = float(normal.cdf(torch.tensor(1 / 255)))
    expected = -(inside.sum() * math.log(p_inner) + (~inside).sum() * math.log(p_edge))
    assert float(terms["decoder"][0]) == pytest.approx(float(expected), rel=1e-4)
    abar = float(schedule.alpha_bar[-1])
    prior = 0.5 * float((abar * x_star**2 + (1 - abar) - 1 - math.log(1 - abar)).sum())
    assert float(terms["prior"][0]) == pytest.approx(prior, rel=1e-4, abs=1e-7)


def test_the_stratified_estimate_is_the_exact_sum_with_every_t_and_unbiased_with_fewer(
        monkeypatch) -> None:
    T = 40
    schedule = NoiseSchedule("cosine", T)
    # a stand-in term that reveals which t was drawn: L_t = t^2 (t = 0: the decoder term)
    monkeypatch.setattr(ddpm_recipe, "ddpm_vlb_term",
                        lambda net, s, x0, t, **_: t.double() ** 2)
    x0 = torch.zeros(2000, 1, 2, 2)
    exact = sum(t**2 for t in range(1, T))
    every = ddpm_recipe.vlb_terms(None, schedule, x0[:3], T - 1, torch.Generator().manual_seed(0))
    assert torch.equal(every["diffusion"], torch.full((3,), float(exact), dtype=torch.float64))
    assert torch.equal(every["decoder"], torch.zeros(3, dtype=torch.float64))
    few = ddpm_recipe.vlb_terms(None, schedule, x0, 5, torch.Generator().manual_seed(0))
    estimate = few["diffusion"]
    assert abs(float(estimate.mean()) - exact) < 3 * float(estimate.std()) / math.sqrt(len(x0))


def test_training_lowers_the_bound_of_a_tiny_ddpm(tmp_path, one_thread) -> None:
    cfg = recipes.make_config("ddpm", "default", dataset="digits", channels=(8, 16),
                              num_steps=50, steps=80, batch_size=32, lr=2e-3, warmup_steps=10,
                              ema_sigma_rel=0.0, log_every=50, checkpoint_every=10_000,
                              run_dir=str(tmp_path / "run"))
    run_dir = genlab.train(cfg, progress=False)
    run = recipes.load_run(run_dir)
    test = data.load_split(run.config, "test")
    trained = ddpm_recipe.likelihood(run, test, seed=0, num_images=60, per_image=8)
    for p in run.model.parameters():  # the same network, untrained: a much worse bound
        torch.nn.init.normal_(p, std=0.02)
    untrained = ddpm_recipe.likelihood(run, test, seed=0, num_images=60, per_image=8)
    assert 0 < trained["nll_bits_per_dim"] < untrained["nll_bits_per_dim"] - 1.0
    parts = sum(trained[f"{k}_bits_per_dim"] for k in ("prior", "decoder", "diffusion"))
    assert parts == pytest.approx(trained["nll_bits_per_dim"], rel=1e-5)
    assert trained["network_calls"] == 60 * 9 and trained["nll_bits_per_dim_se"] > 0
