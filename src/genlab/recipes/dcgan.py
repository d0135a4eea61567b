"""The DCGAN (Radford et al. 2016): a generator maps z ~ N(0, I) to an image, a discriminator
tells generated from real; the non-saturating GAN loss (Goodfellow et al. 2014). Class-conditional
on request: the label's embedding joins z in the generator, and the discriminator is a projection
discriminator (Miyato & Koyama 2018). Scored by the offline FID/KID of its samples; explained by a
sample grid and a latent interpolation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from genlab import data, plots
from genlab.checkpoint import Run
from genlab.errors import ConfigError
from genlab.images import to_uint8
from genlab.models.gan import DCGANDiscriminator, DCGANGenerator
from genlab.recipes.base import (
    DemoRun,
    LatentMap,
    Recipe,
    SampleScoreOptions,
    TrainState,
    announce_cost,
    class_labels,
    gallery_figure,
    seconds_per_call,
)
from genlab.recipes.gan import (
    AdversarialConfig,
    adversarial_curves_figure,
    adversarial_step,
    setup,
)
from genlab.recipes.scoring import Scorer
from genlab.samplers import sample_gan, slerp


@dataclass(frozen=True)
class DCGANConfig(AdversarialConfig):
    """DCGAN: z ~ N(0, I) (and, class-conditional, a class label) -> image."""

    family: Literal["dcgan"] = "dcgan"
    """model family"""
    latent_dim: int = 100
    """size of the noise vector z"""
    class_conditional: bool = False
    """condition generator and discriminator on class labels (projection discriminator)"""

    def check(self) -> None:
        super().check()
        if self.latent_dim <= 0:
            raise ConfigError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.adv_weight <= 0:
            raise ConfigError("the DCGAN needs adv_weight > 0: without a discriminator there is "
                              "nothing to train the generator against")


DCGANRun = Run[DCGANConfig]  # a run of this family, typed by its config


PRESETS = {
    # The settings of genlab's first DCGAN ('generate' mode of the GAN family).
    "reference": dict(lr=2e-4, lr_d=2e-4, batch_size=64, epochs=50),
    # DCGAN's Adam(2e-4, beta1 0.5) for both networks, with an EMA of the generator's weights
    # for sampling (as in ProGAN and StyleGAN: smoother samples at no training cost).
    "default": dict(lr=2e-4, lr_d=2e-4, batch_size=64, epochs=50, ema_decay=0.999),
}


def build(cfg: DCGANConfig, image_shape: tuple[int, int, int],
          num_classes: int) -> dict[str, nn.Module]:
    """{'model': the DCGAN generator, 'disc': its discriminator}."""
    classes = num_classes if cfg.class_conditional else 0
    if cfg.class_conditional and num_classes < 2:
        raise ConfigError(f"class_conditional needs a labelled dataset; {cfg.dataset!r} has "
                          f"{num_classes} class(es)")
    return {"model": DCGANGenerator(image_shape, cfg.latent_dim, cfg.width, classes),
            "disc": DCGANDiscriminator(image_shape, cfg.width, classes)}


def step(s: TrainState, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    """One discriminator and one generator update on fresh z (class-conditional: the fakes are
    drawn for the real batch's labels, so both sides see the data's class histogram)."""
    z = torch.randn((x.shape[0], s.cfg.latent_dim), generator=s.gen, device=x.device)
    labels = y.to(x.device).long() if s.cfg.class_conditional else None
    return adversarial_step(s, None, x, z, labels, step, 0.0, s.cfg.adv_weight, labels=labels)


def preview(s: TrainState, n: int, gen: torch.Generator) -> torch.Tensor:
    return sample_gan(s.inference_model(), n, gen)


@dataclass(frozen=True)
class DCGANSampleOptions:
    """Options of ``genlab sample`` for a DCGAN run."""

    label: int | None = None
    """class-conditional runs: draw class K (default: the classes in turn)"""


def sample(run: DCGANRun, n: int, gen: torch.Generator, opts: DCGANSampleOptions) -> torch.Tensor:
    """x = G(z), z ~ N(0, I), from the EMA generator where the run keeps one (class-conditional
    runs: of class ``opts.label``, else the classes in turn)."""
    return sample_gan(run.model, n, gen, labels=class_labels(run.model, n, opts.label))


@dataclass(frozen=True)
class DCGANEvaluateOptions(SampleScoreOptions):
    """Options of ``genlab evaluate`` for a DCGAN run."""


def evaluate(run: DCGANRun, split_data: data.ImageData, seed: int,
             opts: DCGANEvaluateOptions) -> dict[str, Any]:
    """FID/KID of ``num_samples`` samples against the split, in the features of the dataset's
    own classifier (the offline score shared with the diffusion and flow families)."""
    scorer = Scorer.for_run(run, split_data, opts, seed)
    gen = torch.Generator(device=run.device).manual_seed(seed)
    results: dict[str, Any] = {}
    if opts.full:
        per_call = seconds_per_call(lambda n, calls: sample_gan(run.model, n * calls, gen))
        results["full_protocol"] = announce_cost(
            [(scorer.num_samples, "generator", 1)], per_call,
            " + the Inception FID" if scorer.inception_weights else "")
        gen = torch.Generator(device=run.device).manual_seed(seed)
    fake, seconds = scorer.time(lambda n: sample_gan(run.model, n, gen), scorer.num_samples)
    scores = scorer.score(fake, "gan")
    return {"fid": scores["fid_gan"], "kid": scores["kid_gan"], "kid_std": scores["kid_std_gan"],
            **{k: v for k, v in scores.items() if k.startswith("inception")},
            "num_samples": len(fake), "seconds_per_image": seconds, "nfe": 1, **results,
            **scorer.common()}


def samples_figure(run: DCGANRun, out: Path, seed: int = 0, **_: Any) -> Path:
    gen = torch.Generator(device=run.device).manual_seed(seed)
    classes = getattr(run.model, "num_classes", 0)
    if classes:  # a column per class
        return gallery_figure(sample_gan(run.model, 8 * classes, gen), out, nrow=classes)
    return gallery_figure(sample_gan(run.model, 64, gen), out, nrow=8)


def interpolation_figure(run: DCGANRun, out: Path, seed: int = 0, rows: int = 6, steps: int = 10,
                         **_: Any) -> Path:
    """G along great circles between pairs of latent vectors (slerp, White 2016): how smoothly
    the generator's output changes with z (class-conditional: row r keeps class r mod K)."""
    gen = torch.Generator().manual_seed(seed)
    dim = run.config.latent_dim
    z0, z1 = torch.randn((rows, dim), generator=gen), torch.randn((rows, dim), generator=gen)
    w = torch.linspace(0, 1, steps)
    z = torch.stack([slerp(z0, z1, float(t)) for t in w], dim=1).reshape(rows * steps, dim)
    classes = getattr(run.model, "num_classes", 0)
    labels = (torch.arange(rows).repeat_interleave(steps) % classes) if classes else None
    images = sample_gan(run.model, len(z), z=z, labels=labels)
    return plots.save_grid(to_uint8(images), out, nrow=steps)


