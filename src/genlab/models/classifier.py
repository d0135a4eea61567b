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
