"""GAN networks: conditional denoisers noisy -> clean (pix2pix, Isola et al. 2017) and an
unconditional DCGAN (Radford et al. 2016).

Every generator maps tensors in [-1, 1] to images in [-1, 1]. The denoising generators are fully
convolutional: ``stride`` is the multiple that height and width must be (``samplers.denoise`` pads
and crops), ``receptive_field`` the side of the input patch one output pixel sees (smaller images
are refused). The conditional discriminators judge a pair (candidate, noisy) and return logits.
"""

from __future__ import annotations

import torch
from torch import nn

from genlab.errors import ConfigError


def _receptive_field(layers: list[tuple[str, int, int, int]], stride: int) -> int:
    """Side of the input window one output pixel depends on, for a chain of ('conv' | 'convT',
    kernel, stride, padding) layers, maximised over the output pixel's position modulo the
    network's ``stride`` (with strided layers the window depends on that phase).

    The window is traced back layer by layer: a conv output range [a, b] reads inputs
    [a s - p, b s - p + k - 1]; a transposed-conv output o = i s - p + t (0 <= t < k) reads inputs
    i in [ceil((a + p - k + 1) / s), floor((b + p) / s)].
    """
    widest = 0
    for phase in range(stride):
        a = b = 1000 * stride + phase  # far from any border
        for kind, k, s, p in reversed(layers):
            if kind == "conv":
                a, b = a * s - p, b * s - p + k - 1
            else:
                a, b = -(-(a + p - k + 1) // s), (b + p) // s
        widest = max(widest, b - a + 1)
    return widest


# --- the reference notebook's networks -----------------------------------------------------------


class ReferenceGenerator(nn.Module):
    """The notebook's generator: Conv 64 5x5, Conv 128 3x3 s2, Conv 128 3x3 s2, ConvT 128 s2,
    ConvT 64 s2, Conv C 5x5 + sigmoid ('same' padding, ReLU between). The sigmoid's [0, 1] is
    mapped to genlab's [-1, 1] as 2 * sigmoid - 1."""

    stride = 4

    def __init__(self, channels: int = 1, width: int = 64) -> None:
        super().__init__()
        w1, w2 = width, 2 * width
        self.in_channels = channels
        self.net = nn.Sequential(
            nn.Conv2d(channels, w1, 5, padding=2), nn.ReLU(),
            nn.Conv2d(w1, w2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w2, w2, 3, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(w2, w2, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(w2, w1, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.Conv2d(w1, channels, 5, padding=2),
        )
        self.receptive_field = _receptive_field(
            [("conv", 5, 1, 2), ("conv", 3, 2, 1), ("conv", 3, 2, 1), ("convT", 3, 2, 1),
             ("convT", 3, 2, 1), ("conv", 5, 1, 2)], self.stride)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) noisy in [-1, 1], H and W multiples of 4 -> (B, C, H, W) in [-1, 1]."""
        return torch.sigmoid(self.net(noisy)) * 2 - 1


class ReferenceDiscriminator(nn.Module):
    """The notebook's discriminator on a (candidate, noisy) pair stacked as channels: Conv 64 5x5
    s2, LeakyReLU, Dropout 0.3, Conv 128 5x5 s2, LeakyReLU, Dropout 0.3, dense 1 (a logit)."""

    def __init__(self, in_channels: int, image_size: tuple[int, int], width: int = 64) -> None:
        super().__init__()
        h, w = image_size
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, stride=2, padding=2), nn.LeakyReLU(0.2),
            nn.Dropout(0.3),
            nn.Conv2d(width, 2 * width, 5, stride=2, padding=2), nn.LeakyReLU(0.2),
            nn.Dropout(0.3),
            nn.Flatten(),
        )
        side_h, side_w = (h + 3) // 4, (w + 3) // 4  # two stride-2 convs with padding 2
        self.head = nn.Linear(2 * width * side_h * side_w, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) candidate [+ (B, C, H, W) noisy condition] -> (B, 1) logits."""
        h = x if cond is None else torch.cat([x, cond], dim=1)
        return self.head(self.features(h))


# --- genlab's default denoiser -------------------------------------------------------------------


def _block(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.LeakyReLU(0.1),
                         nn.Conv2d(b, b, 3, padding=1), nn.LeakyReLU(0.1))


class UNetGenerator(nn.Module):
    """A small UNet (Ronneberger et al. 2015) for 48x48 faces: three resolutions (48, 24, 12)
    with widths (w, 2w, 4w), skip connections by concatenation, and a residual output:
    x0_hat = noisy + r(noisy), so the network only has to model the noise. No normalisation
    layers, so one network serves every image size alike. One conv at the 12x12 level keeps the
    receptive field (43 pixels) inside a 48x48 face."""

    stride = 4

    def __init__(self, channels: int = 1, width: int = 32) -> None:
        super().__init__()
        w = width
        self.in_channels = channels
        self.enc1 = _block(channels, w)                                  # (B, w, H, W)
        self.down1 = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.enc2 = _block(2 * w, 2 * w)                                 # (B, 2w, H/2, W/2)
        self.down2 = nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1)
        self.mid = nn.Sequential(nn.Conv2d(4 * w, 4 * w, 3, padding=1),  # (B, 4w, H/4, W/4)
                                 nn.LeakyReLU(0.1))
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = _block(2 * w, w)
        self.out = nn.Conv2d(w, channels, 3, padding=1)
        # The deepest path (through the 12x12 level) sees the widest window.
        conv, down, up = ("conv", 3, 1, 1), ("conv", 3, 2, 1), ("convT", 2, 2, 0)
        self.receptive_field = _receptive_field(
            [conv, conv, down, conv, conv, down, conv, up, conv, conv, up, conv, conv, conv],
            self.stride)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) noisy in [-1, 1], H and W multiples of 4 -> (B, C, H, W), about [-1, 1]."""
        h1 = self.enc1(noisy)
        h2 = self.enc2(self.down1(h1))
        h = self.mid(self.down2(h2))
        h = self.dec2(torch.cat([self.up2(h), h2], dim=1))
        h = self.dec1(torch.cat([self.up1(h), h1], dim=1))
        return noisy + self.out(h)


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): a grid of logits, one per overlapping patch, on the
    (candidate, noisy) pair; 4x4 convs, strides 2, 2, 1, 1 (a 34x34 patch per logit)."""

    min_size = 12  # 12 -> 6 -> 3 -> 2 -> 1 logit

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, stride=1, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 1, 4, stride=1, padding=1),
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) candidate [+ noisy condition] -> (B, 1, H/4 - 2, W/4 - 2) logits."""
        h = x if cond is None else torch.cat([x, cond], dim=1)
        return self.net(h)


# --- unconditional generation ------------------------------------------------------------------


class DCGANGenerator(nn.Module):
    """DCGAN generator: z (B, latent_dim) -> linear to (4w, H/4, W/4) -> two stride-2
    transposed convs with BatchNorm + ReLU -> tanh image in [-1, 1].

    With ``num_classes`` > 0 it is class-conditional (Mirza & Osindero 2014): a learned
    embedding of the label, of z's size, is concatenated to z."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, width: int,
                 num_classes: int = 0) -> None:
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ConfigError(f"the DCGAN generator needs height and width divisible by 4; "
                              f"got {h}x{w}")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.image_shape = tuple(image_shape)
        self.bottom = (4 * width, h // 4, w // 4)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        inputs = latent_dim * (2 if num_classes else 1)
        self.fc = nn.Sequential(nn.Linear(inputs, 4 * width * (h // 4) * (w // 4)),
                                nn.BatchNorm1d(4 * width * (h // 4) * (w // 4)), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, stride=2, padding=1),
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, c, 3, padding=1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(B, latent_dim) and, when class-conditional, (B,) class labels -> (B, C, H, W) in
        [-1, 1]."""
        if (labels is None) != (self.embed is None):
            raise ConfigError("a class-conditional DCGAN generator needs class labels, an "
                              "unconditional one takes none")
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels).to(z.dtype)], dim=1)
        return self.net(self.fc(z).view(z.shape[0], *self.bottom))


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: two stride-2 4x4 convs with LeakyReLU (BatchNorm on the second),
    then a linear logit.

    With ``num_classes`` > 0 it is a projection discriminator (Miyato & Koyama 2018): the logit
    adds the inner product of a learned embedding of the label with the features, so it judges
    whether an image is real *and of its class*."""

    def __init__(self, image_shape: tuple[int, int, int], width: int,
                 num_classes: int = 0) -> None:
        super().__init__()
        c, h, w = image_shape
        features = 2 * width * (h // 4) * (w // 4)
        self.num_classes = num_classes
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2), nn.Flatten(),
            nn.Linear(features, 1),  # inside net: the weights' names are those of genlab < 0.5
        )
        self.embed = nn.Embedding(num_classes, features) if num_classes else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, 1) logits; ``cond``: the (B,) class labels of a
        class-conditional discriminator, None for an unconditional one."""
        if (cond is None) != (self.embed is None):
            raise ConfigError("a class-conditional DCGAN discriminator needs class labels, an "
                              "unconditional one takes none")
        if self.embed is None:
            return self.net(x)
        h = self.net[:-1](x)
        logit = self.net[-1](h)
        if self.embed is not None:
            logit = logit + (self.embed(cond).to(h.dtype) * h).sum(1, keepdim=True)
        return logit
