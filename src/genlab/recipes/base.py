"""The recipe interface: what a model family hands to the drivers (the training loop, sampling,
evaluation, figures, the report, the demo and the CLI), and the pieces several recipes share.

A ``Recipe`` wires the math (networks in ``models/``, losses in ``objectives``, samplers in
``samplers``) into a family: its config and presets, its networks, one training step, a preview,
how it samples, how it is scored, which figures it draws, and the options of its ``sample`` and
``evaluate`` verbs as dataclasses (the CLI flags come from their fields, like the train flags from
the config's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab import checkpoint, data, plots
from genlab.checkpoint import Run
from genlab.config import BaseConfig
from genlab.errors import ConfigError, TrainingDiverged, on_every_rank
from genlab.hardware import native_bf16
from genlab.images import to_uint8
from genlab.samplers import slerp


def adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam with the fused kernel (one op per step instead of ~10 per tensor: 1.4x faster for the
    MLP VAE on CPU, and the standard choice on CUDA)."""
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)


def check_finite(loss: torch.Tensor, step: int, what: str = "loss") -> None:
    """Stop before a non-finite loss reaches the weights."""
    if not torch.isfinite(loss).item():
        raise TrainingDiverged(f"{what} is {loss.item()} at step {step}")


@dataclass
class TrainState:
    """What a step function works on: the modules, their optimizers and the run's noise source.

    ``update`` is the one place that turns a loss into a weight update (backward, clipping,
    optimizer step); objectives only compute values. Under gradient accumulation the loop calls
    the step once per micro-batch and sets ``micro``, ``micro_batches`` and ``micro_weight``
    (the micro-batch's share of the batch): ``update`` zeroes the gradients at the first,
    backpropagates each loss times its share (so the summed gradient is that of the batch mean),
    and clips and steps after the last.
    """

    cfg: Any
    accelerator: Any
    modules: dict[str, nn.Module]  # saved in checkpoints; 'model' is trained, 'ema' its average
    optimizers: dict[str, torch.optim.Optimizer]
    gen: torch.Generator  # every random draw of the loop
    info: dict[str, Any]  # the training data's image_shape, classes, num_train
    extra: dict[str, Any] = field(default_factory=dict)  # small per-family state, checkpointed
    cache: dict[str, Any] = field(default_factory=dict)  # derived objects, not checkpointed
    micro: int = 0  # index of the micro-batch being stepped on
    micro_batches: int = 1  # micro-batches of this update
    micro_weight: float = 1.0  # this micro-batch's share of the update's images

    @property
    def last_micro_batch(self) -> bool:
        """Whether ``update`` steps the optimizers on this micro-batch (always, without
        accumulation)."""
        return self.micro == self.micro_batches - 1

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def autocast(self):
        return self.accelerator.autocast()

    def unwrap(self, name: str = "model") -> nn.Module:
        return self.accelerator.unwrap_model(self.modules[name])

    def inference_model(self) -> nn.Module:
        """The network previews sample from: the EMA copy where the run keeps one."""
        return self.unwrap("ema") if "ema" in self.modules else self.unwrap("model")

    def mean_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over the processes of a multi-process run (the tensor itself on
        one): for a quantity every process must take the same decision on."""
        if self.accelerator.num_processes == 1:
            return value
        return self.accelerator.reduce(value.detach().float(), "mean")

    def check_finite(self, loss: torch.Tensor, step: int, what: str = "loss") -> None:
        """Stop before a non-finite loss reaches the weights. Under several processes each sees
        every process's loss, so a NaN on any of them stops all of them at this step (one that
        stopped alone would leave the others waiting in the gradient all-reduce)."""
        if self.accelerator.num_processes == 1:
            check_finite(loss, step, what)
            return
        losses = self.accelerator.gather(loss.detach().float().reshape(1)).tolist()
        bad = [rank for rank, value in enumerate(losses) if not math.isfinite(value)]
        if bad:
            raise on_every_rank(TrainingDiverged(
                f"{what} is {losses[bad[0]]} at step {step} on rank {bad[0]}"))

    def update(self, name: str, loss: torch.Tensor, step: int,
               what: str = "loss") -> dict[str, torch.Tensor]:
        """One optimizer step of module ``name`` on ``loss``: refuse a non-finite loss, backward,
        clip the gradient norm to cfg.grad_clip (when > 0), step. Returns the logged grad norm.
        Under accumulation: zero the gradients at the first micro-batch, add this one's
        (weighted by its share of the batch), and clip and step only after the last."""
        self.check_finite(loss, step, what)
        opt = self.optimizers[name]
        if self.micro == 0:
            opt.zero_grad(set_to_none=True)
        self.accelerator.backward(loss if self.micro_batches == 1 else loss * self.micro_weight)
        logs: dict[str, torch.Tensor] = {}
        if not self.last_micro_batch:
            return logs
        if self.cfg.grad_clip > 0:
            norm = self.accelerator.clip_grad_norm_(self.modules[name].parameters(),
                                                    self.cfg.grad_clip)
            logs["grad_norm" if name == "model" else f"grad_norm_{name}"] = norm
        opt.step()
        return logs

    def no_sync(self, module: nn.Module | None):
        """DDP must not wait for gradients of a module whose weights take none in a backward."""
        return self.accelerator.no_sync(module) if module is not None else nullcontext()


@dataclass(frozen=True)
class DemoRun:
    """One run of ``genlab demo`` on the embedded digits: a preset with overrides, then
    ``genlab evaluate`` with ``evaluate`` options."""

    name: str
    preset: str
    overrides: dict[str, Any]
    evaluate: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sweep:
    """A one-field sweep (``genlab sweep FAMILY``): the field, its default values, the figure
    that compares the runs (run folders, output path -> PNG) and that figure's file name."""

    field: str
    values: tuple[Any, ...]
    figure: Callable[[list[Path], Path], Path]
    figure_name: str


