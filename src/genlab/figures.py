"""``plot(run_dir, kind)``: the figures that explain a run, written into run_dir/figures/<kind>.png.

Each family registers its figure kinds in FIGURES; ``default_kinds`` says which apply to a run
(the 2-D latent scatter needs z = 2, t-SNE is for z > 2).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab import checkpoint, data, plots
from genlab.checkpoint import Run, pick_device
from genlab.diffusion import SCHEDULES, NoiseSchedule
from genlab.errors import ConfigError
from genlab.samplers import (
    bm3d_available,
    class_cycle,
    denoise,
    denoise_classical,
    generate_ddpm,
    sample_ddpm,
    sample_gan,
    sample_vae,
)


def display_examples(split_data: data.ImageData, count: int = 10) -> torch.Tensor:
    """Indices of fixed examples to show: the first image of each class, then the next ones."""
    labels = split_data.labels
    firsts = [int((labels == c).nonzero()[0]) for c in range(len(split_data.classes))
              if (labels == c).any()]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return torch.tensor((firsts + rest)[:count])


@torch.no_grad()
def encode_means(net: torch.nn.Module, x01: torch.Tensor, batch_size: int = 2000) -> np.ndarray:
    device = next(net.parameters()).device
    return torch.cat([net.encode(b.to(device))[0].float().cpu()
                      for b in x01.split(batch_size)]).numpy()


@torch.no_grad()
def vae_reconstruct(net: torch.nn.Module, x01: torch.Tensor) -> torch.Tensor:
    """Bernoulli means decoded from the posterior means, as uint8 images."""
    device = next(net.parameters()).device
    logits, _, _ = net(x01.to(device))
    return data.to_uint8(torch.sigmoid(logits.float()).cpu() * 2 - 1)


def _load_split(run: Run, split: str) -> data.ImageData:
    cfg = run.config
    return data.load(cfg.dataset, split, cfg.data_dir, cfg.download)


# --- VAE -----------------------------------------------------------------------------------------


def _vae_reconstructions(run: Run, out: Path, split: str = "test", **_: Any) -> Path:
    split_data = _load_split(run, split)
    idx = display_examples(split_data)
    x01 = data.bernoulli_targets(split_data.images, run.config.binarize)[idx]
    rows = [("original", data.to_uint8(x01 * 2 - 1)),
            (f"z = {run.config.latent_dim}", vae_reconstruct(run.model, x01))]  # type: ignore[attr-defined]
    return plots.save_rows(rows, out, title=f"originals vs reconstructions ({split} split)")


def _vae_latent(run: Run, out: Path, split: str = "test", **_: Any) -> Path:
    if run.config.latent_dim != 2:  # type: ignore[attr-defined]
        raise ConfigError(f"the latent scatter needs latent_dim 2, this run has "
                          f"{run.config.latent_dim}; use the 'tsne' figure")  # type: ignore[attr-defined]
    split_data = _load_split(run, split)
    mu = encode_means(run.model, data.bernoulli_targets(split_data.images, run.config.binarize))
    return plots.save_scatter(mu, split_data.labels.numpy(), out,
                              f"latent means of the {split} split ({len(mu)} images)",
                              "z[0] (posterior mean)", "z[1] (posterior mean)", split_data.classes)


def tsne_embed(points: np.ndarray, seed: int = 0, n_jobs: int = 2) -> np.ndarray:
    """2-D t-SNE of ``points`` with openTSNE (FFT-accelerated), scikit-learn as fallback."""
    try:
        from openTSNE import TSNE
    except ImportError:
        from sklearn.manifold import TSNE as SkTSNE

        return SkTSNE(n_components=2, random_state=seed, init="pca").fit_transform(points)
    # Measured on the 60k MNIST train latents (16-d), 2 cores: exact neighbours take 8 s where
    # Annoy's approximate ones take 36 s; two grid intervals per unit halve the FFT phase
    # (92 s -> 49 s) with no visible change to the map. Barnes-Hut wins below ~10k points.
    method = "bh" if len(points) < 10_000 else "fft"
    return np.asarray(TSNE(n_jobs=n_jobs, random_state=seed, negative_gradient_method=method,
                           neighbors="exact" if len(points) <= 100_000 else "auto",
                           ints_in_interval=2, verbose=False).fit(points.astype(np.float32)))


def _vae_tsne(run: Run, out: Path, split: str = "test", num_images: int | None = None,
              **_: Any) -> Path:
    split_data = _load_split(run, split)
    x01 = data.bernoulli_targets(split_data.images, run.config.binarize)
    labels = split_data.labels.numpy()
    if num_images:
        x01, labels = x01[:num_images], labels[:num_images]
    mu = encode_means(run.model, x01)
    start = time.perf_counter()
    emb = tsne_embed(mu)
    seconds = time.perf_counter() - start
    z = run.config.latent_dim  # type: ignore[attr-defined]
    return plots.save_scatter(emb, labels, out,
                              f"t-SNE of {z}-d latent means, {split} split ({len(mu)} images, "
                              f"{seconds:.0f} s)", "t-SNE 1", "t-SNE 2", split_data.classes)


def _vae_samples(run: Run, out: Path, seed: int = 0, **_: Any) -> Path:
    gen = torch.Generator(device=next(run.model.parameters()).device).manual_seed(seed)
    images = sample_vae(run.model, 64, gen)
    return plots.save_grid(data.to_uint8(images), out, nrow=8)


def _vae_manifold(run: Run, out: Path, size: int = 15, **_: Any) -> Path:
    """Decoded means over a grid of z at evenly spaced quantiles of N(0, 1) (Kingma & Welling,
    fig. 4), so that the grid covers the prior's mass rather than a fixed box."""
    if run.config.latent_dim != 2:  # type: ignore[attr-defined]
        raise ConfigError("the manifold figure needs latent_dim 2")
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, size))
    # Row r shows z[1] = q[size-1-r] (top is high), column c shows z[0] = q[c].
    z = torch.stack([q.repeat(size), q.flip(0).repeat_interleave(size)], dim=1)
    images = sample_vae(run.model, z.shape[0], z=z)
    return plots.save_grid(data.to_uint8(images), out, nrow=size)


