"""A small CNN classifier whose penultimate layer is the feature space of genlab's offline
FID/KID-style scores (the role Inception-v3 plays in the standard FID, trained here on the
dataset's own labelled train split, so that no download is needed).

Inputs are float (B, C, H, W) in [-1, 1] of any size; two conv stages, then adaptive pooling to
a 2x2 grid, so 8x8 digits, 28x28 MNIST, 32x32 CIFAR-10 and 48x48 FER2013 share one network.
"""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """conv-conv-pool, conv-conv-pool(2x2), fc -> ``feature_dim`` features (ReLU), fc -> logits."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, int] = (32, 64),
                 feature_dim: int = 128) -> None:
        super().__init__()
        a, b = widths
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, a, 3, padding=1), nn.ReLU(),
            nn.Conv2d(a, a, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(a, b, 3, padding=1), nn.ReLU(),
            nn.Conv2d(b, b, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(4 * b, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)
        self.num_features = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, feature_dim) penultimate activations."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> class logits (B, num_classes)."""
        return self.head(self.body(x))


class Features(nn.Module):
    """The classifier seen as a feature extractor (``forward`` = features), in the form that
    torchmetrics' FID/KID accept as ``feature=``: a module with an integer ``num_features``."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float())

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """(B, num_features) features -> (B,) predicted classes."""
        return self.classifier.head(features).argmax(1)


class ChannelStack(nn.Module):
    """A grey-image feature network read on each channel of a stacked image (Stacked MNIST: one
    MNIST digit per RGB channel), as Unrolled GAN, VEEGAN and PacGAN classify each channel with
    an MNIST classifier. The features are the channels' features side by side (C * D); the
    predicted class is the image's mode: the channels' classes read as the digits of a number in
    base ``num_classes``, the first channel the most significant."""

    def __init__(self, per_channel: Features, channels: int, num_classes: int) -> None:
        super().__init__()
        self.per_channel = per_channel
        self.channels, self.num_classes = channels, num_classes
        self.num_features = channels * per_channel.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, C * D): each channel's features, in channel order."""
        b, c, h, w = x.shape
        if c != self.channels:
            raise ValueError(f"expected {self.channels}-channel images, got {c} channels")
        return self.per_channel(x.reshape(b * c, 1, h, w)).reshape(b, -1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C * D) features -> (B,) modes in 0..num_classes**C - 1."""
        b = features.shape[0]
        digits = self.per_channel.classify(features.reshape(b * self.channels, -1))
        place = self.num_classes ** torch.arange(self.channels - 1, -1, -1,
                                                 device=features.device)
        return (digits.reshape(b, self.channels) * place).sum(1)
