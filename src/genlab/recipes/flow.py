"""Flow matching on the straight path (rectified flow, Liu et al. 2023; conditional flow matching,
Lipman et al. 2023): x_t = (1 - t) x_0 + t eps, and a UNet regresses the velocity eps - x_0; images
come from integrating dx/dt = v(x, t) from noise (t = 1) to data (t = 0) with Euler or Heun steps.
The same residual UNet, class conditioning and classifier-free guidance as the DDPM family, and
the same offline FID/KID, so the two compare at equal budget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from genlab import data, plots
from genlab.checkpoint import Run
from genlab.config import BaseConfig
from genlab.errors import ConfigError
from genlab.images import to_uint8
from genlab.objectives import flow_loss
from genlab.recipes.base import (
    QUICK_FIGURE_IMAGES,
    QUICK_FIGURE_NFE,
    QUICK_INTERPOLATION,
    DemoRun,
    LatentMap,
    Recipe,
    SampleScoreOptions,
    TrainState,
    announce_cost,
    bf16_autocast,
    class_labels,
    curves_figure,
    gallery_figure,
    inference_precision,
    labels_with_dropout,
    noise_interpolation_figure,
    seconds_per_call,
)
from genlab.recipes.ddpm import build_unet, display_images, setup
from genlab.recipes.scoring import Scorer
from genlab.samplers import FLOW_SOLVERS, flow_nfe, flow_ode, in_batches

TIME_SCALE = 1000.0  # the UNet sees 1000 t: the range its sinusoidal embedding was built for


@dataclass(frozen=True)
class FlowConfig(BaseConfig):
    """Flow matching on the straight path (rectified flow) with a velocity-predicting UNet."""

    family: Literal["flow"] = "flow"
    """model family"""
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
    time_sampling: Literal["uniform", "logit-normal"] = "logit-normal"
    """training times: 'uniform' on (0, 1), or 'logit-normal' (sigmoid of a normal; Esser et al.
    2024 found it the best of their samplings)"""
    logit_mean: float = 0.0
    """logit-normal: mean of the normal"""
    logit_std: float = 1.0
    """logit-normal: standard deviation of the normal"""

    def check(self) -> None:
        if self.logit_std <= 0:
            raise ConfigError(f"logit_std must be positive, got {self.logit_std}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ConfigError(f"label_dropout must be in [0, 1), got {self.label_dropout}")


FlowRun = Run[FlowConfig]  # a run of this family, typed by its config


PRESETS = {
    # The notebook's UNet and batch, with rectified flow's uniform times.
    "reference": dict(arch="reference", channels=(64, 128, 256, 512, 1024), dataset="cifar10",
                      lr=1e-3, batch_size=128, time_sampling="uniform"),
    # The DDPM default's network and optimiser settings, so the two families differ only in
    # their objective and sampler.
    "default": dict(arch="resnet", channels=(32, 64, 128), lr=1e-3, batch_size=64,
                    ema_sigma_rel=0.1, grad_clip=1.0, warmup_fraction=0.05,
                    lr_schedule="linear"),
}


def step(s: TrainState, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    """One velocity-regression step on the straight path."""
    cfg: FlowConfig = s.cfg
    labels = labels_with_dropout(s, y, cfg.label_dropout) if cfg.class_conditional else None
    with s.autocast():
        loss, logs = flow_loss(s.modules["model"], x, labels, s.gen, cfg.time_sampling,
                               cfg.logit_mean, cfg.logit_std, TIME_SCALE)
    return {**logs, **s.update("model", loss, step)}


def preview(s: TrainState, n: int, gen: torch.Generator) -> torch.Tensor:
    """n Heun-20 samples from the EMA network; conditional runs cycle through the classes."""
    net = s.inference_model()
    with s.autocast():
        return flow_ode(net, (n, *s.info["image_shape"]), 20, "heun", class_labels(net, n),
                        gen=gen, time_scale=TIME_SCALE)


@dataclass(frozen=True)
class FlowSampleOptions:
    """Options of ``genlab sample`` for a flow-matching run."""

    solver: Literal["euler", "heun"] = "heun"
    """ODE solver: 'euler' (first order) or 'heun' (second order, two evaluations a step)"""
    nfe: int = 20
    """network evaluations per image (Euler: steps; Heun: 2 per step)"""
    label: int | None = None
    """class-conditional runs: draw class K (default: the classes in turn)"""
    guidance: float | None = None
    """class-conditional runs: classifier-free guidance scale w (1: plain conditional)"""
    batch_size: int = 256
    """images per sampling batch"""


def generate(run: FlowRun, n: int, gen: torch.Generator, solver: str = "heun", nfe: int = 20,
             y: torch.Tensor | None = None, guidance: float | None = None,
             batch_size: int = 256) -> torch.Tensor:
    """n images (CPU, [-1, 1]) from the run's EMA network."""
    flow_nfe(solver, nfe)  # fail before any work on a bad solver or budget

    def draw(shape, labels):
        return flow_ode(run.model, shape, nfe, solver, labels, guidance, gen,
                        time_scale=TIME_SCALE)
    return in_batches(draw, n, run.image_shape, y, batch_size, run.device,
                      inference_precision(run))


