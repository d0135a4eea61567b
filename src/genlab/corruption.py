"""Noise models for the denoiser, and the Anscombe transform of the classical baselines.

Pure, seeded functions on tensors of grey levels (float, uint8 or uint16, any shape) at a white
level ``white`` (255 for 8-bit images, 65535 for 16-bit ones); the caller converts to and from the
model range with ``images.to_depth`` / ``images.to_float``. The noise levels keep their meaning at
every depth: ``peak`` is photons at white, and ``sigma`` is in 8-bit grey levels (sigma / 255 of
white), so a 16-bit image gets the same noise, only not rounded to 256 levels.

The reference notebook corrupts an 8-bit image with ``poisson(x)``: the grey level itself is
the Poisson rate, then the result is clipped to 0..255. genlab generalises this with a photon
level ``peak`` (photons at white): rate = x / 255 * peak, and the counts are scaled back by
255 / peak, so ``peak = 255`` is exactly the reference and lower peaks are darker scenes with
relatively more noise (the variance in grey levels is x * 255 / peak). At 16 bits the rate is
x / 65535 * peak and the counts are scaled by 65535 / peak.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch

from genlab.errors import ConfigError
from genlab.images import WHITE_8

NOISE_MODELS = ("poisson", "gaussian")
REFERENCE_PEAK = 255.0
"""photons at white of the reference notebook's Poisson noise (counts ~ Poisson(x) on 8-bit
grey levels): a photon count that happens to equal 8-bit white, not an image range"""

Array = TypeVar("Array")  # a torch tensor or a numpy array: the Anscombe pair works on both


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"noise level {name} must be a positive number, got {value!r}")


def poisson_noise(x: torch.Tensor, peak: float = REFERENCE_PEAK, gen: torch.Generator | None = None,
                  white: float = WHITE_8) -> torch.Tensor:
    """Poisson (shot) noise: counts ~ Poisson(x / white * peak), back in grey levels, clipped to
    0..white. ``x`` holds grey levels; returns float32 grey levels of the same shape."""
    _check_positive("peak", peak)
    rate = x.to(torch.float32) * (peak / white)
    counts = torch.poisson(rate, generator=gen)
    return (counts * (white / peak)).clamp_(0.0, white)


def gaussian_noise(x: torch.Tensor, sigma: float = 25.0, gen: torch.Generator | None = None,
                   white: float = WHITE_8) -> torch.Tensor:
    """Additive white Gaussian noise with standard deviation ``sigma`` 8-bit grey levels
    (sigma * white / 255 at this depth), clipped to 0..white. Returns float32 grey levels of the
    same shape as ``x``."""
    _check_positive("sigma", sigma)
    x = x.to(torch.float32)
    eps = torch.randn(x.shape, generator=gen, device=x.device, dtype=torch.float32)
    return (x + (sigma * white / WHITE_8) * eps).clamp_(0.0, white)


def corrupt(x: torch.Tensor, noise: str = "poisson", peak: float = REFERENCE_PEAK,
            sigma: float = 25.0, gen: torch.Generator | None = None,
            white: float = WHITE_8) -> torch.Tensor:
    """The noise model named by ``noise`` ('poisson' uses ``peak``, 'gaussian' ``sigma``) on grey
    levels whose white is ``white``."""
    if noise == "poisson":
        return poisson_noise(x, peak, gen, white)
    if noise == "gaussian":
        return gaussian_noise(x, sigma, gen, white)
    raise ConfigError(f"unknown noise model {noise!r}; expected one of {list(NOISE_MODELS)}")


NOISY_TEST_SEED = 20240
"""Seed of the fixed noisy evaluation sets: every method and every run scores the same images."""


def fixed_noisy(x: torch.Tensor, noise: str = "poisson", peak: float = REFERENCE_PEAK,
                sigma: float = 25.0, seed: int = NOISY_TEST_SEED,
                white: float = WHITE_8) -> torch.Tensor:
    """A reproducible noisy copy of a whole split (grey levels whose white is ``white``), rounded
    to the integer type of ``x`` (uint8, or uint16 for 16-bit images) as a stored image: the same
    ``seed`` gives the same noisy images on every machine, so every method is scored on identical
    inputs. Computed on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    return corrupt(x.cpu(), noise, peak, sigma, gen, white).round_().to(x.dtype)


def noise_label(noise: str, peak: float, sigma: float) -> str:
    """A short name of a noise level, for tables and file names: 'poisson-peak255', ..."""
    if noise == "poisson":
        return f"poisson-peak{peak:g}"
    return f"gaussian-sigma{sigma:g}"


# --- Anscombe variance stabilisation (for the Gaussian-noise denoisers NLM and BM3D) ------------


def anscombe(z: Array) -> Array:
    """Anscombe transform 2 sqrt(z + 3/8) (Anscombe 1948): Poisson counts -> values whose noise
    is approximately N(0, 1). ``z`` is in photon counts, not grey levels."""
    return 2.0 * (z + 3.0 / 8.0) ** 0.5  # type: ignore[operator]


ANSCOMBE_OF_ZERO = 2.0 * math.sqrt(3.0 / 8.0)


def inverse_anscombe(y: Array) -> Array:
    """Exact unbiased inverse of the Anscombe transform, in the closed-form approximation of
    Makitalo & Foi (IEEE TIP 2011, eq. 7):

        1/4 y^2 + 1/4 sqrt(3/2) y^-1 - 11/8 y^-2 + 5/8 sqrt(3/2) y^-3 - 1/8.

    Unlike the algebraic inverse (y/2)^2 - 3/8 it is unbiased at low counts. Below
    2 sqrt(3/8), the transform of zero counts (the smallest possible expected value), the
    unbiased inverse is 0; the input is raised to that value and the result floored at 0.
    """
    c = math.sqrt(1.5)
    if isinstance(y, torch.Tensor):
        y = y.clamp(min=ANSCOMBE_OF_ZERO)
    else:
        import numpy as np

        y = np.maximum(y, ANSCOMBE_OF_ZERO)
    z = 0.25 * y**2 + 0.25 * c / y - 11.0 / 8.0 / y**2 + 0.625 * c / y**3 - 0.125  # type: ignore
    if isinstance(z, torch.Tensor):
        return z.clamp(min=0.0)  # type: ignore[return-value]
    import numpy as np

    return np.maximum(z, 0.0)
