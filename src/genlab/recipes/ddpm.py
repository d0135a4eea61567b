"""The denoising diffusion family (Ho et al. 2020): a time-conditioned UNet predicts the noise in
x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps; sampled ancestrally (all T steps) or with
DDIM (any number of steps); class-conditional with classifier-free guidance on request. Scored by
the offline FID/KID of DDIM and DDPM-T samples; explained by the forward process, the schedules'
signal-to-noise ratios, the reverse progression and a gallery."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from genlab import data, plots
from genlab.checkpoint import Run
from genlab.config import BaseConfig
from genlab.diffusion import SCHEDULES, NoiseSchedule
from genlab.errors import ConfigError
from genlab.images import WHITE_8, to_float, to_uint8, white_level
from genlab.models.unet import ReferenceUNet, ResUNet
from genlab.objectives import ddpm_loss, ddpm_prior_term, ddpm_vlb_term
from genlab.recipes.base import (
    QUICK_FIGURE_IMAGES,
    QUICK_FIGURE_NFE,
    QUICK_INTERPOLATION,
    DemoRun,
    LatentMap,
    Recipe,
    SampleScoreOptions,
    TrainState,
    adam,
    announce_cost,
    bf16_autocast,
    class_labels,
    curves_figure,
    display_examples,
    gallery_figure,
    inference_precision,
    labels_with_dropout,
    load_split,
    noise_interpolation_figure,
    seconds_per_call,
)
from genlab.recipes.scoring import Scorer
from genlab.samplers import DEFAULT_DDIM_ETA, ancestral, ddim, ddim_timesteps, in_batches


@dataclass(frozen=True)
class DDPMConfig(BaseConfig):
    """Denoising diffusion probabilistic model (Ho et al. 2020) with an epsilon-predicting UNet."""

    family: Literal["ddpm"] = "ddpm"
    """model family"""
    num_steps: int = 1000
    """diffusion steps T"""
    schedule: Literal["linear", "linear-scaled", "cosine"] = "cosine"
    """beta schedule: 'linear' (raw 1e-4..0.02), 'linear-scaled' (endpoints x 1000/T), 'cosine'"""
    arch: Literal["reference", "resnet"] = "resnet"
    """UNet: the notebook's 'reference' net, or the residual GroupNorm 'resnet'"""
    channels: tuple[int, ...] = (32, 64, 128)
    """UNet channels per resolution"""
    res_blocks: int = 1
    """'resnet' UNet: residual blocks per resolution on the down path (one more on the way up)"""
    class_conditional: bool = False
    """condition on class labels (with label dropout for classifier-free guidance)"""
    label_dropout: float = 0.1
    """probability of replacing the label by the null label in training"""

    def check(self) -> None:
        if self.num_steps < 2:
            raise ConfigError(f"num_steps must be >= 2, got {self.num_steps}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ConfigError(f"label_dropout must be in [0, 1), got {self.label_dropout}")


DDPMRun = Run[DDPMConfig]  # a run of this family, typed by its config


PRESETS = {
    # The notebook: T = 300 with raw linear betas 1e-4..0.02 (alpha_bar_T ~ 0.05), its UNet.
    "reference": dict(num_steps=300, schedule="linear", arch="reference",
                      channels=(64, 128, 256, 512, 1024), dataset="cifar10", lr=1e-3,
                      batch_size=128),
    # lr 1e-3 on batches of 64 (with warm-up, clipping and EMA): on MNIST the eps-loss reached
    # after 0.2 epochs what lr 2e-4 on batches of 128 reached after 0.53. Budget-true: a 5%
    # warm-up and a linear decay to zero over the run's steps or minutes, and a power-function
    # EMA over the last ~10% of the run, so a 5-minute run is averaged as a 5-hour one is.
    "default": dict(num_steps=1000, schedule="cosine", arch="resnet", channels=(32, 64, 128),
                    lr=1e-3, batch_size=64, ema_sigma_rel=0.1, grad_clip=1.0,
                    warmup_fraction=0.05, lr_schedule="linear"),
}


def build_unet(cfg: Any, image_shape: tuple[int, int, int],
               num_classes: int) -> dict[str, nn.Module]:
    """{'model': the UNet} (the loop adds its EMA copy); shared with the flow family."""
    classes = num_classes if cfg.class_conditional else 0
    if cfg.class_conditional and num_classes < 2:
        raise ConfigError(f"class_conditional needs a labelled dataset; {cfg.dataset!r} has "
                          f"{num_classes} class(es)")
    if cfg.arch == "resnet":
        return {"model": ResUNet(image_shape, cfg.channels, classes, cfg.res_blocks)}
    return {"model": ReferenceUNet(image_shape, cfg.channels, classes)}


def setup(cfg: Any, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
    return {"model": adam(modules["model"].parameters(), cfg.lr)}


def schedule_of(cfg: DDPMConfig, device: torch.device | str = "cpu") -> NoiseSchedule:
    return NoiseSchedule(cfg.schedule, cfg.num_steps, device)


def _schedule(s: TrainState) -> NoiseSchedule:
    if "schedule" not in s.cache:
        s.cache["schedule"] = schedule_of(s.cfg, s.device)
    return s.cache["schedule"]


def step(s: TrainState, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    """One epsilon-prediction step (Ho et al. 2020, Algorithm 1)."""
    cfg: DDPMConfig = s.cfg
    labels = labels_with_dropout(s, y, cfg.label_dropout) if cfg.class_conditional else None
    with s.autocast():
        loss, logs = ddpm_loss(s.modules["model"], _schedule(s), x, labels, s.gen)
    return {**logs, **s.update("model", loss, step)}


PREVIEW_DDIM_STEPS = 50


def preview(s: TrainState, n: int, gen: torch.Generator) -> torch.Tensor:
    """n DDIM samples from the EMA network; conditional runs cycle through the classes."""
    net = s.inference_model()
    with s.autocast():
        return ddim(net, _schedule(s), (n, *s.info["image_shape"]),
                    min(PREVIEW_DDIM_STEPS, s.cfg.num_steps), DEFAULT_DDIM_ETA,
                    class_labels(net, n), gen=gen)


def start_message(cfg: DDPMConfig) -> str | None:
    """The reference schedule's trap, said when training starts, not only in a figure title."""
    alpha_bar_T = float(schedule_of(cfg).alpha_bar[-1])
    if alpha_bar_T > 0.01:
        default = float(NoiseSchedule("cosine", 1000).alpha_bar[-1])
        return (f"note: the {cfg.schedule} schedule at T = {cfg.num_steps} leaves alpha_bar_T = "
                f"{alpha_bar_T:.3f} (sqrt = {alpha_bar_T ** 0.5:.2f}), so x_T is not N(0, I) "
                f"and sampling starts from the wrong distribution; the default preset's cosine "
                f"schedule at T = 1000 reaches {default:.1e}")
    return None


# --- sampling ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DDPMSampleOptions:
    """Options of ``genlab sample`` for a DDPM run."""

    sampler: Literal["ddim", "ddpm"] = "ddim"
    """'ddim' (--steps, --eta) or ancestral 'ddpm' with all T steps"""
    steps: int | None = None
    """DDIM steps (default: 50, or T when smaller)"""
    eta: float | None = None
    """DDIM noise, 0 deterministic .. 1 DDPM-like (default: 1, which scored best at 50 steps)"""
    label: int | None = None
    """class-conditional runs: draw class K (default: the classes in turn)"""
    guidance: float | None = None
    """class-conditional runs: classifier-free guidance scale w (1: plain conditional)"""
    batch_size: int = 256
    """images per sampling batch"""


def generate(run: DDPMRun, n: int, gen: torch.Generator, sampler: str = "ddim",
             steps: int | None = None, eta: float | None = None, y: torch.Tensor | None = None,
             guidance: float | None = None, batch_size: int = 256) -> torch.Tensor:
    """n images (CPU, [-1, 1]) from the run's EMA network with DDIM or ancestral DDPM-T."""
    cfg: DDPMConfig = run.config
    schedule = schedule_of(cfg, run.device)
    if sampler == "ddpm":
        if steps is not None or eta is not None:
            raise ConfigError(f"--steps and --eta apply to the ddim sampler; ddpm uses all T = "
                              f"{cfg.num_steps} steps")

        def draw(shape, labels):
            return ancestral(run.model, schedule, shape, labels, guidance, gen)
    else:
        steps = min(PREVIEW_DDIM_STEPS, cfg.num_steps) if steps is None else steps
        ddim_timesteps(cfg.num_steps, steps)  # fail before any work on a bad step count
        eta = DEFAULT_DDIM_ETA if eta is None else eta

        def draw(shape, labels):
            return ddim(run.model, schedule, shape, steps, eta, labels, guidance, gen)
    return in_batches(draw, n, run.image_shape, y, batch_size, run.device,
                      inference_precision(run))


def sample(run: DDPMRun, n: int, gen: torch.Generator, opts: DDPMSampleOptions) -> torch.Tensor:
    return generate(run, n, gen, opts.sampler, opts.steps, opts.eta,
                    class_labels(run.model, n, opts.label), opts.guidance, opts.batch_size)


# --- evaluation ----------------------------------------------------------------------------------


FULL_DDPM_SAMPLES = 1000  # ancestral DDPM-T samples of the --full protocol


@dataclass(frozen=True)
class DDPMEvaluateOptions(SampleScoreOptions):
    """Options of ``genlab evaluate`` for a DDPM run."""

    ddpm_samples: int | None = None
    """ancestral DDPM-T samples scored, T network calls each (default: 0, none; with --full:
    1000); keep it above the 128 feature dimensions"""
    ddim_steps: int = 50
    """steps of the DDIM sampler that is scored"""
    ddim_eta: float = DEFAULT_DDIM_ETA
    """noise of the DDIM sampler that is scored, 0 deterministic .. 1 DDPM-like"""
    guidance: float | None = None
    """class-conditional runs: classifier-free guidance scale"""
    batch_size: int = 250
    """images per sampling batch"""


def evaluate(run: DDPMRun, split_data: data.ImageData, seed: int,
             opts: DDPMEvaluateOptions) -> dict[str, Any]:
    """FID/KID in the features of the dataset's feature network, for DDIM-``ddim_steps`` samples
    (noise ``ddim_eta``) and, when asked for, ancestral DDPM-T samples, with sampling seconds per
    image of each.

    The default protocol is quick: 500 DDIM samples and no ancestral ones (on a demo-sized run,
    well under a minute on 2 cores). ``--full`` scores 10,000 DDIM and 1,000 ancestral samples
    and prints its estimated cost first. DDPM-T costs T network calls per image, so it is scored
    on ``ddpm_samples`` images; DDIM is also scored on its first ``ddpm_samples`` images, so that
    the two FIDs compare at one set size (KID is unbiased and compares at any size). Keep both
    above the feature network's 128 dimensions: with fewer samples than dimensions the sample
    covariance is singular and the FID ratio between samplers is noise (on the 30-minute MNIST
    model, DDIM-50 over DDPM-1000 read 1.27 at 100 samples and 0.94 at 300). Conditional runs
    sample the classes in turn.
    """
    cfg: DDPMConfig = run.config
    ddpm_samples = (opts.ddpm_samples if opts.ddpm_samples is not None
                    else FULL_DDPM_SAMPLES if opts.full else 0)
    ddim_timesteps(cfg.num_steps, opts.ddim_steps)  # fail before any work on a bad step count
    scorer = Scorer.for_run(run, split_data, opts, seed)
    counts = (("ddim", scorer.num_samples, opts.ddim_steps), ("ddpm", ddpm_samples, cfg.num_steps))
    results: dict[str, Any] = {}
    if opts.full:
        def probe(n: int, calls: int) -> torch.Tensor:
            return generate(run, n, torch.Generator(device=run.device).manual_seed(seed), "ddim",
                            steps=calls, eta=opts.ddim_eta, y=class_labels(run.model, n),
                            guidance=opts.guidance, batch_size=opts.batch_size)

        names = {"ddim": f"DDIM-{opts.ddim_steps}", "ddpm": f"ancestral T={cfg.num_steps}"}
        results["full_protocol"] = announce_cost(
            [(n, names[s], calls) for s, n, calls in counts], seconds_per_call(probe),
            " + the Inception FID" if scorer.inception_weights else "")
    for sampler, n, nfe in counts:
        if n <= 0:
            continue
        kwargs = (dict(steps=opts.ddim_steps, eta=opts.ddim_eta) if sampler == "ddim" else {})
        fake, seconds = scorer.time(
            lambda n, s=sampler, kw=kwargs: generate(
                run, n, torch.Generator(device=run.device).manual_seed(seed), s,
                y=class_labels(run.model, n), guidance=opts.guidance, batch_size=opts.batch_size,
                **kw), n)
        label = f"{sampler}{nfe}"
        results.update(scorer.score(fake, label))
        results[f"seconds_per_image_{label}"] = round(seconds, 4)
        results[f"nfe_{label}"] = nfe
        if sampler == "ddim" and 0 < ddpm_samples < n:
            results[f"fid_{label}_at_{ddpm_samples}"] = scorer.fid(fake[:ddpm_samples])
    return {**results, "ddim_eta": opts.ddim_eta, "guidance": opts.guidance, **scorer.common()}


# --- likelihood ----------------------------------------------------------------------------------


@torch.no_grad()
def vlb_terms(net: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, per_image: int,
              gen: torch.Generator, half_bin: float = 1 / WHITE_8, batch_size: int = 256
              ) -> dict[str, torch.Tensor]:
    """Per image (nats): the prior term L_T, the decoder term L_0 and an unbiased estimate of the
    sum of the T - 1 diffusion terms, (T - 1) times their mean at ``per_image`` stratified
    timesteps t_k = 1 + floor((k + u_k) (T - 1) / K). With K = T - 1 every t is drawn once and
    the estimate is the exact sum."""
    n, T = len(x0), schedule.num_steps
    k = torch.arange(per_image, dtype=torch.float64)
    u = torch.rand((n, per_image), dtype=torch.float64,
                   generator=torch.Generator().manual_seed(gen.initial_seed()))
    t = (1 + ((k + u) * (T - 1) / per_image).floor().long()).clamp(max=T - 1)  # (n, K)
    t = torch.cat([torch.zeros(n, 1, dtype=torch.long), t], 1)               # L_0 first
    images = x0.repeat_interleave(per_image + 1, 0)
    terms = torch.cat([
        ddpm_vlb_term(net, schedule, xb.to(schedule.device), tb.to(schedule.device), gen=gen,
                      half_bin=half_bin).cpu()
        for xb, tb in zip(images.split(batch_size), t.flatten().split(batch_size))]).view(n, -1)
    return {"prior": ddpm_prior_term(schedule, x0.to(schedule.device)).cpu(),
            "decoder": terms[:, 0], "diffusion": (T - 1) * terms[:, 1:].mean(1)}


def likelihood(run: DDPMRun, split_data: data.ImageData, seed: int, num_images: int = 100,
               per_image: int = 32) -> dict[str, Any]:
    """The variational bound on -log p(x) of ``num_images`` test images, in bits per dimension:
    the T diffusion terms estimated by Monte Carlo over t (``per_image`` stratified timesteps per
    image, see vlb_terms), with its standard error across images. Unconditional (null label) for
    class-conditional runs. Costs num_images * (per_image + 1) network calls."""
    x0 = to_float(split_data.images[:num_images])
    half_bin = 1 / white_level(split_data.images.dtype)
    gen = torch.Generator(device=run.device).manual_seed(seed)
    schedule = schedule_of(run.config, run.device)
    terms = vlb_terms(run.model, schedule, x0, per_image, gen, half_bin)
    to_bits = 1 / (math.prod(run.image_shape) * math.log(2))
    total = (terms["prior"] + terms["decoder"] + terms["diffusion"]) * to_bits
    return {"nll_bits_per_dim": float(total.mean()),
            "nll_bits_per_dim_se": float(total.std() / math.sqrt(len(total))),
            **{f"{name}_bits_per_dim": float(v.mean() * to_bits) for name, v in terms.items()},
            "bound": f"variational bound (Ho et al. eq. 5), {per_image} stratified t per image",
            "num_images": len(x0), "network_calls": len(x0) * (per_image + 1)}


# --- figures -------------------------------------------------------------------------------------


def forward_timesteps(num_steps: int, count: int = 6) -> list[int]:
    """``count`` timesteps from 0 (clean) to T-1 (the last, noisiest), evenly spaced."""
    return torch.linspace(0, num_steps - 1, count).round().long().tolist()


def display_images(run: Run, split: str, count: int = 8) -> torch.Tensor:
    """The first image of each class of the split (then the next ones), float in [-1, 1]."""
    split_data = load_split(run, split)
    return to_float(split_data.images[display_examples(split_data, count)])


def forward_figure(run: DDPMRun, out: Path, split: str = "test", seed: int = 0, **_: Any) -> Path:
    """q(x_t | x_0) for eight test images at six timesteps from 0 to T, one row per t; the title
    prints alpha_bar_T, which the reference schedule leaves far from 0."""
    x0 = display_images(run, split)
    schedule = schedule_of(run.config)
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(x0.shape, generator=gen)  # one noise draw, so rows differ only in t
    rows = []
    for t in forward_timesteps(schedule.num_steps):
        x_t = schedule.q_sample(x0, t, eps)
        rows.append((f"t = {t + 1}\nabar = {schedule.alpha_bar[t].item():.3g}", to_uint8(x_t)))
    title = (f"forward process q(x_t | x_0), {schedule.name} schedule, T = {schedule.num_steps}: "
             f"alpha_bar_T = {schedule.alpha_bar[-1].item():.2e}")
    return plots.save_rows([("x_0", to_uint8(x0)), *rows[1:]], out, title=title)


def snr_figure(run: DDPMRun, out: Path, **_: Any) -> Path:
    """The signal-to-noise ratio alpha_bar / (1 - alpha_bar) over t / T for the three schedules at
    this run's T, side by side."""
    num_steps = run.config.num_steps
    series: dict[str, tuple[list[float], list[float]]] = {}
    for name in SCHEDULES:
        try:
            sched = NoiseSchedule(name, num_steps)
        except ConfigError:  # linear-scaled is undefined for T <= 20
            continue
        x = [(t + 1) / num_steps for t in range(num_steps)]
        series[f"SNR, {name}"] = (x, sched.snr.clamp_min(1e-12).tolist())
    return plots.save_curves(series, out, f"noise schedules at T = {num_steps} (this run: "
                             f"{run.config.schedule})", xlabel="t / T",
                             panels=[list(series)], log_y=True)


def progression_figure(run: DDPMRun, out: Path, seed: int = 0, count: int = 8, rows: int = 8,
                       **_: Any) -> Path:
    """Ancestral sampling from noise to images: x_t of ``count`` samples every T / ``rows``
    steps (Ho et al. 2020, fig. 6)."""
    schedule = schedule_of(run.config, run.device)
    every = max(1, schedule.num_steps // rows)
    snapshots: dict[int, torch.Tensor] = {}
    gen = torch.Generator(device=run.device).manual_seed(seed)
    with bf16_autocast(run):
        ancestral(run.model, schedule, (count, *run.image_shape), class_labels(run.model, count),
                  gen=gen, snapshots=snapshots, snapshot_every=every)
    rows_ = [(f"t = {t}", to_uint8(snapshots[t].float()))
             for t in sorted(snapshots, reverse=True)]
    return plots.save_rows(rows_, out, title=f"DDPM sampling, T = {schedule.num_steps}: x_T "
                                             f"(noise, top) to x_0 (bottom)")


def samples_figure(run: DDPMRun, out: Path, seed: int = 0, n: int = 100, quick: bool = False,
                   **_: Any) -> Path:
    """A 10 x 10 gallery of DDIM-50 samples (eta 1; row-major; conditional runs: column =
    class); after training (``quick``) 6 x 6 DDIM-10 samples."""
    gen = torch.Generator(device=run.device).manual_seed(seed)
    steps = min(QUICK_FIGURE_NFE if quick else PREVIEW_DDIM_STEPS, run.config.num_steps)
    n = QUICK_FIGURE_IMAGES if quick else n
    nrow = 6 if quick else 10
    return gallery_figure(generate(run, n, gen, steps=steps, y=class_labels(run.model, n)), out,
                          nrow=nrow)


def interpolation_figure(run: DDPMRun, out: Path, seed: int = 0, quick: bool = False,
                         **_: Any) -> Path:
    """What a user can steer: deterministic DDIM-50 (eta 0) images between pairs of noises, and
    for class-conditional runs the classes across guidance scales (after training, ``quick``: 4
    pairs, 8 images each, DDIM-10)."""
    schedule = schedule_of(run.config, run.device)
    steps = min(QUICK_FIGURE_NFE if quick else PREVIEW_DDIM_STEPS, schedule.num_steps)
    rows, per_row = QUICK_INTERPOLATION if quick else (6, 10)
    return noise_interpolation_figure(
        run, out, lambda x_T, y, w: ddim(run.model, schedule, x_T.shape, steps, 0.0, y, w,
                                         x_T=x_T), seed, rows, per_row)


PATH_DDIM_STEPS = 20  # the deterministic map of the path-length score: 20 DDIM steps, eta 0


def latent_map(run: DDPMRun) -> LatentMap:
    """x_T ~ N(0, I) -> x_0 by deterministic DDIM (eta 0, PATH_DDIM_STEPS steps), unconditional
    (null label) for class-conditional runs."""
    schedule = schedule_of(run.config, run.device)
    steps = min(PATH_DDIM_STEPS, schedule.num_steps)
    return run.image_shape, lambda x_T: ddim(run.model, schedule, x_T.shape, steps, 0.0,
                                             x_T=x_T).float()


FIGURES = {"forward": forward_figure, "snr": snr_figure, "progression": progression_figure,
           "samples": samples_figure, "interpolation": interpolation_figure,
           "curves": curves_figure}

RECIPE = Recipe(
    name="ddpm",
    summary="denoising diffusion (DDPM): eps-prediction UNet, ancestral and DDIM sampling",
    config=DDPMConfig,
    presets=PRESETS,
    build=build_unet,
    setup=setup,
    step=step,
    preview=preview,
    sample=sample,
    sample_options=DDPMSampleOptions,
    evaluate=evaluate,
    evaluate_options=DDPMEvaluateOptions,
    figures=FIGURES,
    # ancestral sampling costs T network calls: the progression figure is drawn on request only
    default_figures=lambda run: [kind for kind in FIGURES if kind != "progression"],
    key_config=("arch", "channels", "schedule", "num_steps", "class_conditional", "ema_sigma_rel",
                "steps", "batch_size", "lr"),
    headline=("fid_ddim50", "kid_ddim50", "seconds_per_image_ddim50"),
    kind="diffusion",
    # A small residual UNet at T = 200 cosine steps; DDIM-50 and DDPM-200 scored.
    demo=(DemoRun("ddpm", "default",
                  dict(dataset="digits", channels=(16, 32), num_steps=200, steps=600,
                       batch_size=64, lr=1e-3,
                       num_threads=1,  # tiny 8x8 tensors: one thread beats two that wait
                       log_every=20, checkpoint_every=10_000),
                  dict(num_samples=200, ddpm_samples=30)),),
    # the demo's mini-comparison on the 8x8 digits: the demo's small UNet, one thread
    demo_compare_overrides=dict(channels=(16, 32), num_steps=200, num_threads=1),
    start_message=start_message,
    control_figure="interpolation",
    nfe_options=lambda nfe: {"sampler": "ddim", "steps": nfe},
    likelihood=likelihood,
    likelihood_model="discretised-gaussian-256",
    likelihood_scale="8-bit",
    latent_map=latent_map,
)
