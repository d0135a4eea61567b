"""The gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders"): p(x) = prod_i p(x_i | x_<i) over pixels in raster order, and within a pixel over its
channels in the order R, G, B.

Two stacks remove the blind spot of the masked PixelCNN (paper, fig. 1): a vertical stack whose
output at row i sees rows <= i (a (k//2 + 1) x k convolution padded on top), fed to the
horizontal stack shifted down by one row so that row i only receives rows < i; and a horizontal
stack whose output at (i, j) sees columns <= j of row i (a 1 x (k//2 + 1) convolution padded on
the left). At the current pixel the horizontal stack is masked on channel groups: the features
are split into C groups (one per image channel); group c sees the image channels < c of the
current pixel in the first layer (mask A) and the feature groups <= c after it (mask B); the
output logits of channel c come from group c. Each layer is gated, tanh(W_f * x) * sigmoid(W_g *
x) (eq. 2), with a residual connection in the horizontal stack and a 1x1 skip connection to the
output; a class embedding is added to both halves of every gate (eq. 4).

Inputs are images (B, C, H, W) in [-1, 1]; outputs are logits (B, K, C, H, W): K = 256 levels of a
categorical pixel model, or K = 1 logit of a Bernoulli pixel model (binarised images).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import ConfigError


def group_mask(in_channels: int, out_channels: int, groups: int, in_groups_of: int,
               out_groups_of: int, strict: bool) -> torch.Tensor:
    """(out, in) mask over channels at the current pixel: output channel o (group
    (o % out_groups_of) * groups // out_groups_of) may read input channel i of group
    (i % in_groups_of) * groups // in_groups_of when that group is < (``strict``: mask A) or
    <= (mask B) its own."""
    g_in = (torch.arange(in_channels) % in_groups_of) * groups // in_groups_of
    g_out = (torch.arange(out_channels) % out_groups_of) * groups // out_groups_of
    allowed = g_in[None, :] < g_out[:, None] if strict else g_in[None, :] <= g_out[:, None]
    return allowed.float()


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel's last column (the current pixel, for the horizontal stack's
    left-padded 1 x n kernels and for 1 x 1 kernels) is masked on channel groups."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 center: torch.Tensor) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        mask = torch.ones_like(self.weight)
        mask[:, :, -1, -1] = center                          # (out, in) at the current pixel
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias)


def gate(h: torch.Tensor) -> torch.Tensor:
    """tanh(f) * sigmoid(g) over the two halves of the channels (paper, eq. 2)."""
    f, g = h.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


def down_shift(v: torch.Tensor) -> torch.Tensor:
    """Move a feature map down by one row (zeros on top): row i then holds row i - 1."""
    return F.pad(v, (0, 0, 1, 0))[:, :, :-1]


class GatedLayer(nn.Module):
    """One gated layer of both stacks (paper, fig. 2), with kernel size k."""

    def __init__(self, in_channels: int, width: int, k: int, groups: int, first: bool,
                 num_classes: int) -> None:
        super().__init__()
        self.first, self.k = first, k
        # groups of the input channels: image channels in the first layer, features after it
        in_groups_of = in_channels if first else width
        self.v_conv = nn.Conv2d(in_channels, 2 * width, (k // 2 + 1, k))
        self.v_to_h = nn.Conv2d(2 * width, 2 * width, 1)    # rows above: every group may read
        self.h_conv = MaskedConv2d(in_channels, 2 * width, (1, k // 2 + 1),
                                   group_mask(in_channels, 2 * width, groups, in_groups_of,
                                              width, strict=first))
        self.h_out = MaskedConv2d(width, width, (1, 1),
                                  group_mask(width, width, groups, width, width, strict=False))
        self.skip = MaskedConv2d(width, width, (1, 1),
                                 group_mask(width, width, groups, width, width, strict=False))
        self.embed = nn.Embedding(num_classes, 2 * width) if num_classes else None

    def forward(self, v: torch.Tensor, h: torch.Tensor, y: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = self.k
        v_pre = self.v_conv(F.pad(v, (k // 2, k // 2, k // 2, 0)))  # rows <= i, (B, 2W, H, W)
        h_pre = self.h_conv(F.pad(h, (k // 2, 0, 0, 0)))            # columns <= j of row i
        h_pre = h_pre + self.v_to_h(down_shift(v_pre))              # rows < i only
        if self.embed is not None and y is not None:
            cond = self.embed(y)[:, :, None, None]                   # (B, 2W, 1, 1)
            v_pre, h_pre = v_pre + cond, h_pre + cond
        v_new, gated = gate(v_pre), gate(h_pre)
        h_new = self.h_out(gated)
        if not self.first:                                           # residual, horizontal only
            h_new = h_new + h
        return v_new, h_new, self.skip(gated)


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN: ``layers`` gated layers (the first with a ``first_kernel`` kernel and mask
    A, the others ``kernel`` and mask B), skip connections summed into two masked 1x1 output
    convolutions; ``levels`` logits per pixel and channel (256: categorical, 1: Bernoulli)."""

    def __init__(self, image_shape: tuple[int, int, int], width: int = 64, layers: int = 8,
                 levels: int = 256, first_kernel: int = 7, kernel: int = 3,
                 num_classes: int = 0) -> None:
        super().__init__()
        channels = image_shape[0]
        if width % channels:
            raise ConfigError(f"width must be a multiple of the image's {channels} channels (one "
                              f"feature group per channel), got {width}")
        if layers < 1:
            raise ConfigError(f"layers must be >= 1, got {layers}")
        for name, k in (("first_kernel", first_kernel), ("kernel", kernel)):
            if k < 1 or k % 2 == 0:
                raise ConfigError(f"{name} must be a positive odd number, got {k}")
        if levels not in (1, 256):
            raise ConfigError(f"levels must be 256 (categorical) or 1 (Bernoulli), got {levels}")
        self.image_shape = tuple(image_shape)
        self.levels, self.num_classes = levels, num_classes
        self.layers = nn.ModuleList(
            [GatedLayer(channels if i == 0 else width, width, first_kernel if i == 0 else kernel,
                        channels, i == 0, num_classes) for i in range(layers)])
        self.out1 = MaskedConv2d(width, width, (1, 1),
                                 group_mask(width, width, channels, width, width, strict=False))
        # output channel c * levels + l is level l of image channel c: group c
        self.out2 = MaskedConv2d(width, channels * levels, (1, 1),
                                 group_mask(width, channels * levels, channels, width,
                                            channels * levels, strict=False))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] (and labels (B,) for a class-conditional net) -> logits
        (B, K, C, H, W)."""
        v, h, skip = x, x, 0.0
        for layer in self.layers:
            v, h, s = layer(v, h, y)
            skip = skip + s
        logits = self.out2(F.relu(self.out1(F.relu(skip))))        # (B, C * K, H, W)
        b, _, height, width = logits.shape
        return logits.view(b, -1, self.levels, height, width).transpose(1, 2)
