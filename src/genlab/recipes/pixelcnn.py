"""The gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders"): an autoregressive model p(x) = prod_i p(x_i | x_<i) over pixels in raster order (and
channels R, G, B within a pixel), trained on its exact negative log-likelihood. A 256-level
categorical per pixel (bits per dimension) or a Bernoulli on binarised images (nats per image, the
binarised-MNIST convention); class-conditional on request. Scored by the exact test NLL and the
offline FID/KID of its samples; explained by a sample grid and completions of half-images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from genlab import data, plots
from genlab.batching import bernoulli_targets
from genlab.checkpoint import Run
from genlab.config import BaseConfig
from genlab.errors import ConfigError
from genlab.images import from_unit, to_float, to_uint8, to_unit
from genlab.models.pixelcnn import GatedPixelCNN
from genlab.objectives import pixelcnn_loss, pixelcnn_nll
from genlab.recipes.base import (
    QUICK_FIGURE_IMAGES,
    DemoRun,
    Recipe,
    SampleScoreOptions,
    TrainState,
    adam,
    announce_cost,
    class_labels,
    curves_figure,
    display_examples,
    gallery_figure,
    inference_precision,
    load_split,
    seconds_per_call,
)
from genlab.recipes.scoring import Scorer
from genlab.samplers import in_batches, pixelcnn_positions, sample_pixelcnn

LEVELS = {"categorical-256": 256, "bernoulli": 1}  # logits per pixel and channel


@dataclass(frozen=True)
class PixelCNNConfig(BaseConfig):
    """Gated PixelCNN (van den Oord et al. 2016): vertical and horizontal stacks, gated layers."""

    family: Literal["pixelcnn"] = "pixelcnn"
    """model family"""
    width: int = 64
    """feature maps of each stack (a multiple of the image's channels: one group per channel)"""
    layers: int = 8
    """gated layers (the first with mask A, the others mask B and a residual connection)"""
    first_kernel: int = 7
    """kernel size of the first layer (odd)"""
    kernel: int = 3
    """kernel size of the other layers (odd)"""
    pixel_model: Literal["categorical-256", "bernoulli"] = "categorical-256"
    """'categorical-256' (a softmax over the 256 grey levels; NLL in bits per dimension) or
    'bernoulli' (one logit per pixel and channel, for binarised images; NLL in nats per image)"""
    binarize: bool = False
    """bernoulli: dynamic binarisation in training (a fresh Bernoulli draw of each image each time
    it is seen) and a fixed binarised test set in evaluation; off, the grey levels are the
    Bernoulli targets (the VAE's convention)"""
    class_conditional: bool = False
    """condition every gate on the class label (a learned embedding, paper eq. 4)"""

    def check(self) -> None:
        if self.width <= 0:
            raise ConfigError(f"width must be positive, got {self.width}")
        if self.layers <= 0:
            raise ConfigError(f"layers must be positive, got {self.layers}")
        for name in ("first_kernel", "kernel"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ConfigError(f"{name} must be a positive odd number, got "
                                  f"{getattr(self, name)}")
        if self.binarize and self.pixel_model != "bernoulli":
            raise ConfigError("binarize needs pixel_model 'bernoulli': a 256-level model is "
                              "trained on the grey levels themselves")


PixelCNNRun = Run[PixelCNNConfig]  # a run of this family, typed by its config


PRESETS = {
    # The paper's layer design (7x7 first layer, 3x3 gated layers, residual horizontal stack,
    # skip connections, a 256-way softmax) at a size for MNIST-scale grey images: 15 layers as the
    # paper's ImageNet models, 64 feature maps instead of its 384 (a 28x28 grey image is not a
    # 32x32 RGB one). The 2016 paper reports no MNIST model; binarised MNIST with a Bernoulli
    # output is the setting its predecessor (van den Oord et al. 2016, Pixel RNN) scored PixelCNNs
    # in, in nats per image. These sizes are genlab's reading, not numbers taken from a table.
    "reference": dict(pixel_model="bernoulli", binarize=True, width=64, layers=15,
                      first_kernel=7, kernel=3, lr=1e-3, batch_size=64, epochs=20),
    # The 256-level model (bits per dimension, comparable with other 256-level likelihoods),
    # 8 layers of 64, with a linear learning-rate decay to zero and gradient clipping.
    "default": dict(pixel_model="categorical-256", width=64, layers=8, first_kernel=7, kernel=3,
                    lr=1e-3, batch_size=64, epochs=20, lr_schedule="linear", grad_clip=1.0),
}


def build(cfg: PixelCNNConfig, image_shape: tuple[int, int, int],
          num_classes: int) -> dict[str, nn.Module]:
    """{'model': the gated PixelCNN}."""
    if cfg.class_conditional and num_classes < 2:
        raise ConfigError(f"class_conditional needs a labelled dataset; {cfg.dataset!r} has "
                          f"{num_classes} class(es)")
    return {"model": GatedPixelCNN(image_shape, cfg.width, cfg.layers, LEVELS[cfg.pixel_model],
                                   cfg.first_kernel, cfg.kernel,
                                   num_classes if cfg.class_conditional else 0)}


def setup(cfg: PixelCNNConfig, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
    return {"model": adam(modules["model"].parameters(), cfg.lr)}


def step(s: TrainState, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    """One step on the exact NLL (its mean per dimension)."""
    cfg: PixelCNNConfig = s.cfg
    if cfg.binarize:  # dynamic binarisation: a fresh binary image every time x is drawn
        x = from_unit(torch.bernoulli(to_unit(x), generator=s.gen))
    labels = y.to(x.device).long() if cfg.class_conditional else None
    with s.autocast():
        loss, logs = pixelcnn_loss(s.modules["model"], x, labels)
    return {**logs, **s.update("model", loss, step)}


def preview(s: TrainState, n: int, gen: torch.Generator) -> torch.Tensor:
    net = s.inference_model()
    with s.autocast():
        return sample_pixelcnn(net, (n, *s.info["image_shape"]), class_labels(net, n), gen)


@dataclass(frozen=True)
class PixelCNNSampleOptions:
    """Options of ``genlab sample`` for a PixelCNN run."""

    label: int | None = None
    """class-conditional runs: draw class K (default: the classes in turn)"""
    batch_size: int = 256
    """images per sampling batch (each batch takes C x H x W network calls)"""


def generate(run: PixelCNNRun, n: int, gen: torch.Generator, y: torch.Tensor | None = None,
             batch_size: int = 256) -> torch.Tensor:
    """n images (CPU, [-1, 1]) drawn pixel by pixel, C x H x W network calls per batch."""
    def draw(shape, labels):
        return sample_pixelcnn(run.model, shape, labels, gen)
    return in_batches(draw, n, run.image_shape, y, batch_size, run.device,
                      inference_precision(run))


def sample(run: PixelCNNRun, n: int, gen: torch.Generator,
           opts: PixelCNNSampleOptions) -> torch.Tensor:
    """Autoregressive samples (class-conditional runs: of class ``opts.label``, else the classes
    in turn)."""
    return generate(run, n, gen, class_labels(run.model, n, opts.label), opts.batch_size)


# --- the exact likelihood ------------------------------------------------------------------------


def nll_inputs(run: PixelCNNRun, split_data: data.ImageData, seed: int) -> torch.Tensor:
    """The images the NLL is of, in [-1, 1]: the grey levels (256 levels), their Bernoulli
    targets (the grey levels, or one fixed binarisation drawn with ``seed``) mapped to [-1, 1]."""
    cfg: PixelCNNConfig = run.config
    if cfg.pixel_model == "bernoulli":
        return from_unit(bernoulli_targets(split_data.images, cfg.binarize, seed))
    return to_float(split_data.images)


@torch.no_grad()
def exact_nll(run: PixelCNNRun, split_data: data.ImageData, seed: int, num_images: int = 0,
             batch_size: int = 256) -> dict[str, Any]:
    """The exact NLL of the split's first ``num_images`` images (0: all): nats per image and bits
    per dimension (nats / (D ln 2))."""
    cfg: PixelCNNConfig = run.config
    x = nll_inputs(run, split_data, seed)
    labels = split_data.labels.long()
    if num_images:
        x, labels = x[:num_images], labels[:num_images]
    conditional = getattr(run.model, "num_classes", 0)
    nats = torch.cat([
        pixelcnn_nll(run.model, xb.to(run.device),
                     yb.to(run.device) if conditional else None).cpu()
        for xb, yb in zip(x.split(batch_size), labels.split(batch_size))])
    dims = math.prod(run.image_shape)
    mean = float(nats.mean())
    return {"nll_nats": mean, "nll_bits_per_dim": mean / (dims * math.log(2)),
            "nll_num_images": len(nats), "pixel_model": cfg.pixel_model,
            "likelihood": LIKELIHOOD[cfg.pixel_model] + (", binarised pixels" if cfg.binarize
                                                        else "")
            + (", given the class label" if conditional else "")}


LIKELIHOOD = {"categorical-256": "exact, 256-level categorical per pixel and channel",
              "bernoulli": "exact, Bernoulli per pixel and channel"}


def likelihood(run: PixelCNNRun, split_data: data.ImageData, seed: int) -> dict[str, Any]:
    """The exact NLL of the first 1000 test images, in nats and bits per dimension (a run whose
    pixel model is not the recipe's ``likelihood_model``: under ``nll_bits_per_dim_<model>``,
    and ``nll_bits_per_dim`` None)."""
    m = exact_nll(run, split_data, seed, num_images=1000)
    out = {"nll_nats": m["nll_nats"], "nll_bits_per_dim": m["nll_bits_per_dim"],
           "bound": "exact", "pixel_model": m["pixel_model"], "likelihood": m["likelihood"],
           "num_images": m["nll_num_images"]}
    if m["pixel_model"] != RECIPE.likelihood_model:
        # the recipe declares one pixel model for the family; a run under another one keeps its
        # number under its own key, so that it is never ranked among the declared model's
        out[f"nll_bits_per_dim_{m['pixel_model']}"] = out["nll_bits_per_dim"]
        out["nll_bits_per_dim"] = None
    return out


@dataclass(frozen=True)
class PixelCNNEvaluateOptions(SampleScoreOptions):
    """Options of ``genlab evaluate`` for a PixelCNN run."""

    nll_images: int = 0
    """test images the exact NLL is computed on (0: all)"""
    batch_size: int = 256
    """images per batch of the NLL and of sampling"""


def evaluate(run: PixelCNNRun, split_data: data.ImageData, seed: int,
             opts: PixelCNNEvaluateOptions) -> dict[str, Any]:
    """The exact test NLL (nats per image and bits per dimension), and the FID/KID of
    ``num_samples`` samples against the split in the features of the dataset's own classifier,
    with the sampling seconds and network calls per image."""
    results = exact_nll(run, split_data, seed, opts.nll_images, opts.batch_size)
    scorer = Scorer.for_run(run, split_data, opts, seed)
    calls = pixelcnn_positions(run.image_shape)
    if opts.full:
        def probe(n: int, _calls: int) -> torch.Tensor:
            return generate(run, n, torch.Generator(device=run.device).manual_seed(seed),
                            class_labels(run.model, n), opts.batch_size)

        # a probe draws whole images: its time per image is divided by the calls it made
        per_call = seconds_per_call(probe, images=8, calls=1) / calls
        results["full_protocol"] = announce_cost(
            [(scorer.num_samples, "PixelCNN", calls)], per_call,
            " + the Inception FID" if scorer.inception_weights else "")
    gen = torch.Generator(device=run.device).manual_seed(seed)
    fake, seconds = scorer.time(
        lambda n: generate(run, n, gen, class_labels(run.model, n), opts.batch_size),
        scorer.num_samples)
    scores = scorer.score(fake, "pixelcnn")
    return {**results, "fid": scores["fid_pixelcnn"], "kid": scores["kid_pixelcnn"],
            "kid_std": scores["kid_std_pixelcnn"],
            **{k: v for k, v in scores.items() if k.startswith("inception")},
            "num_samples": len(fake), "seconds_per_image": seconds, "nfe": calls,
            **scorer.common()}


# --- figures -------------------------------------------------------------------------------------


def samples_figure(run: PixelCNNRun, out: Path, seed: int = 0, n: int = 100, quick: bool = False,
                   **_: Any) -> Path:
    """A 10 x 10 gallery of samples (row-major; class-conditional runs: column = class); after
    training (``quick``) 6 x 6."""
    gen = torch.Generator(device=run.device).manual_seed(seed)
    n = QUICK_FIGURE_IMAGES if quick else n
    return gallery_figure(generate(run, n, gen, class_labels(run.model, n)), out,
                          nrow=6 if quick else 10)


def completions_figure(run: PixelCNNRun, out: Path, split: str = "test", seed: int = 0,
                       quick: bool = False, **_: Any) -> Path:
    """What a user can steer: the top half of ten test images given (its bottom half shown grey),
    the bottom half drawn pixel by pixel (three draws; after training, ``quick``, two), then the
    originals. Class-conditional runs complete each image given its own label."""
    split_data = load_split(run, split)
    index = display_examples(split_data)
    x = nll_inputs(run, split_data, seed)[index]
    labels = split_data.labels[index].long().to(run.device)
    y = labels if getattr(run.model, "num_classes", 0) else None
    channels, height, width = run.image_shape
    start = (height // 2) * width * channels                  # positions of the given half
    given = x.clone()
    given[:, :, height // 2:] = 0.0
    gen = torch.Generator(device=run.device).manual_seed(seed)
    rows = [("top half given", to_uint8(given))]
    for k in range(2 if quick else 3):
        with torch.autocast(run.device.type, dtype=torch.bfloat16,
                            enabled=inference_precision(run) == "bf16"):
            drawn = sample_pixelcnn(run.model, x.shape, y, gen, x=x, start=start)
        rows.append((f"completion {k + 1}", to_uint8(drawn.float().cpu())))
    rows.append(("original", to_uint8(x)))
    return plots.save_rows(rows, out, title=f"completions of the bottom half ({split} split)")


FIGURES = {"samples": samples_figure, "completions": completions_figure, "curves": curves_figure}

RECIPE = Recipe(
    name="pixelcnn",
    summary="gated PixelCNN: autoregressive, exact NLL (256 levels or Bernoulli), pixel by pixel",
    config=PixelCNNConfig,
    presets=PRESETS,
    build=build,
    setup=setup,
    step=step,
    preview=preview,
    sample=sample,
    sample_options=PixelCNNSampleOptions,
    evaluate=evaluate,
    evaluate_options=PixelCNNEvaluateOptions,
    figures=FIGURES,
    default_figures=lambda run: list(FIGURES),
    key_config=("pixel_model", "width", "layers", "binarize", "class_conditional", "steps",
                "epochs", "lr"),
    headline=("nll_bits_per_dim", "nll_nats", "fid", "seconds_per_image"),
    kind="autoregressive",
    demo=(DemoRun("pixelcnn", "default",
                  dict(dataset="digits", width=16, layers=4, first_kernel=5, steps=300,
                       batch_size=64, log_every=20, checkpoint_every=10_000, num_threads=1),
                  dict(num_samples=200)),),
    # the demo's mini-comparison on the 8x8 digits: the demo's small stacks, one thread
    demo_compare_overrides=dict(width=16, layers=4, first_kernel=5, num_threads=1),
    control_figure="completions",
    likelihood=likelihood,
    # static: the pixel model of the default preset; a 'bernoulli' run's bits per dimension are
    # filed under it too (its metrics carry 'pixel_model' to tell them apart)
    likelihood_model="categorical-256",
    likelihood_scale="8-bit",
    nfe_options=None,
    latent_map=None,
)
