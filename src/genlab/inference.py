"""``sample(run_dir, n)``: new images from a trained run, and ``save_samples`` for galleries.

Each family registers a sampler in SAMPLERS: fn(run, n, gen, **options) -> images in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genlab import checkpoint, data, plots
from genlab.checkpoint import Run, pick_device
from genlab.errors import ConfigError
from genlab.samplers import sample_vae


def _sample_vae(run: Run, n: int, gen: torch.Generator, **options: Any) -> torch.Tensor:
    unused = sorted(k for k, v in options.items() if v is not None)
    if unused:
        raise ConfigError(f"sampling a VAE takes no {', '.join(unused)} option")
    return sample_vae(run.model, n, gen)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"vae": _sample_vae}


def sample(run_dir: str | Path | Run, n: int = 64, seed: int = 0, device: str = "auto",
           **options: Any) -> torch.Tensor:
    """``n`` images from the run's latest (EMA, where kept) weights, float in [-1, 1]."""
    if n <= 0:
        raise ConfigError(f"number of samples must be positive, got {n}")
    run = run_dir if isinstance(run_dir, Run) else checkpoint.load_run(run_dir, pick_device(device))
    gen = torch.Generator(device=next(run.model.parameters()).device).manual_seed(seed)
    return SAMPLERS[run.family](run, n, gen, **options).cpu()


def save_samples(images: torch.Tensor, out_dir: str | Path, nrow: int | None = None) -> Path:
    """Write gallery.png (row-major grid) and one PNG per image (0000.png, ...) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    as_uint8 = data.to_uint8(images)
    for i, img in enumerate(as_uint8):
        plots.save_image(img.permute(1, 2, 0).numpy(), out_dir / f"{i:04d}.png")
    nrow = nrow or math.ceil(math.sqrt(len(as_uint8)))
    return plots.save_grid(as_uint8, out_dir / "gallery.png", nrow=nrow)
