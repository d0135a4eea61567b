"""The DDPM noise schedule and the Gaussian algebra built on it (Ho et al. 2020; Nichol & Dhariwal
2021). Pure tensor math, and the only copy of it in genlab: the loss, both samplers, the figures
and the tests all read these quantities from one ``NoiseSchedule``.

Indexing follows the code convention t = 0 .. T-1 (the paper's t = 1 .. T): ``betas[t]`` is the
variance added by the step x_t -> x_{t+1} in paper terms, ``alpha_bar[t]`` = prod_{s<=t} alphas[s],
and ``alpha_bar_prev[t]`` = alpha_bar[t-1] with alpha_bar_prev[0] = 1.
"""

from __future__ import annotations

import math

import torch

from genlab.errors import ConfigError

SCHEDULES = ("linear", "linear-scaled", "cosine")
LINEAR_START, LINEAR_END = 1e-4, 0.02  # Ho et al. 2020, for T = 1000
COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal 2021, eq. 17
MAX_BETA = 0.999  # their clip, which keeps beta_T < 1 near t = T


def make_betas(name: str, num_steps: int) -> torch.Tensor:
    """Betas (float64, shape (T,)) of a schedule by name.

    'linear': raw 1e-4 .. 0.02 whatever T (the reference notebook: alpha_bar_T ~ 0.05 at T = 300);
    'linear-scaled': both endpoints multiplied by 1000 / T (improved-diffusion), so the total noise
    does not depend on T; 'cosine': alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s))
    pi/2), betas = 1 - alpha_bar(t+1) / alpha_bar(t) clipped to 0.999.
    """
    if num_steps < 2:
        raise ConfigError(f"num_steps must be >= 2, got {num_steps}")
    if name == "linear":
        return torch.linspace(LINEAR_START, LINEAR_END, num_steps, dtype=torch.float64)
    if name == "linear-scaled":
        scale = 1000.0 / num_steps
        if scale * LINEAR_END >= 1:
            raise ConfigError(f"the 'linear-scaled' schedule needs T > {int(1000 * LINEAR_END)} "
                             f"(its last beta is 20 / T); got T = {num_steps}")
        return torch.linspace(scale * LINEAR_START, scale * LINEAR_END, num_steps,
                              dtype=torch.float64)
    if name == "cosine":
        steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((steps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=MAX_BETA)
    raise ConfigError(f"unknown noise schedule {name!r}; expected one of {list(SCHEDULES)}")


class NoiseSchedule:
    """Betas and every quantity derived from them, as (T,) float32 tensors on one device.

    Derived in float64, stored in float32. Per-timestep values are gathered with ``t`` of shape (B,)
    and broadcast over (B, C, H, W).
    """

    def __init__(self, name: str, num_steps: int, device: torch.device | str = "cpu") -> None:
        self.name = name
        self.num_steps = num_steps
        betas = make_betas(name, num_steps)
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, 0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        values = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": alpha_bar_prev,
            "sqrt_alpha_bar": alpha_bar.sqrt(),
            "sqrt_one_minus_alpha_bar": (1 - alpha_bar).sqrt(),
            "sqrt_recip_alphas": alphas.rsqrt(),
            # q(x_{t-1} | x_t, x_0) = N(coef_x0 x_0 + coef_xt x_t, beta_tilde)  (Ho et al., eq. 7)
            "posterior_coef_x0": betas * alpha_bar_prev.sqrt() / (1 - alpha_bar),
            "posterior_coef_xt": alphas.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar),
            "posterior_variance": betas * (1 - alpha_bar_prev) / (1 - alpha_bar),  # beta_tilde
            "snr": alpha_bar / (1 - alpha_bar),
        }
        for key, value in values.items():
            setattr(self, key, value.to(device=device, dtype=torch.float32))

    betas: torch.Tensor  # beta_t
    alphas: torch.Tensor  # 1 - beta_t
    alpha_bar: torch.Tensor  # prod_{s <= t} alpha_s
    alpha_bar_prev: torch.Tensor  # alpha_bar_{t-1}, 1 at t = 0
    sqrt_alpha_bar: torch.Tensor
    sqrt_one_minus_alpha_bar: torch.Tensor
    sqrt_recip_alphas: torch.Tensor  # 1 / sqrt(alpha_t)
    posterior_coef_x0: torch.Tensor
    posterior_coef_xt: torch.Tensor
    posterior_variance: torch.Tensor  # beta_tilde_t, eq. 7
    snr: torch.Tensor  # alpha_bar_t / (1 - alpha_bar_t)

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """The same schedule with its tensors on ``device``."""
        return NoiseSchedule(self.name, self.num_steps, device)

    def sigma(self, variance: str = "posterior") -> torch.Tensor:
        """Standard deviation of the reverse step: sqrt(beta_tilde_t) ('posterior') or sqrt(beta_t)
        ('beta'); Ho et al. found both to give similar samples (section 3.2)."""
        if variance == "posterior":
            return self.posterior_variance.sqrt()
        if variance == "beta":
            return self.betas.sqrt()
        raise ConfigError(f"unknown reverse variance {variance!r}; expected 'posterior' or 'beta'")

    def gather(self, values: torch.Tensor, t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
        """values[t] shaped to broadcast against x: (B, 1, 1, 1) for a (B,) t."""
        if isinstance(t, int):
            t = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        out = values.to(x.device)[t.to(x.device)]
        return out.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps  (Ho et al. 2020, eq. 4)."""
        return (self.gather(self.sqrt_alpha_bar, t, x0) * x0
                + self.gather(self.sqrt_one_minus_alpha_bar, t, x0) * eps)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor | int,
                   eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t): eq. 4 solved for x_0."""
        return ((x_t - self.gather(self.sqrt_one_minus_alpha_bar, t, x_t) * eps)
                / self.gather(self.sqrt_alpha_bar, t, x_t))

    def posterior_mean_x0(self, x_t: torch.Tensor, t: torch.Tensor | int,
                          x0: torch.Tensor) -> torch.Tensor:
        """Mean of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 7)."""
        return (self.gather(self.posterior_coef_x0, t, x_t) * x0
                + self.gather(self.posterior_coef_xt, t, x_t) * x_t)

    def posterior_mean(self, x_t: torch.Tensor, t: torch.Tensor | int,
                       eps: torch.Tensor) -> torch.Tensor:
        """mu = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)  (Ho et al., eq. 11).

        Only the noise term is divided by sqrt(1 - alpha_bar_t); the reference notebook divided
        the whole mean by it, which is not the posterior mean.
        """
        noise_coef = self.gather(self.betas, t, x_t) / self.gather(
            self.sqrt_one_minus_alpha_bar, t, x_t)
        return self.gather(self.sqrt_recip_alphas, t, x_t) * (x_t - noise_coef * eps)
