"""genlab's schedules and one ancestral step against diffusers' DDPMScheduler (an independent
implementation); diffusers comes with the dev extras, so the default suite runs it."""

from __future__ import annotations

import pytest
import torch

from genlab.diffusion import NoiseSchedule

diffusers = pytest.importorskip("diffusers")

CASES = [("linear", dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)),
         ("cosine", dict(beta_schedule="squaredcos_cap_v2"))]


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_betas_match_diffusers(name, kwargs):
    ours = NoiseSchedule(name, 1000)
    theirs = diffusers.DDPMScheduler(num_train_timesteps=1000, **kwargs)
    torch.testing.assert_close(ours.betas.float(), theirs.betas, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.alpha_bar.float(), theirs.alphas_cumprod, rtol=1e-4,
                               atol=1e-7)


@pytest.mark.parametrize(("name", "kwargs"), CASES)
@pytest.mark.parametrize("t", [999, 500, 37, 1, 0])
def test_one_ddpm_step_matches_diffusers(name, kwargs, t):
    """x_{t-1} = posterior mean from eps + sqrt(beta-tilde_t) z, with the same z."""
    schedule = NoiseSchedule(name, 1000)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, variance_type="fixed_small",
                                        clip_sample=False, **kwargs)
    scheduler.set_timesteps(1000)
    gen = torch.Generator().manual_seed(t)
    x_t = torch.randn(2, 3, 4, 4, generator=gen)
    eps = torch.randn(2, 3, 4, 4, generator=gen)
    z = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(123))
    ours = schedule.posterior_mean(x_t, t, eps).float()
    if t > 0:
        ours = ours + float(schedule.sigma("posterior")[t]) * z
    theirs = scheduler.step(eps, t, x_t, generator=torch.Generator().manual_seed(123)).prev_sample
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