def sample(run: FlowRun, n: int, gen: torch.Generator, opts: FlowSampleOptions) -> torch.Tensor:
    return generate(run, n, gen, opts.solver, opts.nfe, class_labels(run.model, n, opts.label),
                    opts.guidance, opts.batch_size)


@dataclass(frozen=True)
class FlowEvaluateOptions(SampleScoreOptions):
    """Options of ``genlab evaluate`` for a flow-matching run."""

    solvers: tuple[str, ...] = ("heun",)
    """ODE solvers to score: euler, heun"""
    nfe: tuple[int, ...] = (20,)
    """network-evaluation budgets to score, each with every solver"""
    guidance: float | None = None
    """class-conditional runs: classifier-free guidance scale"""
    batch_size: int = 250
    """images per sampling batch"""


def evaluate(run: FlowRun, split_data: data.ImageData, seed: int,
             opts: FlowEvaluateOptions) -> dict[str, Any]:
    """FID/KID of ``num_samples`` samples (quick: 500; ``--full``: 10,000, its cost printed
    first) for every (solver, NFE) asked for, with the sampling seconds per image; keys are
    labelled by the evaluations actually spent (heun20, euler10)."""
    bad = sorted(set(opts.solvers) - set(FLOW_SOLVERS))
    if bad:
        raise ConfigError(f"unknown ODE solver(s) {bad}; expected some of {list(FLOW_SOLVERS)}")
    for budget in opts.nfe:
        for solver in opts.solvers:
            flow_nfe(solver, budget)  # fail before any work on a bad budget
    scorer = Scorer.for_run(run, split_data, opts, seed)
    n = scorer.num_samples
    results: dict[str, Any] = {}
    if opts.full:
        def probe(count: int, calls: int) -> torch.Tensor:
            return generate(run, count, torch.Generator(device=run.device).manual_seed(seed),
                            "euler", calls, class_labels(run.model, count), opts.guidance,
                            opts.batch_size)

        parts = [(n, f"{s.capitalize()}-{flow_nfe(s, b)}", flow_nfe(s, b))
                 for s in opts.solvers for b in opts.nfe]
        results["full_protocol"] = announce_cost(
            parts, seconds_per_call(probe),
            " + the Inception FID" if scorer.inception_weights else "")
    for solver in opts.solvers:
        for budget in opts.nfe:
            nfe = flow_nfe(solver, budget)
            fake, seconds = scorer.time(
                lambda n, s=solver, b=budget: generate(
                    run, n, torch.Generator(device=run.device).manual_seed(seed), s, b,
                    class_labels(run.model, n), opts.guidance, opts.batch_size), n)
            label = f"{solver}{nfe}"
            results.update(scorer.score(fake, label))
            results[f"seconds_per_image_{label}"] = round(seconds, 4)
            results[f"nfe_{label}"] = nfe
    return {**results, "guidance": opts.guidance, **scorer.common()}


# --- figures -------------------------------------------------------------------------------------

PATH_TIMES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def path_figure(run: FlowRun, out: Path, split: str = "test", seed: int = 0, **_: Any) -> Path:
    """The probability path: x_t = (1 - t) x_0 + t eps for eight test images, one row per t,
    with one noise draw so that rows differ only in t."""
    x0 = display_images(run, split)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    rows = [(f"t = {t:.1f}", to_uint8((1 - t) * x0 + t * eps)) for t in PATH_TIMES]
    return plots.save_rows(rows, out, title="straight probability path x_t = (1 - t) x_0 + t eps "
                                            "(data at t = 0, noise at t = 1)")


