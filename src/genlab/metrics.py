"""Metrics: likelihood bounds (ELBO, IWAE), image fidelity (PSNR, SSIM), sample quality (FID/KID).

Functions take networks as arguments; nothing here imports the rest of genlab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)


def _log_normal(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mu, diag(exp(logvar))) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (x - mu).pow(2) / logvar.exp()).sum(-1)


@torch.no_grad()
def vae_bounds(net: nn.Module, x01: torch.Tensor, k: int = 100,
               gen: torch.Generator | None = None, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per-image ELBO terms and the importance-weighted bound (Burda et al. 2016, eq. 8).

    With k samples z_j ~ q(z|x): log p(x) >= logsumexp_j [log p(x|z_j) + log p(z_j)
    - log q(z_j|x)] - log k, which tightens as k grows. Returns per-image tensors (nats):
    ``recon`` (E_q BCE, one sample), ``kl`` (analytic), ``elbo`` (-recon - kl, beta = 1) and
    ``iwae`` (the k-sample bound on log p(x)). The likelihood is Bernoulli on the values in x01.
    """
    device = next(net.parameters()).device
    out: dict[str, list[torch.Tensor]] = {"recon": [], "kl": [], "elbo": [], "iwae": []}
    for xb in x01.split(batch_size):
        xb = xb.to(device)
        b = xb.shape[0]
        mu, logvar = net.encode(xb)
        mu, logvar = mu.float(), logvar.float()
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
        eps = torch.randn((k, b, mu.shape[1]), generator=gen, device=device)
        z = mu + torch.exp(0.5 * logvar) * eps  # (k, B, z)
        logits = net.decode(z.reshape(k * b, -1)).float()
        target = xb.unsqueeze(0).expand(k, *xb.shape).reshape(k * b, *xb.shape[1:])
        log_px_z = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        log_px_z = log_px_z.flatten(1).sum(1).view(k, b)
        log_pz = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = _log_normal(z, mu, logvar)
        log_w = log_px_z + log_pz - log_qz  # (k, B)
        iwae = torch.logsumexp(log_w, dim=0) - math.log(k)
        out["recon"].append(-log_px_z[0])
        out["kl"].append(kl)
        out["elbo"].append(log_px_z[0] - kl)
        out["iwae"].append(iwae)
    return {key: torch.cat(vals).cpu() for key, vals in out.items()}


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB: 10 log10(range^2 / MSE)."""
    mse = (x.float() - ref.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-20))