def _curves(run: Run, out: Path, **_: Any) -> Path:
    log = checkpoint.read_log(run.run_dir)
    if not log:
        raise ConfigError(f"{run.run_dir}/log.jsonl is empty; nothing to plot")
    keys = [k for k in log[-1] if k not in ("step", "epoch", "lr", "images_per_s", "train_seconds")]
    series = {k: ([r["step"] for r in log if k in r], [r[k] for r in log if k in r]) for k in keys}
    panels = [[k] for k in keys if k != "loss"] or [["loss"]]
    return plots.save_curves(series, out, f"training curves: {run.run_dir.name}", panels=panels)


# --- GAN -----------------------------------------------------------------------------------------


def _gan_fixed_noisy(run: Run, split: str, count: int, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` clean test images and their fixed noisy copies (as evaluate scores)."""
    from genlab.corruption import NOISY_TEST_SEED, fixed_noisy

    cfg = run.config
    clean = _load_split(run, split).images[:count]
    return clean, fixed_noisy(clean, cfg.noise, cfg.peak, cfg.sigma, NOISY_TEST_SEED + seed)  # type: ignore[attr-defined]


def _gan_check_denoiser(run: Run, kind: str) -> None:
    if run.config.mode != "denoise":  # type: ignore[attr-defined]
        raise ConfigError(f"the {kind!r} figure is for denoiser runs; this run generates")


def _gan_noisy(run: Run, out: Path, split: str = "test", seed: int = 0, **_: Any) -> Path:
    """Five clean faces above their noisy versions."""
    _gan_check_denoiser(run, "noisy")
    from genlab.corruption import noise_label

    clean, noisy = _gan_fixed_noisy(run, split, 5, seed)
    cfg = run.config
    return plots.save_rows([("clean", clean), ("noisy", noisy)], out,
                           title=f"{noise_label(cfg.noise, cfg.peak, cfg.sigma)} ({split} split)")  # type: ignore[attr-defined]


def _gan_denoised(run: Run, out: Path, split: str = "test", seed: int = 0, count: int = 8,
                  **_: Any) -> Path:
    """Rows clean / noisy / this GAN / NLM / BM3D (when installed) on the same test images."""
    _gan_check_denoiser(run, "denoised")
    cfg = run.config
    clean, noisy = _gan_fixed_noisy(run, split, count, seed)
    x0_hat = data.to_uint8(denoise(run.model, data.to_float(noisy)).cpu())
    rows = [("clean", clean), ("noisy", noisy), (f"GAN ({cfg.arch})", x0_hat)]  # type: ignore[attr-defined]
    for method in ("nlm", "bm3d"):
        if method == "bm3d" and not bm3d_available(clean.shape):
            continue
        est = denoise_classical(noisy, method, cfg.noise, cfg.peak, cfg.sigma)  # type: ignore[attr-defined]
        label = method.upper() + (" + Anscombe" if cfg.noise == "poisson" else "")  # type: ignore[attr-defined]
        rows.append((label, est.round().to(torch.uint8)))
    return plots.save_rows(rows, out, title=f"denoising, {split} split")


def _gan_samples(run: Run, out: Path, seed: int = 0, **_: Any) -> Path:
    if run.config.mode != "generate":  # type: ignore[attr-defined]
        raise ConfigError("the 'samples' figure is for 'generate' runs; a denoiser has the "
                          "'denoised' figure")
    gen = torch.Generator(device=next(run.model.parameters()).device).manual_seed(seed)
    return plots.save_grid(data.to_uint8(sample_gan(run.model, 64, gen).cpu()), out, nrow=8)


def _gan_curves(run: Run, out: Path, **_: Any) -> Path:
    """D(x) and D(G(.)) together, then each loss term."""
    log = checkpoint.read_log(run.run_dir)
    if not log:
        raise ConfigError(f"{run.run_dir}/log.jsonl is empty; nothing to plot")
    keys = [k for k in ("d_real", "d_fake", "d_loss", "g_adv", "l1", "loss") if k in log[-1]]
    series = {k: ([r["step"] for r in log if k in r], [r[k] for r in log if k in r]) for k in keys}
    panels = [[k for k in ("d_real", "d_fake") if k in series]]
    panels = [p for p in panels if p] + [[k] for k in ("d_loss", "g_adv", "l1") if k in series]
    return plots.save_curves(series, out, f"training curves: {run.run_dir.name}",
                             panels=panels or [["loss"]])


def gan_kinds(run: Run) -> list[str]:
    """The figure kinds of a GAN run: the denoiser's, or the generator's."""
    if run.config.mode == "generate":  # type: ignore[attr-defined]
        return ["samples", "curves"]
    return ["noisy", "denoised", "curves"]


# --- DDPM ----------------------------------------------------------------------------------------


def _schedule(run: Run) -> NoiseSchedule:
    return NoiseSchedule(run.config.schedule, run.config.num_steps,  # type: ignore[attr-defined]
                         next(run.model.parameters()).device)


def forward_timesteps(num_steps: int, count: int = 6) -> list[int]:
    """``count`` timesteps from 0 (clean) to T-1 (the last, noisiest), evenly spaced."""
    return torch.linspace(0, num_steps - 1, count).round().long().tolist()


def _ddpm_forward(run: Run, out: Path, split: str = "test", seed: int = 0, **_: Any) -> Path:
    """q(x_t | x_0) for eight test images at six timesteps from 0 to T, one row per t; the title
    prints alpha_bar_T, which the reference schedule leaves far from 0."""
    split_data = _load_split(run, split)
    x0 = data.to_float(split_data.images[display_examples(split_data, 8)])
    schedule = NoiseSchedule(run.config.schedule, run.config.num_steps)  # type: ignore[attr-defined]
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(x0.shape, generator=gen)  # one noise draw, so rows differ only in t
    rows = []
    for t in forward_timesteps(schedule.num_steps):
        x_t = schedule.q_sample(x0, t, eps)
        rows.append((f"t = {t + 1}\nabar = {schedule.alpha_bar[t].item():.3g}", data.to_uint8(x_t)))
    title = (f"forward process q(x_t | x_0), {schedule.name} schedule, T = {schedule.num_steps}: "
             f"alpha_bar_T = {schedule.alpha_bar[-1].item():.2e}")
    return plots.save_rows([("x_0", data.to_uint8(x0)), *rows[1:]], out, title=title)


def _ddpm_snr(run: Run, out: Path, **_: Any) -> Path:
    """alpha_bar_t and the signal-to-noise ratio alpha_bar / (1 - alpha_bar) over t / T for the
    three schedules at this run's T, side by side."""
    num_steps = run.config.num_steps  # type: ignore[attr-defined]
    series: dict[str, tuple[list[float], list[float]]] = {}
    for name in SCHEDULES:
        try:
            sched = NoiseSchedule(name, num_steps)
        except ConfigError:  # linear-scaled is undefined for T <= 20
            continue
        x = [(t + 1) / num_steps for t in range(num_steps)]
        series[f"alpha_bar, {name}"] = (x, sched.alpha_bar.tolist())
        series[f"SNR, {name}"] = (x, sched.snr.clamp_min(1e-12).tolist())
    names = [n for n in series if n.startswith("SNR")]
    return plots.save_curves(series, out, f"noise schedules at T = {num_steps} (this run: "
                             f"{run.config.schedule})", xlabel="t / T",  # type: ignore[attr-defined]
                             panels=[names], log_y=True)


def _ddpm_progression(run: Run, out: Path, seed: int = 0, count: int = 8, rows: int = 8,
                      **_: Any) -> Path:
    """Ancestral sampling from noise to images: x_t of ``count`` samples every T / ``rows``
    steps (Ho et al. 2020, fig. 6)."""
    schedule = _schedule(run)
    every = max(1, schedule.num_steps // rows)
    snapshots: dict[int, torch.Tensor] = {}
    gen = torch.Generator(device=schedule.device).manual_seed(seed)
    shape = (count, *run.data_info["image_shape"])
    with torch.autocast(schedule.device.type, dtype=torch.bfloat16,
                        enabled=run.config.precision == "bf16"):
        sample_ddpm(run.model, schedule, shape, class_cycle(run.model, count), gen=gen,
                    snapshots=snapshots, snapshot_every=every)
    rows_ = [(f"t = {t}", data.to_uint8(snapshots[t].float())) for t in sorted(snapshots,
                                                                              reverse=True)]
    return plots.save_rows(rows_, out, title=f"DDPM sampling, T = {schedule.num_steps}: x_T "
                                             f"(noise, top) to x_0 (bottom)")


def _ddpm_samples(run: Run, out: Path, seed: int = 0, n: int = 100, steps: int = 50,
                  **_: Any) -> Path:
    """A 10 x 10 gallery of DDIM-50 samples (eta DEFAULT_DDIM_ETA; row-major; conditional runs:
    column = class)."""
    schedule = _schedule(run)
    gen = torch.Generator(device=schedule.device).manual_seed(seed)
    images = generate_ddpm(run.model, schedule, n, tuple(run.data_info["image_shape"]), "ddim",
                           min(steps, schedule.num_steps), y=class_cycle(run.model, n),
                           gen=gen, precision=run.config.precision)
    return plots.save_grid(data.to_uint8(images), out, nrow=10)


FIGURES: dict[str, dict[str, Callable[..., Path]]] = {
    "vae": {
        "reconstructions": _vae_reconstructions,
        "latent": _vae_latent,
        "tsne": _vae_tsne,
        "samples": _vae_samples,
        "manifold": _vae_manifold,
        "curves": _curves,
    },
    "gan": {"noisy": _gan_noisy, "denoised": _gan_denoised, "samples": _gan_samples,
            "curves": _gan_curves},
    "ddpm": {"forward": _ddpm_forward, "snr": _ddpm_snr, "progression": _ddpm_progression,
             "samples": _ddpm_samples, "curves": _curves},
}


def default_kinds(run: Run) -> list[str]:
    """The figure kinds that apply to a run."""
    if run.family == "vae":
        two = run.config.latent_dim == 2  # type: ignore[attr-defined]
        return ["reconstructions", "samples", "curves", *(["latent", "manifold"] if two
                                                          else ["tsne"])]
    if run.family == "gan":
        return gan_kinds(run)
    return list(FIGURES[run.family])


def plot(run_dir: str | Path, kind: str, out: str | Path | None = None, device: str = "auto",
         run: Run | None = None, **options: Any) -> Path:
    """Draw one figure of a run; returns the PNG's path (default run_dir/figures/<kind>.png)."""
    run = run or checkpoint.load_run(run_dir, pick_device(device))
    kinds = FIGURES[run.family]
    if kind not in kinds:
        raise ConfigError(f"unknown figure {kind!r} for a {run.family} run; expected one of "
                          f"{sorted(kinds)}")
    path = Path(out) if out else run.run_dir / "figures" / f"{kind}.png"
    return kinds[kind](run, path, **{k: v for k, v in options.items() if v is not None})


def plot_all(run_dir: str | Path, device: str = "auto", **options: Any) -> list[Path]:
    run = checkpoint.load_run(run_dir, pick_device(device))
    return [plot(run_dir, kind, run=run, **options) for kind in default_kinds(run)]


def sweep_reconstructions(run_dirs: Sequence[str | Path], out: str | Path,
                          split: str = "test") -> Path:
    """The 'comparison of reconstructions' figure: originals, then one row per run (latent size),
    all on the same test images."""
    runs = [checkpoint.load_run(d, pick_device()) for d in run_dirs]
    split_data = _load_split(runs[0], split)
    idx = display_examples(split_data)
    x01 = data.bernoulli_targets(split_data.images, runs[0].config.binarize)[idx]
    rows = [("original", data.to_uint8(x01 * 2 - 1))]
    for run in runs:
        rows.append((f"z = {run.config.latent_dim}", vae_reconstruct(run.model, x01)))  # type: ignore[attr-defined]
    return plots.save_rows(rows, Path(out),
                           title=f"reconstructions by latent size "
                                 f"({runs[0].config.dataset}, {split})")
