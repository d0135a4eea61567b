"""Training objectives of every family, one above the other. The training losses (``*_loss``)
each return (loss, logs): a scalar to backpropagate and detached scalars to log. The likelihood
terms (``ddpm_vlb_term``, ``ddpm_prior_term``) return nats per image; ``flow_times`` draws the
flow's training times.

Objectives take the network as an argument and only compute values: none calls ``backward()``
or steps an optimizer (the recipes' steps do, through ``TrainState.update``).
``tests/test_docstrings.py`` checks both rules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab.diffusion import NoiseSchedule
from genlab.images import WHITE_8, to_depth
from genlab.metrics import discretized_gaussian_log_likelihood, gaussian_kl, normal_kl


def vae_loss(net: nn.Module, x01: torch.Tensor, beta: float = 1.0,
             gen: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative beta-ELBO with a Bernoulli decoder, in nats per image.

    Reduction: BCE is summed over pixels (and channels) and KL over latent dimensions, then both
    are averaged over the batch: loss = mean_i [BCE(x_i, x_hat_i) + beta * KL_i]. This is the
    pytorch/examples convention (which sums over the batch too; dividing by B makes the value
    independent of batch size). ``x01`` is (B, C, H, W) in [0, 1]; one reparameterised sample
    z = mu + sigma * eps per image.
    """
    latent_dim = getattr(net, "module", net).latent_dim  # through a DDP wrapper, if any
    eps = torch.randn((x01.shape[0], latent_dim), generator=gen, device=x01.device)
    logits, mu, logvar = net(x01, eps)  # forward(), so that DDP synchronises gradients
    recon = F.binary_cross_entropy_with_logits(logits.float(), x01, reduction="none")
    recon = recon.flatten(1).sum(1).mean()
    kl = gaussian_kl(mu.float(), logvar.float()).mean()
    loss = recon + beta * kl
    return loss, {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach()}


# --- GAN -----------------------------------------------------------------------------------------


def _bce_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean binary cross-entropy of logits against a constant label (1 real, 0 fake)."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def gan_d_loss(disc: nn.Module, x0: torch.Tensor, x_fake: torch.Tensor,
               cond: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Discriminator loss of the (conditional) GAN (Goodfellow et al. 2014; pix2pix, Isola et
    al. 2017, eq. 1): BCE(D(x0 | cond), 1) + BCE(D(x_fake | cond), 0), halved as in pix2pix.

    ``x0`` clean and ``x_fake`` generated images (B, C, H, W) in [-1, 1]; ``cond`` the noisy
    input for the denoiser, None for the unconditional DCGAN. The fake is detached: this loss
    updates D only. Logs the mean probabilities D(x) and D(G(.)) (per patch for a PatchGAN).
    """
    d_real = disc(x0, cond)                                  # logits, (B, 1) or (B, 1, h, w)
    d_fake = disc(x_fake.detach(), cond)
    loss = 0.5 * (_bce_logits(d_real, 1.0) + _bce_logits(d_fake, 0.0))
    return loss, {"d_loss": loss.detach(), "d_real": torch.sigmoid(d_real.float()).mean().detach(),
                  "d_fake": torch.sigmoid(d_fake.float()).mean().detach()}


def gan_g_loss(disc: nn.Module | None, x0: torch.Tensor | None, x_fake: torch.Tensor,
               cond: torch.Tensor | None = None, l1_weight: float = 100.0,
               adv_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Generator loss: adv_weight * BCE(D(x_fake | cond), 1) (the non-saturating loss) +
    l1_weight * mean |x_fake - x0| (pix2pix, eq. 4, on [-1, 1] images).

    With ``disc`` None (or adv_weight 0) it is the L1-only ablation; with ``x0`` None (no
    paired target) and no ``cond`` it is the DCGAN generator loss. Logs the total as ``loss``.
    """
    loss = torch.zeros((), device=x_fake.device)
    logs: dict[str, torch.Tensor] = {}
    if x0 is not None:
        l1 = (x_fake.float() - x0.float()).abs().mean()
        loss = loss + l1_weight * l1
        logs["l1"] = l1.detach()
    if disc is not None and adv_weight > 0:
        adv = _bce_logits(disc(x_fake, cond), 1.0)
        loss = loss + adv_weight * adv
        logs["g_adv"] = adv.detach()
    logs["loss"] = loss.detach()
    return loss, logs


# --- DDPM ----------------------------------------------------------------------------------------


