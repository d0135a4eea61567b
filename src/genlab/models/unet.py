"""Time-conditioned UNets for DDPM: ``net(x_t, t, y=None) -> eps_hat``, all (B, C, H, W).

Two architectures share one interface:

- ``ReferenceUNet``: the reference notebook's network. Blocks conv -> ReLU -> BatchNorm with the
  time embedding added after the first conv, channels (64, 128, 256, 512, 1024), 4x4 stride-2 conv
  down path, transposed-conv up path, skips concatenated.
- ``ResUNet`` (default): residual blocks with GroupNorm and SiLU (Ho et al. 2020 / improved-
  diffusion style, without attention), the time MLP projected into every block, stride-2 conv
  down, nearest-upsample + conv up, a zero-initialised output layer.

Class conditioning adds a label embedding to the time embedding. Label ``num_classes`` is the
"null" label, used for the unconditional half of classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genlab.errors import ConfigError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017): (B,) -> (B, dim)."""
    half = dim // 2
    steps = torch.arange(half, device=t.device) / max(half - 1, 1)
    freqs = torch.exp(-math.log(max_period) * steps)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return nn.functional.pad(emb, (0, dim % 2))


def check_size(arch: str, channels: tuple[int, ...], image_shape: tuple[int, int, int]) -> None:
    """Raise ConfigError unless every stride-2 stage of the UNet halves an even size."""
    _, h, w = image_shape
    halvings = len(channels) - 1
    factor = 2**halvings
    if h % factor or w % factor:
        works = ", ".join(str(factor * k) for k in range(1, 5))
        fewer = [s for s in (h, w) if s % factor]
        fits = max(k for k in range(len(channels)) if all(s % 2**k == 0 for s in fewer))
        raise ConfigError(
            f"the {arch} UNet with {len(channels)} channel levels {tuple(channels)} halves the "
            f"image {halvings} times, so height and width must be multiples of {factor} "
            f"(e.g. {works}); got {h}x{w}. Use at most {fits + 1} levels in --channels for "
            f"{h}x{w} images"
        )


class ReferenceBlock(nn.Module):
    """The notebook's block: conv-ReLU-BN, + time, conv-ReLU-BN, then a 4x4 stride-2 resample."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, up: bool = False) -> None:
        super().__init__()
        self.time_mlp = nn.Linear(emb_dim, out_ch)
        self.conv1 = nn.Conv2d(2 * in_ch if up else in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.bnorm1 = nn.BatchNorm2d(out_ch)
        self.bnorm2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        if up:
            self.transform: nn.Module = nn.ConvTranspose2d(out_ch, out_ch, 4, 2, 1)
        else:
            self.transform = nn.Conv2d(out_ch, out_ch, 4, 2, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.bnorm1(self.relu(self.conv1(x)))
        h = h + self.relu(self.time_mlp(emb))[:, :, None, None]
        h = self.bnorm2(self.relu(self.conv2(h)))
        return self.transform(h)


class ReferenceUNet(nn.Module):
    """The reference notebook's UNet (about 62M parameters with its channels, for 3x32x32)."""

    def __init__(self, image_shape: tuple[int, int, int],
                 channels: tuple[int, ...] = (64, 128, 256, 512, 1024), num_classes: int = 0,
                 emb_dim: int = 32) -> None:
        super().__init__()
        check_size("reference", channels, image_shape)
        in_ch = image_shape[0]
        self.num_classes = num_classes
        self.emb_dim = emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.ReLU())
        self.label_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.conv0 = nn.Conv2d(in_ch, channels[0], 3, padding=1)
        self.downs = nn.ModuleList(
            [ReferenceBlock(a, b, emb_dim) for a, b in zip(channels, channels[1:])])
        up = tuple(reversed(channels))
        self.ups = nn.ModuleList(
            [ReferenceBlock(a, b, emb_dim, up=True) for a, b in zip(up, up[1:])])
        self.output = nn.Conv2d(channels[0], in_ch, 1)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
                ) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.emb_dim))
        if self.label_emb is not None:
            emb = emb + self.label_emb(_labels(y, t, self.null_label))
        x = self.conv0(x_t)
        skips = []
        for down in self.downs:
            x = down(x, emb)
            skips.append(x)
        for up in self.ups:
            x = up(torch.cat([x, skips.pop()], dim=1), emb)
        return self.output(x)


def _groups(ch: int) -> int:
    """GroupNorm groups: at most 32 (Ho et al.), with at least 4 channels in each."""
    return max(g for g in (1, 2, 4, 8, 16, 32) if ch % g == 0 and (ch // g >= 4 or g == 1))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, + projected time embedding, GroupNorm-SiLU-conv, + skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (improved-diffusion)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]  # emb is already SiLU-activated
        h = self.conv2(self.act(self.norm2(h)))
        return self.skip(x) + h


class ResUNet(nn.Module):
    """Residual UNet: ``res_blocks`` blocks per level down, one more up (for the extra skip)."""

    def __init__(self, image_shape: tuple[int, int, int], channels: tuple[int, ...] = (32, 64, 128),
                 num_classes: int = 0, res_blocks: int = 1) -> None:
        super().__init__()
        check_size("resnet", channels, image_shape)
        in_ch = image_shape[0]
        self.num_classes = num_classes
        self.base = channels[0]
        emb_dim = 4 * channels[0]
        self.time_mlp = nn.Sequential(nn.Linear(channels[0], emb_dim), nn.SiLU(),
                                      nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.stem = nn.Conv2d(in_ch, channels[0], 3, padding=1)

        # Down path: remember the width of every tensor pushed as a skip.
        self.down = nn.ModuleList()
        skip_widths = [channels[0]]
        width = channels[0]
        for level, ch in enumerate(channels):
            for _ in range(res_blocks):
                self.down.append(ResBlock(width, ch, emb_dim))
                width = ch
                skip_widths.append(width)
            if level < len(channels) - 1:
                self.down.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
                skip_widths.append(width)
        self.mid = nn.ModuleList([ResBlock(width, width, emb_dim), ResBlock(width, width, emb_dim)])

        # Up path: each block consumes one skip; each level but the top ends by upsampling.
        self.up = nn.ModuleList()
        for level, ch in reversed(list(enumerate(channels))):
            for _ in range(res_blocks + 1):
                self.up.append(ResBlock(width + skip_widths.pop(), ch, emb_dim))
                width = ch
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(width, width, 3, padding=1)))
        self.out = nn.Sequential(nn.GroupNorm(_groups(width), width), nn.SiLU(),
                                 nn.Conv2d(width, in_ch, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
                ) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base))
        if self.label_emb is not None:
            emb = emb + self.label_emb(_labels(y, t, self.null_label))
        emb = nn.functional.silu(emb)
        h = self.stem(x_t)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.out(h)


def _labels(y: torch.Tensor | None, t: torch.Tensor, null_label: int) -> torch.Tensor:
    """The labels to embed: y, or the null label for every image when y is None."""
    if y is None:
        return torch.full_like(t, null_label, dtype=torch.long)
    return y.long()


ARCHS = {"reference": ReferenceUNet, "resnet": ResUNet}
