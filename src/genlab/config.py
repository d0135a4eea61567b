"""Run configurations: frozen dataclasses, one per model family, with a docstring under each field.

The CLI flags and their help text are generated from these fields (``--latent-dim`` for
``latent_dim``), so every default is written exactly once. Named presets (``reference``: the
notebook's exact settings, ``default``: corrected settings) are overrides on top of the class
defaults. A config round-trips through JSON (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass, fields
from functools import cache
from typing import Any, Literal

from genlab.errors import ConfigError


@dataclass(frozen=True)
class BaseConfig:
    """Fields shared by every family: data, optimisation, bookkeeping."""

    dataset: str = "digits"
    """dataset name: digits, mnist, fashion-mnist, cifar10, fer2013 or folder:PATH"""
    data_dir: str | None = None
    """folder holding dataset files (default: ~/.cache/genlab/data); torchvision downloads there"""
    download: bool = True
    """download torchvision datasets that are missing from data_dir"""
    run_dir: str | None = None
    """run folder (default: runs/<family>-<dataset>-<time>)"""
    seed: int = 0
    """seed for initialisation, batch order and all sampling noise"""
    epochs: int = 20
    """passes over the training split (ignored when steps > 0)"""
    steps: int = 0
    """optimizer steps to train for; 0 means use epochs"""
    max_minutes: float = 0.0
    """stop after this many minutes of training (summed over resumes) with a checkpoint; 0 = no
    limit. Schedules still follow epochs/steps, so set those to what fits the budget"""
    batch_size: int = 128
    """images per optimizer step (per process)"""
    lr: float = 1e-3
    """Adam learning rate"""
    precision: Literal["fp32", "bf16"] = "fp32"
    """'fp32', or 'bf16' autocast (faster on CPUs with AMX/AVX512-BF16 and on recent GPUs)"""
    channels_last: bool = False
    """keep conv activations in channels-last memory format (faster convolutions on CPU and GPU)"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """'auto' picks CUDA when available"""
    log_every: int = 50
    """write a line to log.jsonl every this many steps"""
    checkpoint_every: int = 1000
    """write a checkpoint every this many steps (and always at the end)"""
    num_threads: int = 0
    """CPU threads for torch; 0 keeps torch's default"""


@dataclass(frozen=True)
class VAEConfig(BaseConfig):
    """Variational autoencoder (Kingma & Welling 2014) with a Bernoulli (BCE) likelihood."""

    family: Literal["vae"] = "vae"
    """model family"""
    arch: Literal["mlp", "conv"] = "mlp"
    """'mlp' (fully connected, as the reference) or 'conv' (for 3-channel and larger images)"""
    latent_dim: int = 2
    """size of the latent code z"""
    hidden: tuple[int, ...] = (256,)
    """hidden widths of the MLP encoder (the decoder mirrors them); conv: channels per stage"""
    activation: Literal["relu", "elu", "silu"] = "relu"
    """hidden-layer nonlinearity"""
    beta: float = 0.1
    """weight of the KL term (1.0 gives the true ELBO)"""
    binarize: bool = False
    """dynamic binarisation in training, a fixed binarised test set in evaluation"""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """learning-rate schedule over the run"""
    kl_warmup_steps: int = 0
    """ramp beta linearly from 0 over this many steps (0: no warm-up)"""