@dataclass(frozen=True)
class NoOptions:
    """This verb takes no family options."""


LatentMap = tuple[tuple[int, ...], Callable[[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class ImageToImage:
    """What a family whose model maps images to images (the denoiser) hands to ``genlab
    denoise`` and to ``genlab export``. The verb owns the files, depths and scores; this owns the
    family's noise model and network call. A family that draws images instead leaves
    ``Recipe.image_to_image`` None."""

    corrupt: Callable[[Run, torch.Tensor, torch.Generator, torch.dtype, Any], torch.Tensor]
    """(run, clean images in [-1, 1], generator, stored dtype (uint8 or uint16), noise options)
    -> the run's corruption of them, rounded to that depth's levels as a file would store it,
    in [-1, 1] (``--add-noise``)"""
    noise_options: type
    """the options of the noise ``corrupt`` adds, as a dataclass (a field left None: the run's
    own level); the CLI's ``genlab denoise`` flags come from its fields"""
    apply: Callable[[Run, torch.Tensor, str], torch.Tensor]
    """(run, inputs (B, C, H, W) in [-1, 1] of any size and channel count, precision 'fp32' or
    'bf16') -> the outputs, same shape, in [-1, 1]"""
    min_size: Callable[[Run], int]
    """run -> the smallest height and width an input may have (the network's receptive field)"""
    grid: Callable[[Run, Path], Path]
    """(run, PNG path) -> the figure an exported folder shows as its grid (inputs and outputs
    on test images)"""
    task: str = "image-to-image"
    """the Hugging Face pipeline tag of an exported model card"""
    channels_last: bool = False
    """load the network in channels-last memory for inference (the conv denoiser: 1.7x faster
    convolutions on CPU, identical outputs)"""


@dataclass(frozen=True)
class Recipe:
    """One model family, as the drivers see it. Every slot is filled but the ones a family may
    lack (sample, sweep, likelihood and its model, nfe_options, latent_map, image_to_image):
    tests/test_config.py checks."""

    name: str
    """the family's name: the CLI word, config.json's 'family', the run folder's prefix"""
    summary: str
    """one line for --help and the report"""
    config: type[BaseConfig]
    presets: dict[str, dict[str, Any]]
    """named overrides of the config's defaults: 'default' (corrected) and 'reference'"""
    build: Callable[[Any, tuple[int, int, int], int], dict[str, nn.Module]]
    """(cfg, image_shape, num_classes) -> the modules a run trains and saves ('model', ...)"""
    setup: Callable[[Any, dict[str, nn.Module]], dict[str, torch.optim.Optimizer]]
    """(cfg, modules) -> one optimizer per trained module"""
    step: Callable[[TrainState, torch.Tensor, torch.Tensor, int], dict[str, torch.Tensor]]
    """one training step on a batch (x in [-1, 1], labels, step index) -> scalar logs"""
    preview: Callable[[TrainState, int, torch.Generator], torch.Tensor]
    """n preview images in [-1, 1], drawn at each checkpoint"""
    sample_options: type
    evaluate: Callable[[Run, data.ImageData, int, Any], dict[str, Any]]
    """(run, evaluation split, seed, evaluate options) -> metrics"""
    evaluate_options: type
    figures: dict[str, Callable[..., Path]]
    """figure kind -> fn(run, out, split=, seed=, num_images=) -> PNG path"""
    default_figures: Callable[[Run], list[str]]
    """the figure kinds drawn after training, each called with quick=True: a few images and
    sampler steps (QUICK_FIGURE_IMAGES, QUICK_FIGURE_NFE), never T ancestral steps"""
    key_config: tuple[str, ...]
    """config fields the report shows for each run"""
    headline: tuple[str, ...]
    """metrics.json keys the report's family table shows"""
    demo: tuple[DemoRun, ...]
    """the runs of ``genlab demo`` on the embedded digits"""
    kind: str
    """what kind of model this is, as the textbook claims of ``genlab compare`` name families:
    'autoencoder', 'adversarial', 'diffusion', 'flow-matching' or 'autoregressive'; a family
    joins the claims its kind is named in"""
    sample: Callable[[Run, int, torch.Generator, Any], torch.Tensor] | None = None
    """(run, n, generator, sample options) -> n images in [-1, 1]; None: the family draws no
    images of its own (it maps images to images: ``image_to_image``)"""
    demo_figures: Callable[[list[Path], Path], list[tuple[str, Path]]] = lambda runs, out: []
    """cross-run figures of the demo: (run folders, demo folder) -> [(caption, PNG)]"""
    demo_compare_overrides: dict[str, Any] = field(default_factory=dict)
    """config values that shrink the default preset for the demo's mini-comparison on the 8x8
    digits (smaller networks, one thread); empty: the preset as it is"""
    sweep: Sweep | None = None
    upgrade: Callable[[dict[str, Any]], dict[str, Any]] = lambda values: values
    """config.json values written by an older genlab -> current ones (may change the family)"""
    image_to_image: ImageToImage | None = None
    """the run's model maps images to images (``genlab denoise``); None: it does not"""
    start_message: Callable[[Any], str | None] = lambda cfg: None
    """a line printed when training starts (a setting's known trap), or None"""
    control_figure: str = "samples"
    """the figure kind that shows what a user can steer (interpolations, traversals)"""
    likelihood: Callable[[Run, data.ImageData, int], dict[str, Any]] | None = None
    """(run, test split, seed) -> a bound on the test log-likelihood, where the family has one"""
    likelihood_model: str | None = None
    """the pixel model that likelihood is of (set where ``likelihood`` is): 'bernoulli' (grey
    levels as Bernoulli probabilities, nats of a density that is not a distribution over the 256
    levels), 'discretised-gaussian-256' or 'categorical-256' (distributions over the 256
    levels); bounds under different pixel models are different quantities, never ranked against
    each other"""
    likelihood_scale: str | None = None
    """the data ``likelihood`` is a distribution over, where families meet on one scale:
    '8-bit' (the test images' 256 levels, in bits per dimension, exact or an upper bound), so
    ``genlab compare`` puts every family that declares it in one column and tests them against
    each other; None where it is not a distribution over quantised images (a Bernoulli of grey
    levels), shown in a column of its own"""
    nfe_options: Callable[[int], dict[str, Any]] | None = None
    """a budget of network evaluations -> sample options that spend it (iterative samplers)"""
    latent_map: Callable[[Run], LatentMap] | None = None
    """run -> (shape of one latent, a deterministic map from latents (n, *shape) ~ N(0, I) to
    images in [-1, 1]): what a user steers, as the path-length score of ``compare`` sees it"""


# --- pieces several recipes share ------------------------------------------------------------


def labels_with_dropout(s: TrainState, y: torch.Tensor, p: float) -> torch.Tensor:
    """Labels with probability ``p`` replaced by the null label, so the same network also learns
    the unconditional model that classifier-free guidance needs (Ho & Salimans 2022)."""
    drop = torch.rand(y.shape[0], generator=s.gen, device=y.device) < p
    return torch.where(drop, torch.full_like(y, s.unwrap().null_label), y)


def class_labels(net: nn.Module, n: int, label: int | None = None) -> torch.Tensor | None:
    """Labels for n images of a class-conditional net: class ``label``, else 0, 1, ..., K-1, 0,
    ... in turn; None for an unconditional net (a label for one is refused)."""
    num_classes = getattr(net, "num_classes", 0)
    device = next(net.parameters()).device
    if label is not None:
        if not num_classes:
            raise ConfigError("a class label was given, but this run is unconditional (train "
                              "with --class-conditional to sample by class)")
        return torch.full((n,), label, dtype=torch.long, device=device)
    if not num_classes:
        return None
    return torch.arange(n, device=device) % num_classes


def inference_precision(run: Run) -> str:
    """The precision a run samples in: its training precision, except that bf16 falls back to
    fp32 on a device that would emulate it (a run trained on an AMX CPU, sampled on AVX2)."""
    native = native_bf16(run.device.type)
    return "bf16" if run.config.precision == "bf16" and native else "fp32"


def bf16_autocast(run: Run):
    """bf16 autocast on the run's device when it samples in bf16, else nothing."""
    return torch.autocast(run.device.type, dtype=torch.bfloat16,
                          enabled=inference_precision(run) == "bf16")


QUICK_FIGURE_IMAGES = 36  # images of a sample gallery drawn after training (6 x 6)
QUICK_FIGURE_NFE = 10  # network calls per image of the iterative samplers' figures after training
QUICK_INTERPOLATION = (4, 8)  # rows x images per row of an interpolation drawn after training


def curves_figure(run: Run, out: Path, **_: Any) -> Path:
    """Every logged loss term over the steps, one panel each."""
    log = checkpoint.read_log(run.run_dir)
    if not log:
        raise ConfigError(f"{run.run_dir}/log.jsonl is empty; nothing to plot")
    keys = [k for k in log[-1] if k not in ("step", "epoch", "lr", "images_per_s", "train_seconds")]
    series = {k: ([r["step"] for r in log if k in r], [r[k] for r in log if k in r]) for k in keys}
    panels = [[k] for k in keys if k != "loss"] or [["loss"]]
    return plots.save_curves(series, out, f"training curves: {run.run_dir.name}", panels=panels)


def gallery_figure(images: torch.Tensor, out: Path, nrow: int = 10) -> Path:
    """A row-major grid of images in [-1, 1]."""
    return plots.save_grid(to_uint8(images), out, nrow=nrow)


GUIDANCE_ROWS = (0.0, 1.0, 2.0, 4.0)  # classifier-free guidance scales of the control figure


def noise_interpolation_figure(run: Run, out: Path,
                               draw: Callable[[torch.Tensor, torch.Tensor | None, float | None],
                                              torch.Tensor],
                               seed: int = 0, rows: int = 6, steps: int = 10) -> Path:
    """Images along great circles between pairs of starting noises (slerp, as Song et al. 2021
    interpolate DDIM noises), one pair per row, through a deterministic sampler
    ``draw(noise, labels, guidance)``. Class-conditional runs fix a class per row, and add one
    row per guidance scale in GUIDANCE_ROWS (0: unconditional, 1: plain conditional) with a
    class per column (0, 1, ...) and one noise per column, so that a column shows what the
    scale does to the same start."""
    gen = torch.Generator().manual_seed(seed)
    shape = (rows, *run.image_shape)
    n0, n1 = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    noise = torch.stack([slerp(n0, n1, float(w)) for w in torch.linspace(0, 1, steps)], dim=1)
    y = class_labels(run.model, rows)
    y = None if y is None else y.repeat_interleave(steps)
    with bf16_autocast(run):
        images = [draw(noise.reshape(rows * steps, *run.image_shape).to(run.device), y, None)]
        if y is not None:
            columns = torch.randn((steps, *run.image_shape), generator=gen).to(run.device)
            labels = class_labels(run.model, steps)
            images += [draw(columns, labels, w) for w in GUIDANCE_ROWS]
    return gallery_figure(torch.cat([i.float().cpu() for i in images]), out, nrow=steps)


def display_examples(split_data: data.ImageData, count: int = 10) -> torch.Tensor:
    """Indices of fixed examples to show: the first image of each class, then the next ones."""
    labels = split_data.labels
    firsts = [int((labels == c).nonzero()[0]) for c in range(len(split_data.classes))
              if (labels == c).any()]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return torch.tensor((firsts + rest)[:count])


def load_split(run: Run, split: str) -> data.ImageData:
    cfg = run.config
    return data.load_split(cfg, split)


QUICK_SAMPLES = 500
"""samples of the default (quick) protocol: well above the feature network's 128 dimensions,
below which the sample covariance is singular and FIDs compare badly"""
FULL_SAMPLES = 10_000
"""samples of the ``--full`` protocol (the usual FID set size)"""
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


@dataclass(frozen=True)
class SampleScoreOptions:
    """Options of every sample-quality evaluation (FID/KID against the held-out split)."""

    num_samples: int | None = None
    """samples scored by FID/KID (default: 500; with --full: 10000)"""
    num_images: int = 0
    """real images of the split to score against (0: all)"""
    feature_steps: int = 0
    """training steps of the feature network (0: the network genlab ships for a named dataset,
    else 1500 steps, trained once and cached)"""
    inception_weights: str | None = None
    """also report the standard Inception-v3 FID with these weights (torch-fidelity's
    pt_inception-2015-12-05-6726825d.pth; needs pip install 'genlab[eval]')"""
    full: bool = False
    """the full protocol: 10000 samples per sampler (DDPM: also 1000 ancestral DDPM-T samples)
    and the Inception FID where torch-fidelity and its weights are found; prints its estimated
    cost first"""


def scored_samples(opts: SampleScoreOptions) -> int:
    """The number of samples each sampler is scored on: num_samples, else the protocol's."""
    if opts.num_samples is not None:
        return opts.num_samples
    return FULL_SAMPLES if opts.full else QUICK_SAMPLES


def inception_weights(opts: SampleScoreOptions) -> str | None:
    """The Inception-v3 weights to score with: the option's, or, under --full, torch-fidelity's
    file in $GENLAB_INCEPTION_WEIGHTS or torch hub's checkpoint folder when torch-fidelity is
    installed; None when there are none."""
    if opts.inception_weights or not opts.full:
        return opts.inception_weights
    import importlib.util
    import os

    if importlib.util.find_spec("torch_fidelity") is None:
        return None
    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    for path in (os.environ.get("GENLAB_INCEPTION_WEIGHTS"), hub):
        if path and Path(path).is_file():
            return str(path)
    return None


def seconds_per_call(draw: Callable[[int, int], Any], images: int = 64, calls: int = 2) -> float:
    """Seconds per image per network call of a sampler, from timing ``draw(images, calls)`` (n
    images with that many network calls each) after a small warm-up draw."""
    draw(2, 1)
    start = time.perf_counter()
    draw(images, calls)
    return (time.perf_counter() - start) / (images * calls)


def announce_cost(parts: list[tuple[int, str, int]], per_call: float,
                  extra: str = "") -> str:
    """Print (to stderr) and return what a protocol will cost: ``parts`` are (images, sampler
    name, network calls per image), ``per_call`` the measured seconds per image per call."""
    import sys

    seconds = sum(n * calls for n, _, calls in parts) * per_call
    what = " + ".join(f"{n} {name} samples" for n, name, _ in parts if n > 0)
    line = (f"full protocol: {what}{extra}, about {_duration(seconds)} on this machine "
            f"(measured on one small batch)")
    print(line, file=sys.stderr, flush=True)
    return line


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


OFFLINE_SCORE = ("FID/KID in the penultimate features of a classifier trained on the dataset's "
                 "train split (not Inception-v3: not comparable to published FIDs)")
LABEL_FREE_SCORE = ("FID/KID in the features of a network trained without labels, contrastively "
                    "(two random views of each train image matched against the others), on the "
                    "dataset's train split (not Inception-v3: not comparable to published FIDs)")
