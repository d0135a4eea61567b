"""Training objectives of the three families, one above the other. Each returns (loss, logs).

Objectives take the network as an argument and only compute values: ``train`` alone calls
``backward()`` and ``optimizer.step()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab.diffusion import NoiseSchedule


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims, per image (Kingma & Welling,
    appendix B): -0.5 * sum(1 + logvar - mu^2 - exp(logvar))."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


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
