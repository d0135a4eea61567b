"""VAE networks: encoder x -> (mu, logvar), decoder z -> Bernoulli logits (Kingma & Welling 2014).

Inputs are Bernoulli means in [0, 1] (the BCE target), shaped (B, C, H, W). The decoder returns
logits; ``sigmoid(logits)`` is the reference notebook's sigmoid output, and the loss uses
``binary_cross_entropy_with_logits``, the numerically stable form of sigmoid + BCE.
"""

from __future__ import annotations

import torch
from torch import nn

from genlab.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


class MLPVAE(nn.Module):
    """Fully connected VAE; with hidden=(256,) it is the reference D-256-z-256-D network."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int,
                 hidden: tuple[int, ...] = (256,), activation: str = "relu") -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        dim = image_shape[0] * image_shape[1] * image_shape[2]
        act = ACTIVATIONS[activation]
        widths = (dim, *hidden)
        self.encoder = nn.Sequential(
            *[m for a, b in zip(widths, widths[1:]) for m in (nn.Linear(a, b), act())]
        )
        self.fc_mu = nn.Linear(hidden[-1], latent_dim)
        self.fc_logvar = nn.Linear(hidden[-1], latent_dim)
        back = (latent_dim, *reversed(hidden))
        self.decoder = nn.Sequential(
            *[m for a, b in zip(back, back[1:]) for m in (nn.Linear(a, b), act())],
            nn.Linear(hidden[0], dim),
        )

    def encode(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) in [0, 1] -> mu, logvar, each (B, z)."""
        h = self.encoder(x01.flatten(1))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, z) -> Bernoulli logits (B, C, H, W)."""
        return self.decoder(z).view(z.shape[0], *self.image_shape)

    def forward(self, x01: torch.Tensor, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of p(x|z) with z = mu + sigma * eps (z = mu when eps is None), mu, logvar."""
        mu, logvar = self.encode(x01)
        z = mu if eps is None else mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar


class ConvVAE(nn.Module):
    """Convolutional VAE for 3-channel and larger images: stride-2 conv stages, mirrored up path."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int,
                 hidden: tuple[int, ...] = (32, 64, 128), activation: str = "relu") -> None:
        super().__init__()
        c, h, w = image_shape
        factor = 2 ** len(hidden)
        if h % factor or w % factor:
            raise ConfigError(
                f"conv VAE with {len(hidden)} stride-2 stages needs height and width divisible "
                f"by {factor}; got {h}x{w} (use fewer stages via --hidden, or arch 'mlp')"
            )
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        chans = (c, *hidden)
        for a, b in zip(chans, chans[1:]):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), act()]
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.bottom = (hidden[-1], h // factor, w // factor)
        flat = hidden[-1] * (h // factor) * (w // factor)
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_logvar = nn.Linear(flat, latent_dim)
        self.fc_dec = nn.Linear(latent_dim, flat)
        up: list[nn.Module] = []
        back = (*reversed(hidden), hidden[0])
        for a, b in zip(back, back[1:]):
            up += [act(), nn.ConvTranspose2d(a, b, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*up, act(), nn.Conv2d(hidden[0], c, 3, padding=1))

    def encode(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x01)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_dec(z).view(z.shape[0], *self.bottom))

    def forward(self, x01: torch.Tensor, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of p(x|z) with z = mu + sigma * eps (z = mu when eps is None), mu, logvar."""
        mu, logvar = self.encode(x01)
        z = mu if eps is None else mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar
