"""``sample(run_dir, n)``: new images from a trained run with its recipe's sampler (options from
the recipe's ``sample_options``), ``save_samples`` for galleries, and ``denoise_files`` for the
families that map images to images (through their recipe's ``image_to_image``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from genlab import data, images, plots, recipes
from genlab.checkpoint import Run, pick_device
from genlab.errors import ConfigError, DataError, RunError
from genlab.hardware import shares_cores
from genlab.images import to_uint8
from genlab.recipes.base import ImageToImage


@dataclass(frozen=True)
class DenoiseOptions:
    """The options of ``genlab denoise`` that every image-to-image family takes (the CLI's flags
    are made from these fields and their docstrings: every default is written here once); the
    noise of ``add_noise`` has the family's own options (``ImageToImage.noise_options``)."""

    clean: tuple[str, ...] | None = None
    """clean reference(s), one per input in the same order: prints PSNR/SSIM"""
    add_noise: bool = False
    """corrupt each input with the run's noise model first and score against the original (also
    writes <name>_noisy.png)"""
    seed: int = 0
    """seed of --add-noise"""
    device: str = "auto"
    """auto, cpu or cuda"""
    step: int | None = None
    """use the checkpoint of this step (--keep-checkpoints sets how many a run keeps)"""
    precision: Literal["fp32", "bf16"] = "fp32"
    """fp32, or bf16 autocast (faster on CPUs with AVX512-BF16/AMX and recent GPUs)"""


def load_denoiser(run_dir: str | Path | Run, device: str = "auto",
                  step: int | None = None) -> Run:
    """A run whose model maps images to images (its recipe has ``image_to_image``), else a
    one-line RunError naming the families that do."""
    run = (run_dir if isinstance(run_dir, Run)
           else recipes.load_run(run_dir, pick_device(device), step))
    _image_to_image(run)
    return run


def _image_to_image(run: Run) -> ImageToImage:
    """The run's image-to-image capability, or a one-line RunError naming the families that have
    one."""
    capability = recipes.get(run.family).image_to_image
    if capability is not None:
        return capability
    denoisers = recipes.image_to_image_families()
    if not denoisers:
        raise RunError(f"{run.run_dir} is a {run.family} run, not a denoiser; no family of this "
                       f"genlab maps images to images")
    raise RunError(f"{run.run_dir} is a {run.family} run, not a denoiser (the families that map "
                   f"images to images: {', '.join(denoisers)}); train one with `genlab train "
                   f"{denoisers[0]}`")