def latent_map(run: DCGANRun) -> LatentMap:
    """z ~ N(0, I) -> G(z)."""
    return (run.config.latent_dim,), lambda z: sample_gan(run.model, len(z), z=z)


FIGURES = {"samples": samples_figure, "interpolation": interpolation_figure,
           "curves": adversarial_curves_figure}

RECIPE = Recipe(
    name="dcgan",
    summary="DCGAN: z ~ N(0, I) -> image (class-conditional on request), offline FID/KID",
    config=DCGANConfig,
    presets=PRESETS,
    build=build,
    setup=setup,
    step=step,
    preview=preview,
    sample=sample,
    sample_options=DCGANSampleOptions,
    evaluate=evaluate,
    evaluate_options=DCGANEvaluateOptions,
    figures=FIGURES,
    default_figures=lambda run: list(FIGURES),
    key_config=("width", "latent_dim", "class_conditional", "lr", "lr_d", "ema_decay", "steps",
                "epochs"),
    headline=("fid", "kid", "seconds_per_image"),
    kind="adversarial",
    demo=(DemoRun("dcgan", "default",
                  dict(dataset="digits", width=16, steps=400, batch_size=64, log_every=20,
                       checkpoint_every=10_000, num_threads=1),
                  dict(num_samples=300)),),
    demo_compare_overrides=dict(width=16, num_threads=1),  # the demo's mini-comparison
    control_figure="interpolation",
    latent_map=latent_map,
)
