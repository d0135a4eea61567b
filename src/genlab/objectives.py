"""Training objectives of the three families, one above the other. Each returns (loss, logs).

Objectives take the network as an argument and only compute values: ``train`` alone calls
``backward()`` and ``optimizer.step()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
