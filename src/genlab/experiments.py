"""Multi-run experiments built from the verbs: the VAE latent sweep and the offline demo."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from genlab import figures, report
from genlab.config import BaseConfig, make_config, replace
from genlab.errors import ConfigError
from genlab.evaluate import evaluate
from genlab.train import train as train_loop


def train(config: BaseConfig | None = None, resume: str | Path | None = None,
          plot: bool = True, progress: bool = True, **overrides: Any) -> Path:
    """Train (or resume) a run, then draw its figures; returns the run folder."""
    run_dir = train_loop(config, resume=resume, progress=progress, **overrides)
    if plot and os.environ.get("RANK", "0") == "0":  # one process draws, under torchrun/accelerate
        figures.plot_all(run_dir)
    return run_dir


def sweep(latent_dims: Sequence[int] = (2, 4, 16), config: BaseConfig | None = None,
          out: str | Path | None = None, run_evaluate: bool = True, progress: bool = True,
          **overrides: Any) -> tuple[list[Path], Path]:
    """One VAE run per latent size under ``out``/z<d>, each evaluated and plotted, plus the
    comparison-of-reconstructions figure ``out``/reconstructions_by_latent_dim.png."""
    if not latent_dims:
        raise ConfigError("latent_dims is empty")
    base = config or make_config("vae")
    if base.family != "vae":  # type: ignore[attr-defined]
        raise ConfigError("the latent sweep is defined for the vae family")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(out or base.run_dir or f"runs/sweep-vae-{base.dataset}-{stamp}")
    run_dirs = []
    for d in latent_dims:
        cfg = replace(base, latent_dim=int(d), run_dir=str(out / f"z{d}"), **overrides)
        run_dirs.append(train(cfg, progress=progress))
        if run_evaluate:
            evaluate(run_dirs[-1])
    fig = figures.sweep_reconstructions(run_dirs, out / "reconstructions_by_latent_dim.png")
    return run_dirs, fig


def _demo_vae(out: Path) -> tuple[list[Path], list[tuple[str, Path]]]:
    """The VAE experiment on the 8x8 digits: the z = 2, 4, 16 sweep (default preset) and the
    reference preset at z = 2 for comparison."""
    common = dict(dataset="digits", epochs=60, log_every=10, checkpoint_every=10_000)
    runs, fig = sweep((2, 4, 16), make_config("vae", "default", **common), out / "vae-sweep",
                      progress=False)
    ref = train(make_config("vae", "reference", run_dir=str(out / "vae-reference-z2"), **common),
                progress=False)
    evaluate(ref)
    return [*runs, ref], [("VAE reconstructions by latent size (default preset)", fig)]


def _demo_gan(out: Path) -> tuple[list[Path], list[tuple[str, Path]]]:
    """The GAN denoiser on the 8x8 digits at a low light level (peak 10 photons): the small UNet
    against a reference-style discriminator (a PatchGAN needs 12x12 and more), scored against
    the noisy input and non-local means (BM3D needs larger images)."""
    cfg = make_config("gan", "default", dataset="digits", peak=10.0, width=8, disc="reference",
                      steps=200, batch_size=64, log_every=20, checkpoint_every=10_000,
                      run_dir=str(out / "gan-denoise-peak10"))
    run_dir = train(cfg, progress=False)
    evaluate(run_dir)
    return [run_dir], []


def _demo_ddpm(out: Path) -> tuple[list[Path], list[tuple[str, Path]]]:
    """The diffusion model on the 8x8 digits: a small residual UNet, T = 200 cosine steps, then
    the offline FID/KID of DDIM-50 and DDPM-200 samples (feature classifier trained once, cached)
    and the forward-process, SNR, progression and gallery figures."""
    cfg = make_config("ddpm", "default", dataset="digits", channels=(16, 32), num_steps=200,
                      steps=600, batch_size=64, lr=1e-3, warmup_steps=50, ema_decay=0.995,
                      num_threads=1,  # tiny 8x8 tensors: one thread beats two that wait
                      log_every=20, checkpoint_every=10_000, run_dir=str(out / "ddpm"))
    run_dir = train(cfg, progress=False)
    evaluate(run_dir, num_samples=300, ddpm_samples=50, feature_steps=400)
    return [run_dir], []


DEMO_PARTS: list[Callable[[Path], tuple[list[Path], list[tuple[str, Path]]]]] = [_demo_vae,
                                                                               _demo_gan,
                                                                               _demo_ddpm]


def demo(out: str | Path | None = None) -> Path:
    """Run every family's short experiment on the embedded digits (no files, no network) and
    write out/report.html linking every figure and metric. Without ``out``: runs/demo, or
    runs/demo-<time> when an earlier demo is there."""
    if out is None:
        out = Path("runs/demo")
        if out.exists():
            out = Path(f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} already exists and is not empty; pass another --out")
    run_dirs: list[Path] = []
    extra: list[tuple[str, Path]] = []
    for part in DEMO_PARTS:
        runs, figs = part(out)
        run_dirs += runs
        extra += figs
    return report.report(run_dirs, out / "report.html", title="genlab demo (digits)",
                         extra_figures=extra)