def trajectories_figure(run: FlowRun, out: Path, seed: int = 0, count: int = 8, nfe: int = 10,
                        **_: Any) -> Path:
    """Euler sampling from noise to images: x_t of ``count`` samples at every step of a
    ``nfe``-step trajectory, noise on top."""
    snapshots: list[torch.Tensor] = []
    gen = torch.Generator(device=run.device).manual_seed(seed)
    with bf16_autocast(run):
        flow_ode(run.model, (count, *run.image_shape), nfe, "euler",
                 class_labels(run.model, count), gen=gen, time_scale=TIME_SCALE,
                 snapshots=snapshots)
    times = torch.linspace(1.0, 0.0, nfe + 1).tolist()
    rows = [(f"t = {t:.1f}", to_uint8(x)) for t, x in zip(times, snapshots)]
    return plots.save_rows(rows, out, title=f"flow sampling, Euler, {nfe} steps: noise (top) to "
                                            f"data (bottom)")


def samples_figure(run: FlowRun, out: Path, seed: int = 0, n: int = 100, quick: bool = False,
                   **_: Any) -> Path:
    """A 10 x 10 gallery of Heun-20 samples (row-major; conditional runs: column = class); after
    training (``quick``) 6 x 6 Heun-10 samples."""
    gen = torch.Generator(device=run.device).manual_seed(seed)
    n = QUICK_FIGURE_IMAGES if quick else n
    nfe = QUICK_FIGURE_NFE if quick else 20
    return gallery_figure(generate(run, n, gen, nfe=nfe, y=class_labels(run.model, n)), out,
                          nrow=6 if quick else 10)


def interpolation_figure(run: FlowRun, out: Path, seed: int = 0, quick: bool = False,
                         **_: Any) -> Path:
    """What a user can steer: Heun-20 ODE images between pairs of noises (the ODE maps each noise
    to one image), and for class-conditional runs the classes across guidance scales; after
    training (``quick``) 4 pairs, 8 images each, Heun-10."""
    nfe = QUICK_FIGURE_NFE if quick else 20
    rows, per_row = QUICK_INTERPOLATION if quick else (6, 10)
    return noise_interpolation_figure(
        run, out, lambda x1, y, w: flow_ode(run.model, x1.shape, nfe, "heun", y, w, x1=x1,
                                            time_scale=TIME_SCALE), seed, rows, per_row)


def latent_map(run: FlowRun) -> LatentMap:
    """x_1 ~ N(0, I) -> x_0 by the Heun-20 ODE (the default sampler), unconditional (null label)
    for class-conditional runs."""
    return run.image_shape, lambda x1: flow_ode(run.model, x1.shape, 20, "heun", None, x1=x1,
                                                time_scale=TIME_SCALE).float()


FIGURES = {"path": path_figure, "trajectories": trajectories_figure, "samples": samples_figure,
           "interpolation": interpolation_figure, "curves": curves_figure}

RECIPE = Recipe(
    name="flow",
    summary="flow matching (rectified flow): velocity UNet, Euler and Heun ODE sampling",
    config=FlowConfig,
    presets=PRESETS,
    build=build_unet,
    setup=setup,
    step=step,
    preview=preview,
    sample=sample,
    sample_options=FlowSampleOptions,
    evaluate=evaluate,
    evaluate_options=FlowEvaluateOptions,
    figures=FIGURES,
    default_figures=lambda run: list(FIGURES),
    key_config=("arch", "channels", "time_sampling", "class_conditional", "ema_sigma_rel", "steps",
                "batch_size", "lr"),
    headline=("fid_heun20", "kid_heun20", "seconds_per_image_heun20"),
    kind="flow-matching",
    demo=(DemoRun("flow", "default",
                  dict(dataset="digits", channels=(16, 32), steps=600, batch_size=64, lr=1e-3,
                       num_threads=1, log_every=20,
                       checkpoint_every=10_000),
                  dict(num_samples=200, solvers=("euler", "heun"), nfe=(10, 20))),),
    # the demo's mini-comparison on the 8x8 digits: the demo's small UNet, one thread
    demo_compare_overrides=dict(channels=(16, 32), num_threads=1),
    control_figure="interpolation",
    nfe_options=lambda nfe: {"solver": "heun", "nfe": nfe},
    latent_map=latent_map,
)
