"""Samplers of the three families, one above the other. Each returns images in [-1, 1]."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def sample_vae(net: nn.Module, n: int, gen: torch.Generator | None = None,
               z: torch.Tensor | None = None) -> torch.Tensor:
    """Decode z ~ N(0, I) (or the given z); returns the Bernoulli means, mapped to [-1, 1]."""
    device = next(net.parameters()).device
    if z is None:
        z = torch.randn((n, net.latent_dim), generator=gen, device=device)
    probs = torch.sigmoid(net.decode(z.to(device)).float())  # (n, C, H, W) in [0, 1]
    return probs * 2 - 1