def ddpm_loss(net: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor,
              y: torch.Tensor | None = None, gen: torch.Generator | None = None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Simple DDPM objective (Ho et al. 2020, eq. 14): mean over batch and pixels of
    ||eps - eps_hat(x_t, t, y)||^2 with t ~ U{0..T-1}, eps ~ N(0, I). ``x0`` is (B, C, H, W) in
    [-1, 1]; ``y`` holds the labels to condition on (already label-dropped), or None."""
    t = torch.randint(0, schedule.num_steps, (x0.shape[0],), generator=gen, device=x0.device)
    eps = torch.randn(x0.shape, generator=gen, device=x0.device)
    x_t = schedule.q_sample(x0, t, eps)  # (B, C, H, W)
    loss = F.mse_loss(net(x_t, t, y).float(), eps)
    return loss, {"loss": loss.detach()}


def ddpm_vlb_term(net: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor,
                  y: torch.Tensor | None = None, gen: torch.Generator | None = None,
                  half_bin: float = 1 / WHITE_8) -> torch.Tensor:
    """One term of the DDPM variational bound (Ho et al. 2020, eq. 5) per image, in nats, at the
    code timesteps ``t`` (B,) (paper t + 1), for the reverse process genlab samples with: mean
    from eps (eq. 11), variance the posterior variance beta_tilde.

    t >= 1: L_t = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), x_t drawn from q(x_t | x_0);
    both Gaussians have variance beta_tilde_t, so it is |mu_tilde - mu_theta|^2 / (2 beta_tilde_t).
    t = 0: L_0 = -log p(x_0 | x_1), the discretised Gaussian decoder around the predicted mean,
    with beta_tilde_1 as its variance (beta_tilde_0 is 0; improved-diffusion clips it the same
    way). ``x0`` (B, C, H, W) on the data's grid in [-1, 1].
    """
    eps = torch.randn(x0.shape, generator=gen, device=x0.device)
    x_t = schedule.q_sample(x0, t, eps)
    mean = schedule.posterior_mean(x_t, t, net(x_t, t, y).float())       # mu_theta(x_t, t)
    var = schedule.gather(schedule.posterior_variance, t.clamp_min(1), x0)  # beta_tilde_t
    kl = normal_kl(schedule.posterior_mean_x0(x_t, t, x0), var, mean, var).flatten(1).sum(1)
    decoder = -discretized_gaussian_log_likelihood(x0, mean, var.sqrt(), half_bin)
    return torch.where(t == 0, decoder.flatten(1).sum(1), kl)


def ddpm_prior_term(schedule: NoiseSchedule, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)) per image, in nats: what the noise schedule leaves of
    x_0 at t = T (about 0 when alpha_bar_T is about 0)."""
    t_last = schedule.num_steps - 1
    mean = schedule.gather(schedule.sqrt_alpha_bar, t_last, x0) * x0
    var = schedule.gather(1 - schedule.alpha_bar, t_last, x0)
    return normal_kl(mean, var, torch.zeros_like(x0), 1.0).flatten(1).sum(1)


# --- flow matching -------------------------------------------------------------------------------


def flow_times(n: int, sampling: str = "logit-normal", mean: float = 0.0, std: float = 1.0,
               gen: torch.Generator | None = None, device: torch.device | str = "cpu"
               ) -> torch.Tensor:
    """Training times t in (0, 1): uniform (Liu et al. 2023) or logit-normal, t = sigmoid(n) with
    n ~ N(mean, std^2) (Esser et al. 2024, eq. 19), which trains the middle of the path most."""
    if sampling == "uniform":
        return torch.rand(n, generator=gen, device=device)
    if sampling == "logit-normal":
        return torch.sigmoid(mean + std * torch.randn(n, generator=gen, device=device))
    raise ValueError(f"unknown time sampling {sampling!r}; expected 'uniform' or 'logit-normal'")


def flow_loss(net: nn.Module, x0: torch.Tensor, y: torch.Tensor | None = None,
              gen: torch.Generator | None = None, sampling: str = "logit-normal",
              mean: float = 0.0, std: float = 1.0, time_scale: float = 1.0
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Conditional flow matching on the straight path (rectified flow, Liu et al. 2023; Lipman et
    al. 2023): x_t = (1 - t) x_0 + t eps, target velocity dx_t/dt = eps - x_0, loss the mean over
    batch and pixels of ||v_hat(x_t, t, y) - (eps - x_0)||^2. ``x0`` (B, C, H, W) in [-1, 1];
    the network sees ``time_scale`` * t (1000 puts t in the range of DDPM's timestep embedding)."""
    t = flow_times(x0.shape[0], sampling, mean, std, gen, x0.device)        # (B,)
    eps = torch.randn(x0.shape, generator=gen, device=x0.device)
    t4 = t.view(-1, *([1] * (x0.dim() - 1)))
    x_t = (1 - t4) * x0 + t4 * eps                                          # (B, C, H, W)
    loss = F.mse_loss(net(x_t, t * time_scale, y).float(), eps - x0)
    return loss, {"loss": loss.detach()}


# --- autoregressive (PixelCNN) -------------------------------------------------------------------


def pixelcnn_nll(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Exact negative log-likelihood -log p(x) = -sum_i log p(x_i | x_<i) per image, in nats, of
    an autoregressive network (van den Oord et al. 2016) that returns logits (B, K, C, H, W).

    K = 256: a categorical over the grey levels, x on the data's grid in [-1, 1] (level l =
    (x + 1) * 127.5), the cross-entropy summed over pixels and channels. K = 1: a Bernoulli,
    x = 2 x01 - 1 with x01 binary (or grey levels, the VAE's convention), the BCE with logits
    summed likewise."""
    logits = net(x, y).float()
    if logits.shape[1] == 1:
        target = (x.float() + 1) / 2                                          # x01
        nll = F.binary_cross_entropy_with_logits(logits[:, 0], target, reduction="none")
    else:
        levels = to_depth(x, torch.uint8).long()                             # (B, C, H, W)
        nll = F.cross_entropy(logits, levels, reduction="none")
    return nll.flatten(1).sum(1)                                             # (B,)


def pixelcnn_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The exact NLL of ``pixelcnn_nll`` as a training loss: its mean per dimension (nats per
    pixel and channel, so the learning rate does not depend on the image size). Logs the loss,
    the NLL in nats per image and in bits per dimension (nats / (D ln 2))."""
    nats = pixelcnn_nll(net, x, y)                                           # (B,)
    dims = x[0].numel()
    loss = nats.mean() / dims
    return loss, {"loss": loss.detach(), "nll_nats": nats.mean().detach(),
                  "bits_per_dim": loss.detach() / math.log(2)}
