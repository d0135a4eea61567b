"""Batches and the seeded draws made on stored images: the order in which a training split's rows
are drawn, a random crop of each image of a batch, and Bernoulli targets binarised by a seed.

``epoch_batches`` shuffles each epoch with a permutation that depends only on (seed, epoch), so a
resumed run draws exactly the batches an uninterrupted one would, with no sampler state to save;
under several processes each takes its own shard of every epoch. ``random_crop`` shifts each
image of a batch ([-1, 1] floats) by an offset drawn from the loop's generator;
``bernoulli_targets`` turns stored grey levels into the [0, 1] targets of a Bernoulli likelihood,
optionally binarised once with a fixed seed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genlab.images import to_float, to_unit


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> list[torch.Tensor]:
    """Index batches of one epoch: a permutation seeded by (seed, epoch), sharded across ranks.

    Depending only on (seed, epoch) makes a resumed run draw exactly the batches it would have
    drawn uninterrupted, with no sampler state to save.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    if world_size > 1:
        perm = perm[: n - n % world_size][rank::world_size]
    return list(perm.split(batch_size))


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    """The batches of one epoch of ``epoch_batches`` on each process (the last may be short)."""
    return math.ceil((n // world_size if world_size > 1 else n) / batch_size)


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Random-crop augmentation: each image (B, C, H, W) padded by ``padding`` pixels on every
    side, its edge pixels repeated, then cropped back to H x W at an offset drawn with ``gen``
    (uniform in 0..2 * padding per axis): a random shift of up to ``padding`` pixels each way, as
    the standard CIFAR crop, without the black borders of zero padding."""
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=gen, device=x.device)
    padded = F.pad(x, (padding, padding, padding, padding), mode="replicate")
    rows = offsets[0][:, None] + torch.arange(h, device=x.device)      # (B, H) padded row index
    cols = offsets[1][:, None] + torch.arange(w, device=x.device)      # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def bernoulli_targets(images: torch.Tensor, binarize: bool, seed: int = 0) -> torch.Tensor:
    """uint8 images -> Bernoulli targets in [0, 1] for a VAE likelihood: the grey levels, or one
    fixed binarisation drawn with ``seed`` (every evaluation then scores the same binary set)."""
    x01 = to_unit(to_float(images))
    if binarize:
        x01 = torch.bernoulli(x01, generator=torch.Generator().manual_seed(seed))
    return x01