@dataclass(frozen=True)
class GANConfig(BaseConfig):
    """Generative adversarial network: a conditional denoiser (noisy -> clean) or a DCGAN."""

    family: Literal["gan"] = "gan"
    """model family"""
    mode: Literal["denoise", "generate"] = "denoise"
    """'denoise': conditional GAN noisy -> clean (pix2pix); 'generate': unconditional DCGAN"""
    arch: Literal["reference", "unet"] = "unet"
    """generator architecture: the notebook's 'reference' conv net, or a small 'unet'"""
    disc: Literal["reference", "patch"] = "patch"
    """discriminator: the notebook's 'reference' net, or a PatchGAN"""
    width: int = 32
    """base channel count of the generator"""
    noise: Literal["poisson", "gaussian"] = "poisson"
    """corruption model"""
    peak: float = 255.0
    """Poisson: photons at white (255 = the reference: the grey level is the rate)"""
    sigma: float = 25.0
    """Gaussian: noise standard deviation in grey levels"""
    l1_weight: float = 100.0
    """weight of the L1 reconstruction term in the generator loss (pix2pix lambda)"""
    adv_weight: float = 1.0
    """weight of the adversarial term (0 trains the L1-only ablation, no discriminator; in
    'generate' mode it only scales the generator's loss)"""
    latent_dim: int = 100
    """'generate' mode: size of the noise vector"""
    lr_d: float = 1e-4
    """Adam learning rate of the discriminator"""
    beta1: float = 0.5
    """Adam beta1 of both optimizers (0.5 as in pix2pix and DCGAN; the notebook's Keras: 0.9)"""
    max_d_wins: int = 2000
    """stop as diverged after this many consecutive steps with D(x) > 0.99 and D(G(.)) < 0.01"""


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
    class_conditional: bool = False
    """condition on class labels (with label dropout for classifier-free guidance)"""
    label_dropout: float = 0.1
    """probability of replacing the label by the null label in training"""
    ema_decay: float = 0.999
    """decay of the exponential moving average of the weights"""
    grad_clip: float = 1.0
    """clip the gradient norm to this (0: off)"""
    warmup_steps: int = 200
    """linear learning-rate warm-up steps"""
    hflip: bool = False
    """random horizontal flips"""
    single_image: str | None = None
    """train on copies of one image: a file path or a dataset index"""
    res_blocks: int = 1
    """'resnet' UNet: residual blocks per resolution on the down path (one more on the way up)"""


CONFIGS: dict[str, type[BaseConfig]] = {"vae": VAEConfig, "gan": GANConfig, "ddpm": DDPMConfig}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "vae": {
        # The reference notebook: 784-256-z MLP, BCE + 0.1 * KL, Adam 1e-3, batch 128, 20 epochs.
        "reference": dict(arch="mlp", hidden=(256,), latent_dim=2, beta=0.1, lr=1e-3,
                          batch_size=128, epochs=20),
        # Corrected: the true ELBO (beta = 1), a wider and deeper MLP, cosine learning-rate decay.
        "default": dict(arch="mlp", hidden=(512, 256), activation="elu", latent_dim=2, beta=1.0,
                        lr=1e-3, batch_size=128, epochs=20, lr_schedule="cosine"),
    },
    "gan": {
        # The notebook's nets and Keras Adam(1e-4) (beta1 = 0.9), trained as a conditional GAN.
        "reference": dict(mode="denoise", arch="reference", disc="reference", dataset="fer2013",
                          lr=1e-4, lr_d=1e-4, beta1=0.9, batch_size=64, epochs=50, peak=255.0),
        # PSNR-first: pix2pix's adversarial weight (1 per 100 of L1) cost 0.9 dB against the L1-only
        # ablation on FER at peak 255 within the 30-minute budget; at 0.02 the discriminator only
        # nudges textures. `--adv-weight 1` is the sharp pix2pix setting.
        "default": dict(mode="denoise", arch="unet", disc="patch", dataset="fer2013", lr=2e-4,
                        lr_d=2e-4, batch_size=64, epochs=50, peak=255.0, adv_weight=0.02),
    },
    "ddpm": {
        # The notebook: T = 300 with raw linear betas 1e-4..0.02 (alpha_bar_T ~ 0.05), its UNet.
        "reference": dict(num_steps=300, schedule="linear", arch="reference",
                          channels=(64, 128, 256, 512, 1024), dataset="cifar10", lr=1e-3,
                          batch_size=128, ema_decay=0.0, grad_clip=0.0, warmup_steps=0),
        # lr 1e-3 on batches of 64 (with the 200-step warm-up, clipping and EMA): on MNIST the
        # eps-loss reached after 0.2 epochs what lr 2e-4 on batches of 128 reached after 0.53.
        "default": dict(num_steps=1000, schedule="cosine", arch="resnet", channels=(32, 64, 128),
                        lr=1e-3, batch_size=64),
    },
}