def _write_png(arr: np.ndarray, path: Path) -> Path:
    """PNG at the input's depth: 16-bit grey stays 16-bit; RGB is written as 8 bits (PIL cannot
    write 48-bit RGB)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.dtype == np.uint16 and arr.shape[2] == 1:
        Image.fromarray(arr[:, :, 0]).save(path)
        return path
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float64) / 257.0).round().astype(np.uint8)
    return plots.save_image(arr, path)


@shares_cores
def denoise_files(run_dir: str | Path | Run, inputs: Sequence[str | Path], out_dir: str | Path,
                  **options: Any) -> list[dict[str, Any]]:
    """Denoise image files of any size, grey or RGB (per channel), 8- or 16-bit, into
    ``out_dir``/<name>.png with the run's recipe (``image_to_image``); returns one record per
    image (paths, size, and PSNR/SSIM in dB against ``clean`` references, given in the same
    order as ``inputs``). ``options`` are the fields of DenoiseOptions and of the family's noise
    options (a name neither takes is refused).

    ``add_noise`` first corrupts each input with the run's noise model (the noise options
    override its level) and scores against the original: a quick way to try the denoiser on
    clean pictures. ``precision='bf16'`` denoises under bf16 autocast (faster on CPUs with
    AVX512-BF16/AMX and on recent GPUs).
    """
    from genlab.metrics import psnr, ssim, ssim_window

    names = {f.name for f in fields(DenoiseOptions)}
    opts = DenoiseOptions(**{k: v for k, v in options.items() if k in names})
    run = load_denoiser(run_dir, opts.device, opts.step)
    capability = _image_to_image(run)
    noise_given = {k: v for k, v in options.items() if k not in names and v is not None}
    noise = recipes.verb_options(run.family, "denoise", noise_given)
    clean = opts.clean
    if clean is not None and len(clean) != len(inputs):
        raise ConfigError(f"{len(clean)} --clean reference(s) for {len(inputs)} input(s); give "
                          "one per input, in the same order")
    if opts.add_noise and clean is not None:
        raise ConfigError("--add-noise scores against the input itself; drop --clean")
    if not opts.add_noise and noise_given:
        flags = " and ".join("--" + k.replace("_", "-") for k in noise_given)
        raise ConfigError(f"{flags} set{'s' if len(noise_given) == 1 else ''} the noise that "
                          "--add-noise adds; the inputs are denoised as they are without it")
    out_dir = Path(out_dir)
    gen = torch.Generator().manual_seed(opts.seed)
    min_side = capability.min_size(run)
    records = []
    for i, path in enumerate(inputs):
        path = Path(path)
        arr = data.read_image(path)                                   # (H, W, C)
        h, w = arr.shape[:2]
        if min(h, w) < min_side:
            raise DataError(f"{path}: image is {w}x{h}; this denoiser needs at least "
                            f"{min_side}x{min_side} pixels (its receptive field)")
        x, depth = images.from_array(arr)                             # (C, H, W) in [-1, 1]
        reference = None
        if clean is not None:
            ref_arr = data.read_image(clean[i])
            if ref_arr.shape != arr.shape:
                raise DataError(f"{clean[i]}: shape {ref_arr.shape} differs from {path}'s "
                                f"{arr.shape} (H, W, C)")
            reference = images.from_array(ref_arr)[0]
        record: dict[str, Any] = {"input": str(path), "size": f"{w}x{h}x{arr.shape[2]}",
                                  "bits": images.bits(depth)}
        if opts.add_noise:  # at the file's depth, rounded to its levels, as <name>_noisy.png
            reference = x
            x = capability.corrupt(run, x, gen, depth, noise)
            noisy_path = _write_png(images.to_array(x, depth), out_dir / f"{path.stem}_noisy.png")
            record["noisy"] = str(noisy_path)
        x0_hat = capability.apply(run, x[None], opts.precision)[0].cpu()
        stored = images.to_array(x0_hat, depth)                  # what <name>.png holds
        record["output"] = str(_write_png(stored, out_dir / f"{path.stem}.png"))
        x0_hat = images.from_array(stored)[0]  # scored as written: rounded to the file's depth
        if reference is not None:
            win = ssim_window(reference.shape)
            for name, est in (("noisy", x), ("denoised", x0_hat)):
                record[f"psnr_{name}"] = float(psnr(est[None], reference[None], 2.0))
                record[f"ssim_{name}"] = float(ssim(est[None], reference[None], 2.0, win))
        records.append(record)
    return records


@shares_cores
def sample(run_dir: str | Path | Run, n: int = 64, seed: int = 0, device: str = "auto",
           step: int | None = None, **options: Any) -> torch.Tensor:
    """``n`` images from the run's latest (or checkpoint ``step``'s) weights, the EMA copy where
    kept, float in [-1, 1]; ``options`` are the fields of the family's sample options (a name it
    does not take is refused)."""
    if n <= 0:
        raise ConfigError(f"number of samples must be positive, got {n}")
    run = (run_dir if isinstance(run_dir, Run)
           else recipes.load_run(run_dir, pick_device(device), step))
    recipe = recipes.get(run.family)
    if recipe.sample is None:
        raise RunError(f"{run.run_dir} is a {run.family} run: it draws no images of its own "
                       f"(it maps images to images); use `genlab denoise {run.run_dir} IMAGE ... "
                       f"--out DIR`")
    opts = recipes.verb_options(run.family, "sample", options)
    gen = torch.Generator(device=run.device).manual_seed(seed)
    return recipe.sample(run, n, gen, opts).cpu()


def save_samples(images: torch.Tensor, out_dir: str | Path, nrow: int | None = None) -> Path:
    """Write gallery.png (row-major grid) and one PNG per image (0000.png, ...) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    as_uint8 = to_uint8(images)
    for i, img in enumerate(as_uint8):
        plots.save_image(img.permute(1, 2, 0).numpy(), out_dir / f"{i:04d}.png")
    nrow = nrow or math.ceil(math.sqrt(len(as_uint8)))
    return plots.save_grid(as_uint8, out_dir / "gallery.png", nrow=nrow)
