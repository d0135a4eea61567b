"""Noise models and the Anscombe transform: statistics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlab.corruption import (
    anscombe,
    corrupt,
    fixed_noisy,
    gaussian_noise,
    inverse_anscombe,
    noise_label,
    poisson_noise,
)
from genlab.errors import ConfigError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_poisson_reference_mean_and_variance_equal_the_rate():
    # peak 255 is the reference: the grey level is the rate, so mean = variance = 100.
    x = torch.full((300, 300), 100, dtype=torch.uint8)
    noisy = poisson_noise(x, 255.0, _gen())
    assert noisy.dtype == torch.float32 and noisy.shape == x.shape
    assert torch.equal(noisy, noisy.round())  # counts at peak 255 are whole grey levels
    assert noisy.mean().item() == pytest.approx(100.0, abs=0.15)  # SE 0.033
    assert noisy.var().item() == pytest.approx(100.0, rel=0.02)  # SE 0.5%


def test_poisson_low_light_scales_the_rate_and_back():
    # peak 30: counts ~ Poisson(150 / 255 * 30 = 17.65), grey = counts * 255 / 30, so the mean is
    # still 150 and the variance in grey levels is 150 * 255 / 30 = 1275.
    x = torch.full((300, 300), 150.0)
    noisy = poisson_noise(x, 30.0, _gen(1))
    assert noisy.mean().item() == pytest.approx(150.0, abs=0.5)
    assert noisy.var().item() == pytest.approx(1275.0, rel=0.02)
    steps = torch.unique(noisy) * 30 / 255  # every value is a whole photon count
    assert torch.allclose(steps, steps.round(), atol=1e-4)


def test_poisson_is_clipped_to_255():
    x = torch.full((200, 200), 250.0)
    noisy = poisson_noise(x, 255.0, _gen(2))
    assert noisy.max().item() == 255.0
    # P(Poisson(250) >= 255) is about 0.39; every one of those becomes exactly 255.
    frac = (noisy == 255).float().mean().item()
    assert 0.3 < frac < 0.45
    assert noisy.min().item() >= 0


def test_gaussian_sigma_and_clipping_at_zero():
    x = torch.full((300, 300), 128.0)
    noisy = gaussian_noise(x, 10.0, _gen(3))
    assert noisy.mean().item() == pytest.approx(128.0, abs=0.1)
    assert noisy.std().item() == pytest.approx(10.0, rel=0.01)
    # On black, clipping keeps max(0, sigma * Z): its mean is sigma / sqrt(2 pi) = 3.989.
    dark = gaussian_noise(torch.zeros(300, 300), 10.0, _gen(4))
    assert dark.min().item() == 0.0
    assert dark.mean().item() == pytest.approx(10.0 / math.sqrt(2 * math.pi), abs=0.05)


def test_seeding_is_reproducible():
    x = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    for noise in ("poisson", "gaussian"):
        a = corrupt(x, noise, 30.0, 15.0, _gen(7))
        b = corrupt(x, noise, 30.0, 15.0, _gen(7))
        c = corrupt(x, noise, 30.0, 15.0, _gen(8))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
    assert fixed_noisy(x, seed=5).dtype == torch.uint8  # rounded, as a stored image
    assert torch.equal(fixed_noisy(x, seed=5), fixed_noisy(x, seed=5))
    assert not torch.equal(fixed_noisy(x, seed=5), fixed_noisy(x, seed=6))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_non_positive_noise_levels_are_refused(bad):
    x = torch.zeros(2, 2)
    with pytest.raises(ConfigError, match="peak must be a positive number"):
        poisson_noise(x, bad)
    with pytest.raises(ConfigError, match="sigma must be a positive number"):
        gaussian_noise(x, bad)


def test_unknown_noise_model():
    with pytest.raises(ConfigError, match="unknown noise model 'speckle'"):
        corrupt(torch.zeros(2, 2), "speckle")


def test_noise_label():
    assert noise_label("poisson", 255.0, 25.0) == "poisson-peak255"
    assert noise_label("gaussian", 30.0, 12.5) == "gaussian-sigma12.5"


def test_anscombe_values_and_variance_stabilisation():
    assert anscombe(torch.tensor(0.0)).item() == pytest.approx(2 * math.sqrt(0.375))
    assert float(anscombe(np.array(3.625))) == pytest.approx(4.0)  # 2 * sqrt(3.625 + 0.375)
    # Poisson(20) has variance 20; after the transform the variance is close to 1.
    z = torch.poisson(torch.full((400_000,), 20.0), generator=_gen(9))
    assert anscombe(z).var().item() == pytest.approx(1.0, abs=0.02)


def test_inverse_anscombe_is_unbiased_and_inverts_at_high_counts():
    # Exact unbiasedness: inverse(E[f(Z)]) = lambda for Z ~ Poisson(lambda).
    for lam in (1.0, 5.0, 20.0, 100.0):
        z = torch.poisson(torch.full((1_000_000,), lam, dtype=torch.float64), generator=_gen(10))
        estimate = inverse_anscombe(anscombe(z).mean()).item()
        assert estimate == pytest.approx(lam, abs=0.02 + 0.002 * lam)
    # At high counts the unbiased inverse of f(z) is z + 1/4 (the algebraic inverse gives z):
    # 1/4 (2 sqrt(z + 3/8))^2 - 1/8 = z + 3/8 - 1/8.
    # (plus sqrt(3/2) / (4 y) = 0.0015 at y = 200).
    assert inverse_anscombe(anscombe(np.float64(1e4))) == pytest.approx(1e4 + 0.2515, abs=1e-4)
    # Below the transform of zero counts the unbiased inverse is 0; numpy and torch agree.
    assert inverse_anscombe(torch.tensor([0.0, 1.0, 1.2])).tolist() == [0.0, 0.0, 0.0]
    y = np.linspace(1.3, 30, 50)
    assert np.allclose(inverse_anscombe(y), inverse_anscombe(torch.from_numpy(y)).numpy())
    assert np.all(np.diff(inverse_anscombe(y)) > 0)