def make_config(family: str, preset: str = "default", **overrides: Any) -> BaseConfig:
    """The named preset of one family, with field overrides applied and checked."""
    if family not in CONFIGS:
        raise ConfigError(f"unknown model family {family!r}; expected one of {sorted(CONFIGS)}")
    if preset not in PRESETS[family]:
        raise ConfigError(
            f"unknown preset {preset!r} for {family}; expected one of {sorted(PRESETS[family])}"
        )
    values = {**PRESETS[family][preset], **overrides}
    return from_dict({"family": family, **values})


def to_dict(cfg: BaseConfig) -> dict[str, Any]:
    """Plain JSON-ready dict (tuples become lists)."""
    return {f.name: _jsonable(getattr(cfg, f.name)) for f in fields(cfg)}


def from_dict(values: dict[str, Any]) -> BaseConfig:
    """Inverse of ``to_dict``: unknown fields and wrongly typed values raise ConfigError."""
    family = values.get("family")
    if family not in CONFIGS:
        raise ConfigError(f"unknown model family {family!r}; expected one of {sorted(CONFIGS)}")
    cls = CONFIGS[family]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {family} config field(s) {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    checked = {name: _coerce(name, value, hints[name]) for name, value in values.items()}
    cfg = cls(**checked)
    validate(cfg)
    return cfg


def replace(cfg: BaseConfig, **changes: Any) -> BaseConfig:
    """A copy of ``cfg`` with fields changed, checked like ``from_dict``."""
    return from_dict({**to_dict(cfg), **changes})


def validate(cfg: BaseConfig) -> None:
    """Range checks that no type annotation can express."""
    positive = ["batch_size", "log_every", "checkpoint_every"]
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(cfg, name)}")
    for name in ["epochs", "steps", "num_threads", "seed"]:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.epochs == 0 and cfg.steps == 0:
        raise ConfigError("nothing to train: set epochs > 0 or steps > 0")
    if cfg.lr <= 0:
        raise ConfigError(f"lr must be positive, got {cfg.lr}")
    if isinstance(cfg, VAEConfig):
        if cfg.latent_dim <= 0:
            raise ConfigError(f"latent_dim must be positive, got {cfg.latent_dim}")
        if cfg.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {cfg.beta}")
        if not cfg.hidden or min(cfg.hidden) <= 0:
            raise ConfigError(f"hidden must be positive widths, got {cfg.hidden}")
    if isinstance(cfg, GANConfig):
        if cfg.peak <= 0:
            raise ConfigError(f"peak (photons at white) must be positive, got {cfg.peak}")
        if cfg.sigma <= 0:
            raise ConfigError(f"sigma (grey levels) must be positive, got {cfg.sigma}")
    if isinstance(cfg, DDPMConfig):
        if cfg.num_steps < 2:
            raise ConfigError(f"num_steps must be >= 2, got {cfg.num_steps}")
        if not 0.0 <= cfg.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")


def diff(saved: BaseConfig, wanted: BaseConfig, allowed: tuple[str, ...] = ()) -> list[str]:
    """Names of fields whose values differ, except those in ``allowed``."""
    a, b = to_dict(saved), to_dict(wanted)
    return [k for k in a if k not in allowed and a[k] != b.get(k)]


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each dataclass field, read from the source (as cleanrl/tyro)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = nxt.value.value.strip()
    return docs


def choices(cls: type, name: str) -> tuple[Any, ...] | None:
    """Allowed values of a ``Literal`` field, else None."""
    hint = typing.get_type_hints(cls)[name]
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the field's annotation; allow int for float and list for tuple."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(name, value, inner)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list of {args[0].__name__}, got {value!r}")
        return tuple(_coerce(name, v, args[0]) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    return value
