"""The conditional denoising GAN (pix2pix, Isola et al. 2017): a generator maps a noisy image
(Poisson or Gaussian corruption, drawn fresh for every batch) to a clean one, judged by a
discriminator on (candidate, noisy) pairs and held to the clean image by an L1 term. Scored by
PSNR/SSIM against the noisy input and classical denoisers (NLM, BM3D) on a fixed noisy test set;
``genlab denoise`` applies it to a user's own images. 16-bit data stays 16-bit: the noise is drawn,
rounded and scored at 65535 levels, with ``peak`` still the photons at white."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import nn

from genlab import data, plots
from genlab.checkpoint import Run
from genlab.config import BaseConfig
from genlab.corruption import (
    NOISY_TEST_SEED,
    REFERENCE_PEAK,
    corrupt,
    fixed_noisy,
    noise_label,
)
from genlab.errors import ConfigError, RunError, TrainingDiverged, on_every_rank
from genlab.images import bits, to_depth, to_float, to_uint8, white_level
from genlab.metrics import psnr, sharpness, ssim, ssim_window
from genlab.models.gan import (
    PatchDiscriminator,
    ReferenceDiscriminator,
    ReferenceGenerator,
    UNetGenerator,
)
from genlab.objectives import gan_d_loss, gan_g_loss
from genlab.recipes.base import (
    DemoRun,
    ImageToImage,
    NoOptions,
    Recipe,
    TrainState,
    adam,
    load_split,
)
from genlab.samplers import BM3D_MIN_SIZE, bm3d_available, denoise, denoise_classical


@dataclass(frozen=True)
class AdversarialConfig(BaseConfig):
    """What both GAN families set alike: the networks' width, the weight of the adversarial
    term, the two Adam optimizers and the divergence check."""

    width: int = 32
    """base channel count of the networks"""
    adv_weight: float = 1.0
    """weight of the adversarial term in the generator's loss (gan: 0 trains the L1-only
    ablation, with no discriminator)"""
    lr_d: float = 1e-4
    """Adam learning rate of the discriminator"""
    beta1: float = 0.5
    """Adam beta1 of both optimizers (0.5 as in pix2pix and DCGAN; the notebook's Keras: 0.9)"""
    max_d_wins: int = 2000
    """stop as diverged after this many consecutive steps with D(x) > 0.99 and D(G(.)) < 0.01"""

    def check(self) -> None:
        if self.width <= 0:
            raise ConfigError(f"width must be positive, got {self.width}")


@dataclass(frozen=True)
class GANConfig(AdversarialConfig):
    """Conditional GAN that denoises: noisy -> clean (pix2pix)."""

    family: Literal["gan"] = "gan"
    """model family"""
    arch: Literal["reference", "unet"] = "unet"
    """generator architecture: the notebook's 'reference' conv net, or a small 'unet'"""
    disc: Literal["reference", "patch"] = "patch"
    """discriminator: the notebook's 'reference' net, or a PatchGAN"""
    noise: Literal["poisson", "gaussian"] = "poisson"
    """corruption model"""
    peak: float = REFERENCE_PEAK
    """Poisson: photons at white (255 = the reference: the 8-bit grey level is the rate; 16-bit
    images get the same photons at white)"""
    sigma: float = 25.0
    """Gaussian: noise standard deviation in 8-bit grey levels (x 257 on 16-bit images)"""
    l1_weight: float = 100.0
    """weight of the L1 reconstruction term in the generator loss (pix2pix lambda)"""

    def check(self) -> None:
        super().check()
        if self.peak <= 0:
            raise ConfigError(f"peak (photons at white) must be positive, got {self.peak}")
        if self.sigma <= 0:
            raise ConfigError(f"sigma (grey levels) must be positive, got {self.sigma}")


GANRun = Run[GANConfig]  # a run of this family, typed by its config


PRESETS = {
    # The notebook's nets and Keras Adam(1e-4) (beta1 = 0.9), trained as a conditional GAN.
    "reference": dict(arch="reference", disc="reference", dataset="fer2013", lr=1e-4, lr_d=1e-4,
                      beta1=0.9, batch_size=64, epochs=50, peak=REFERENCE_PEAK),
    # PSNR-first: pix2pix's adversarial weight (1 per 100 of L1) cost 0.9 dB against the L1-only
    # ablation on FER at peak 255 within the 30-minute budget; at 0.02 the discriminator only
    # nudges textures. `--adv-weight 1` is the sharp pix2pix setting. A constant learning rate and
    # no EMA, by measurement (issue 19): at 10 minutes, Poisson peak 10, a linear decay to zero
    # with the 0.1 power EMA scored 0.49 dB lower on 1,000 test faces (22.43 against 22.92 dB;
    # the raw weights 22.45, so the decay, not the EMA, cost it): the generator is still learning
    # when a decaying rate has already slowed it.
    "default": dict(arch="unet", disc="patch", dataset="fer2013", lr=2e-4, lr_d=2e-4,
                    batch_size=64, epochs=50, peak=REFERENCE_PEAK, adv_weight=0.02),
}

# the fields of genlab <= 0.1's single GAN family that only its 'generate' mode used
_GENERATE_ONLY = ("latent_dim",)
_DENOISE_ONLY = ("arch", "disc", "noise", "peak", "sigma", "l1_weight")


def upgrade(values: dict[str, Any]) -> dict[str, Any]:
    """A config.json of the old single GAN family ('mode' = 'denoise' or 'generate'): the
    denoiser stays here, the generator becomes a 'dcgan' run."""
    if "mode" not in values:
        return values
    values = dict(values)
    mode = values.pop("mode")
    if mode == "generate":
        return {k: v for k, v in values.items() if k not in _DENOISE_ONLY} | {"family": "dcgan"}
    if mode != "denoise":
        raise RunError(f"unknown GAN mode {mode!r} in config.json; expected 'denoise' or "
                       f"'generate'")
    return {k: v for k, v in values.items() if k not in _GENERATE_ONLY}


def build(cfg: GANConfig, image_shape: tuple[int, int, int],
          num_classes: int) -> dict[str, nn.Module]:
    """{'model': generator, 'disc': discriminator}; no 'disc' for the L1-only ablation
    (adv_weight = 0). The 'reference' networks have the notebook's widths (64, 128); 'unet' and
    'patch' use ``cfg.width``."""
    c, h, w = image_shape
    gen: nn.Module = ReferenceGenerator(c) if cfg.arch == "reference" else UNetGenerator(c,
                                                                                         cfg.width)
    if h % gen.stride or w % gen.stride:
        raise ConfigError(f"training images must have height and width divisible by "
                          f"{gen.stride}; got {h}x{w}")
    modules: dict[str, nn.Module] = {"model": gen}
    if cfg.adv_weight > 0:
        if cfg.disc == "reference":
            modules["disc"] = ReferenceDiscriminator(2 * c, (h, w))
        elif min(h, w) < PatchDiscriminator.min_size:
            raise ConfigError(f"the PatchGAN discriminator needs images of at least "
                              f"{PatchDiscriminator.min_size}x{PatchDiscriminator.min_size}; got "
                              f"{h}x{w} (use --disc reference)")
        else:
            modules["disc"] = PatchDiscriminator(2 * c, cfg.width)
    return modules


def setup(cfg: Any, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
    """Adam (beta1 = cfg.beta1) for the generator and, where there is one, the discriminator."""
    betas = (cfg.beta1, 0.999)
    opts = {"model": adam(modules["model"].parameters(), cfg.lr, betas)}
    if "disc" in modules:
        opts["disc"] = adam(modules["disc"].parameters(), cfg.lr_d, betas)
    return opts


D_WINS = (0.99, 0.01)  # D(x) above and D(G(.)) below these: the discriminator wins outright


def adversarial_step(s: TrainState, x0: torch.Tensor | None, x_real: torch.Tensor,
                     inputs: torch.Tensor, cond: torch.Tensor | None, step: int,
                     l1_weight: float, adv_weight: float,
                     labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One discriminator update, then one generator update (pix2pix / DCGAN). ``inputs`` go
    into the generator (noisy images or z) with ``labels`` (a class-conditional DCGAN's, else
    None), ``cond`` to the discriminator (the noisy image, the class labels, or None), ``x0`` is
    the L1 target (None: no L1 term), ``x_real`` the real images D sees."""
    cfg = s.cfg
    net, disc = s.modules["model"], s.modules.get("disc")
    with s.autocast():
        x_fake = net(inputs) if labels is None else net(inputs, labels)
    logs: dict[str, torch.Tensor] = {}
    if disc is not None:
        # 1. discriminator: real pairs against generated ones (x_fake is detached inside)
        with s.autocast():
            d_loss, d_logs = gan_d_loss(disc, x_real, x_fake, cond)
        logs.update(d_logs)
        logs.update(s.update("disc", d_loss, step, "discriminator loss"))
        if s.last_micro_batch:  # counted once per update (under gradient accumulation)
            # over the global batch, so that every process takes the same decision to stop
            d_both = torch.stack([d_logs["d_real"].float(), d_logs["d_fake"].float()])
            d_real, d_fake = s.mean_over_processes(d_both).tolist()
            wins = d_real > D_WINS[0] and d_fake < D_WINS[1]
            s.extra["d_wins"] = s.extra.get("d_wins", 0) + 1 if wins else 0
            if cfg.max_d_wins and s.extra["d_wins"] >= cfg.max_d_wins:
                raise on_every_rank(TrainingDiverged(
                    f"the discriminator has won outright (D(x) > {D_WINS[0]}, D(G(.)) < "
                    f"{D_WINS[1]}) for {s.extra['d_wins']} consecutive steps at step {step} "
                    f"(D(x) = {d_real:.3f}, D(G(.)) = {d_fake:.3g}); lower --lr-d, raise "
                    f"--l1-weight or --max-d-wins"))
    # 2. generator: fool the updated discriminator (and stay close to x0 under L1)
    if disc is not None:
        disc.requires_grad_(False)  # no gradient into D's weights from the generator's loss
    try:
        with s.autocast(), s.no_sync(disc):
            g_loss, g_logs = gan_g_loss(disc, x0, x_fake, cond, l1_weight, adv_weight)
    finally:
        if disc is not None:
            disc.requires_grad_(True)
    logs.update(g_logs)
    logs.update(s.update("model", g_loss, step, "generator loss"))
    return logs


def noisy_copy(cfg: GANConfig, x: torch.Tensor, gen: torch.Generator,
               dtype: torch.dtype = torch.uint8, peak: float | None = None,
               sigma: float | None = None) -> torch.Tensor:
    """A fresh noisy version of a clean batch, drawn with the run's generator at the depth the
    training images were stored at (``dtype``: uint8, or uint16 for 16-bit files) and rounded to
    whole grey levels as a stored image of that depth would be, in [-1, 1]. ``peak`` and
    ``sigma`` override the config's noise level."""
    peak = cfg.peak if peak is None else peak
    sigma = cfg.sigma if sigma is None else sigma
    clean = to_depth(x, dtype)                          # grey levels 0..white
    noisy = corrupt(clean, cfg.noise, peak, sigma, gen, white_level(dtype))
    return to_float(noisy.round_().to(dtype))


def step(s: TrainState, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    """Corrupt the clean batch afresh, then one pix2pix update of D and G on (clean, noisy)."""
    cfg: GANConfig = s.cfg
    noisy = noisy_copy(cfg, x, s.gen, data.stored_dtype(s.info))  # (B, C, H, W), the condition
    s.cache.setdefault("preview_x0", x[:8].detach().clone())
    return adversarial_step(s, x, x, noisy, noisy, step, cfg.l1_weight, cfg.adv_weight)


def preview(s: TrainState, n: int, gen: torch.Generator) -> torch.Tensor:
    """Rows clean / noisy / denoised of 8 training images (the first batch the run drew)."""
    x0 = s.cache["preview_x0"]
    noisy = noisy_copy(s.cfg, x0, gen, data.stored_dtype(s.info))
    return torch.cat([x0, noisy, denoise(s.inference_model(), noisy)])


# --- evaluation ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class GANEvaluateOptions:
    """Options of ``genlab evaluate`` for a denoiser run."""

    num_images: int = 300
    """test images to denoise and score (BM3D takes about 1 s per 48x48 face)"""
    baselines: tuple[str, ...] = ("nlm", "bm3d")
    """classical denoisers to compare with: nlm, bm3d (skipped, with a note, where the optional
    bm3d package is missing)"""
    batch_size: int = 256
    """images per denoising batch"""


def _scores(images: torch.Tensor, clean: torch.Tensor, win: int) -> dict[str, float]:
    """PSNR, SSIM and sharpness of stored images against the clean ones, at their depth (data
    range 255 for uint8, 65535 for uint16)."""
    ref, white = clean.float(), float(white_level(clean.dtype))
    return {"psnr": float(psnr(images.float(), ref, white).mean()),
            "ssim": float(ssim(images.float(), ref, white, win_size=win).mean()),
            "sharpness": float(sharpness(images, ref).mean())}


def evaluate(run: GANRun, split_data: data.ImageData, seed: int,
             opts: GANEvaluateOptions) -> dict[str, Any]:
    """PSNR (dB), SSIM and sharpness against the clean test images for the noisy input, this
    GAN and the classical baselines (NLM and BM3D, with the Anscombe transform for Poisson
    noise), all on the same fixed noisy images, rounded to the data's depth as saved (8 bits, or
    16 for 16-bit images, scored at range 65535)."""
    cfg: GANConfig = run.config
    clean = split_data.images[: opts.num_images]                # (N, C, H, W) uint8 or uint16
    white = white_level(clean.dtype)
    noisy = fixed_noisy(clean, cfg.noise, cfg.peak, cfg.sigma, NOISY_TEST_SEED + seed, white)
    win = ssim_window(clean.shape)
    table: dict[str, dict[str, Any]] = {"noisy": _scores(noisy, clean, win)}
    start = time.perf_counter()
    x0_hat = denoise(run.model, to_float(noisy), batch_size=opts.batch_size)
    seconds = time.perf_counter() - start
    table["gan"] = {**_scores(to_depth(x0_hat.cpu(), clean.dtype), clean, win),
                    "seconds_per_image": seconds / len(clean)}
    skipped = {}
    for method in opts.baselines:
        if method == "bm3d" and not bm3d_available():
            skipped[method] = "the bm3d package is not installed (pip install 'genlab[eval]')"
            continue
        if method == "bm3d" and not bm3d_available(clean.shape):
            skipped[method] = f"images smaller than {BM3D_MIN_SIZE}x{BM3D_MIN_SIZE}"
            continue
        start = time.perf_counter()
        out = denoise_classical(noisy, method, cfg.noise, cfg.peak, cfg.sigma, white)
        seconds = time.perf_counter() - start
        name = f"{method}_anscombe" if cfg.noise == "poisson" else method
        table[name] = {**_scores(out.round().to(clean.dtype), clean, win),
                       "seconds_per_image": seconds / len(clean)}
    best = max((k for k in table if k not in ("noisy", "gan")), default=None,
               key=lambda k: table[k]["psnr"])
    results: dict[str, Any] = {
        "noise": noise_label(cfg.noise, cfg.peak, cfg.sigma), "noise_seed": NOISY_TEST_SEED + seed,
        "num_images": int(len(clean)), "bits": bits(clean.dtype),
        "ssim_window": win, "methods": table,
        "psnr_gan": table["gan"]["psnr"], "psnr_noisy": table["noisy"]["psnr"],
        "ssim_gan": table["gan"]["ssim"],
    }
    if best is not None:
        results["gan_minus_best_classical_db"] = table["gan"]["psnr"] - table[best]["psnr"]
        results["best_classical"] = best
    for name in ("bm3d_anscombe", "bm3d"):
        if name in table:
            results["gan_speedup_vs_bm3d"] = (table[name]["seconds_per_image"]
                                              / max(table["gan"]["seconds_per_image"], 1e-12))
    if skipped:
        results["skipped"] = skipped
    return results


# --- figures -------------------------------------------------------------------------------------


def _fixed_noisy(run: GANRun, split: str, count: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` clean test images and their fixed noisy copies (as evaluate scores),
    at the data's depth."""
    cfg: GANConfig = run.config
    clean = load_split(run, split).images[:count]
    white = white_level(clean.dtype)
    return clean, fixed_noisy(clean, cfg.noise, cfg.peak, cfg.sigma, NOISY_TEST_SEED + seed,
                              white)


def _shown(images: torch.Tensor) -> torch.Tensor:
    """Stored images (uint8 or uint16) as the 8-bit grey levels a figure shows."""
    return images if images.dtype == torch.uint8 else to_uint8(to_float(images))


def noisy_figure(run: GANRun, out: Path, split: str = "test", seed: int = 0, **_: Any) -> Path:
    """Five clean faces above their noisy versions."""
    cfg: GANConfig = run.config
    clean, noisy = _fixed_noisy(run, split, 5, seed)
    return plots.save_rows([("clean", _shown(clean)), ("noisy", _shown(noisy))], out,
                           title=f"{noise_label(cfg.noise, cfg.peak, cfg.sigma)} ({split} split)")


def denoised_figure(run: GANRun, out: Path, split: str = "test", seed: int = 0, count: int = 8,
                    **_: Any) -> Path:
    """Rows clean / noisy / this GAN / NLM / BM3D (when installed) on the same test images."""
    cfg: GANConfig = run.config
    clean, noisy = _fixed_noisy(run, split, count, seed)
    white = white_level(clean.dtype)
    x0_hat = to_uint8(denoise(run.model, to_float(noisy)).cpu())
    rows = [("clean", _shown(clean)), ("noisy", _shown(noisy)), (f"GAN ({cfg.arch})", x0_hat)]
    for method in ("nlm", "bm3d"):
        if method == "bm3d" and not bm3d_available(clean.shape):
            continue
        est = denoise_classical(noisy, method, cfg.noise, cfg.peak, cfg.sigma, white)
        label = method.upper() + (" + Anscombe" if cfg.noise == "poisson" else "")
        rows.append((label, _shown(est.round().to(clean.dtype))))
    return plots.save_rows(rows, out, title=f"denoising, {split} split")


def adversarial_curves_figure(run: Run, out: Path, **_: Any) -> Path:
    """D(x) and D(G(.)) together, then each loss term."""
    from genlab import checkpoint

    log = checkpoint.read_log(run.run_dir)
    if not log:
        raise ConfigError(f"{run.run_dir}/log.jsonl is empty; nothing to plot")
    keys = [k for k in ("d_real", "d_fake", "d_loss", "g_adv", "l1", "loss") if k in log[-1]]
    series = {k: ([r["step"] for r in log if k in r], [r[k] for r in log if k in r]) for k in keys}
    panels = [[k for k in ("d_real", "d_fake") if k in series]]
    panels = [p for p in panels if p] + [[k] for k in ("d_loss", "g_adv", "l1") if k in series]
    return plots.save_curves(series, out, f"training curves: {run.run_dir.name}",
                             panels=panels or [["loss"]])


FIGURES = {"noisy": noisy_figure, "denoised": denoised_figure, "curves": adversarial_curves_figure}


# --- image to image: genlab denoise and export ---------------------------------------------------


@dataclass(frozen=True)
class GANNoiseOptions:
    """The noise ``genlab denoise --add-noise`` adds to a denoiser's inputs (the run's own
    noise model, at its own level unless given)."""

    peak: float | None = None
    """with --add-noise: Poisson photons at white"""
    sigma: float | None = None
    """with --add-noise: Gaussian sigma in 8-bit grey levels (x 257 on 16-bit images)"""


def add_noise(run: Run, x: torch.Tensor, gen: torch.Generator, dtype: torch.dtype,
              opts: GANNoiseOptions) -> torch.Tensor:
    """The run's noise model on clean images in [-1, 1] at a file's depth (``opts`` override its
    level), rounded to that depth's levels: what ``<name>_noisy.png`` holds."""
    return noisy_copy(cast(GANConfig, run.config), x, gen, dtype, opts.peak, opts.sigma)


IMAGE_TO_IMAGE = ImageToImage(
    corrupt=add_noise,
    noise_options=GANNoiseOptions,
    # padded to the generator's stride, a grey network one channel at a time (samplers.denoise)
    apply=lambda run, x, precision: denoise(run.model, x, precision=precision),
    min_size=lambda run: run.model.receptive_field,
    grid=lambda run, out: denoised_figure(run, out, split="test", seed=0),
    channels_last=True,
)

RECIPE = Recipe(
    name="gan",
    summary="conditional denoising GAN (pix2pix): noisy -> clean, PSNR/SSIM vs NLM and BM3D",
    config=GANConfig,
    presets=PRESETS,
    build=build,
    setup=setup,
    step=step,
    preview=preview,
    sample_options=NoOptions,
    evaluate=evaluate,
    evaluate_options=GANEvaluateOptions,
    figures=FIGURES,
    default_figures=lambda run: list(FIGURES),
    key_config=("arch", "disc", "noise", "peak", "sigma", "adv_weight", "l1_weight", "steps",
                "epochs"),
    headline=("psnr_noisy", "psnr_gan", "ssim_gan", "gan_minus_best_classical_db"),
    kind="adversarial",
    # At a low light level (peak 10 photons): the small UNet against a reference-style
    # discriminator (a PatchGAN needs 12x12 and more), scored against the noisy input and
    # non-local means (BM3D needs larger images).
    demo=(DemoRun("gan-denoise-peak10", "default",
                  dict(dataset="digits", peak=10.0, width=8, disc="reference", steps=200,
                       batch_size=64, log_every=20, checkpoint_every=10_000)),),
    upgrade=upgrade,
    image_to_image=IMAGE_TO_IMAGE,
    control_figure="denoised",
)
