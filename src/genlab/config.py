"""Run configurations: frozen dataclasses with a docstring under each field.

``BaseConfig`` holds what every run has (data, budget, precision, and the training features the
loop applies to every family: EMA, learning-rate warm-up and schedule, gradient clipping and
accumulation, flips and crops).
Each family's recipe (``genlab.recipes``) subclasses it with its own fields and named presets.
The CLI flags and their help text are generated from the fields (``--latent-dim`` for
``latent_dim``), so every default is written once; the ``sample``/``evaluate`` option dataclasses
of the recipes are parsed by the same ``from_values``. A config round-trips through JSON
(``to_dict`` / ``from_values``).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass, fields
from functools import cache
from typing import Any, Literal, TypeVar, cast

from genlab.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class BaseConfig:
    """Fields shared by every family: data, optimisation, bookkeeping."""

    family: str = ""
    """the family this config trains: each recipe's config fixes it to its own name"""
    dataset: str = "digits"
    """dataset name: digits, mnist, fashion-mnist, stacked-mnist (three MNIST digits, one per
    channel: 1,000 modes), cifar10, fer2013, folder:PATH (images in it or in one subfolder per
    class, optionally under train/ and test/) or prepared:DIR (written by `genlab prepare`, read
    from disk batch by batch)"""
    data_dir: str | None = None
    """folder holding dataset files (default: ~/.cache/genlab/data); torchvision downloads there"""
    download: bool = True
    """download torchvision datasets that are missing from data_dir"""
    resolution: int = 0
    """resize the shorter side to N and centre-crop to N x N; 0 keeps the images' size, which
    must then all agree"""
    image_channels: int = 0
    """1 or 3: convert every image to grey or RGB; 0 keeps them, and mixed grey/RGB is an error
    naming a file"""
    run_dir: str | None = None
    """run folder (default: runs/<family>-<dataset>-<time>)"""
    seed: int = 0
    """seed for initialisation, batch order and all sampling noise"""
    epochs: int = 20
    """passes over the training split (ignored when steps > 0; 0 with steps 0: no step bound,
    the time budget ends the run)"""
    steps: int = 0
    """optimizer steps to train for; 0 means use epochs"""
    max_minutes: float = 0.0
    """stop after this many minutes of training (summed over resumes) with a checkpoint; 0 = no
    limit. The schedules (warm-up, decay) span the budget: given alone, it trains until the
    minutes are spent; with epochs or steps too, whichever ends first ends the run"""
    budget_minutes: float = 0.0
    """the time budget the schedules span, when a run is trained in parts of it (a comparison's
    legs: max_minutes is where this part stops); 0: max_minutes"""
    batch_size: int = 128
    """images per optimizer step (per process), whatever grad_accum is"""
    grad_accum: int = 1
    """gradient accumulation: each optimizer step sums the gradients of K micro-batches of
    batch_size / K images (batch_size must divide by K), for the update of a batch that does
    not fit in memory at once"""
    lr: float = 1e-3
    """Adam learning rate"""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """'auto' (bf16 autocast where the CPU or GPU runs bf16 natively, fp16 with gradient scaling
    on CUDA GPUs without bf16, else fp32; the choice is written into config.json), 'fp32',
    'bf16' autocast, or 'fp16' autocast with gradient scaling (CUDA only)"""
    channels_last: bool = False
    """keep conv activations in channels-last memory format (faster convolutions on CPU and GPU)"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """'auto' picks CUDA when available"""
    log_every: int = 50
    """write a line to log.jsonl every this many steps"""
    checkpoint_every: int = 1000
    """write a checkpoint every this many steps (and always at the end)"""
    log_with: Literal["none", "tensorboard", "wandb", "mlflow"] = "none"
    """also send every log line's scalars, the preview grids and the final metrics to a tracker
    (through Accelerate; pip install 'genlab[track]' for TensorBoard, wandb or mlflow yourself);
    TensorBoard writes into RUN/trackers"""
    keep_checkpoints: int = 2
    """checkpoints kept in the run folder, newest first (0: every one; `--step N` picks one); 2 or
    more leave an older one to fall back on when the newest is damaged"""
    num_threads: int = 0
    """CPU threads for torch; 0 keeps torch's default"""
    ema_decay: float = 0.0
    """decay of the exponential moving average of the inference network's weights (0: no EMA;
    the GAN generators take one too)"""
    ema_sigma_rel: float = 0.0
    """power-function EMA (Karras et al. 2024) instead of a fixed decay: the average spans about
    this share of the run so far, however long it is (0: off; with ema_decay 0)"""
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    """learning-rate schedule after the warm-up, over the run's progress (its steps, or its time
    budget): 'linear' and 'cosine' decay to zero at the end"""
    warmup_steps: int = 0
    """linear learning-rate warm-up steps (0: none)"""
    warmup_fraction: float = 0.0
    """linear learning-rate warm-up over this share of the run's progress (0: none; not with
    warmup_steps)"""
    grad_clip: float = 0.0
    """clip each network's gradient norm to this (0: off)"""
    hflip: bool = False
    """random horizontal flips of the training images"""
    random_crop: int = 0
    """random shifts of the training images: pad each by N pixels (its edge pixels repeated)
    and crop a random window of its size back (0: off)"""
    single_image: str | None = None
    """train on copies of one image: a file path or a training-split index"""
    sync_batchnorm: bool = False
    """under several processes on CUDA, BatchNorm layers normalise with the statistics of the
    global batch (SyncBatchNorm) instead of each process's share; one process: no effect; CPU:
    refused (torch's SyncBatchNorm runs on GPUs only)"""

    def check(self) -> None:
        """Range checks of a family's own fields (recipes override it); ConfigError if off."""


@dataclass(frozen=True)
class PrepareOptions:
    """The options of ``genlab prepare``: how a dataset is read, as a run would read it (the
    defaults are BaseConfig's; the CLI's flags are made from these fields and docstrings)."""

    data_dir: str | None = BaseConfig.data_dir
    """folder holding dataset files; torchvision downloads there"""
    download: bool = BaseConfig.download
    """download torchvision datasets that are missing from data_dir"""
    resolution: int = BaseConfig.resolution
    """resize the shorter side to N and centre-crop to N x N; 0 keeps the images' size, which
    must then all agree"""
    image_channels: Literal[0, 1, 3] = cast(Literal[0, 1, 3], BaseConfig.image_channels)
    """1 or 3: convert every image to grey or RGB; 0 keeps them, and mixed grey/RGB is an error
    naming a file"""


def to_dict(cfg: BaseConfig) -> dict[str, Any]:
    """Plain JSON-ready dict (tuples become lists)."""
    return {f.name: _jsonable(getattr(cfg, f.name)) for f in fields(cfg)}


def from_values(cls: type[T], values: dict[str, Any], what: str | None = None) -> T:
    """An instance of the dataclass ``cls`` from plain values (a config, or a verb's options):
    unknown names and wrongly typed values raise one ConfigError naming ``what`` and the known
    names; configs are range-checked too."""
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        what = what or f"{values.get('family', cls.__name__)} config field(s)"
        raise ConfigError(f"unknown {what} {unknown}; known: {sorted(known)}")
    hints = type_hints(cls)
    checked = {name: _coerce(name, value, hints[name]) for name, value in values.items()}
    obj = cls(**checked)
    if isinstance(obj, BaseConfig):
        validate(obj)
    return obj


def replace(cfg: BaseConfig, **changes: Any) -> BaseConfig:
    """A copy of ``cfg`` with fields changed, checked like ``from_values``."""
    return from_values(type(cfg), {**to_dict(cfg), **changes})


def validate(cfg: BaseConfig) -> None:
    """Range checks that no type annotation can express: the shared fields here, the family's
    own in its ``check``."""
    positive = ["batch_size", "log_every", "checkpoint_every"]
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(cfg, name)}")
    for name in ["epochs", "steps", "num_threads", "seed", "keep_checkpoints"]:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.epochs == 0 and cfg.steps == 0 and not (cfg.max_minutes or cfg.budget_minutes):
        raise ConfigError("nothing bounds the run: set epochs > 0, steps > 0 or max_minutes > 0")
    if cfg.lr <= 0:
        raise ConfigError(f"lr must be positive, got {cfg.lr}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if not 0.0 <= cfg.ema_sigma_rel <= 0.28:
        raise ConfigError(f"ema_sigma_rel must be in [0, 0.28] (0.28: about the widest "
                          f"power-function profile), got {cfg.ema_sigma_rel}")
    if cfg.ema_decay and cfg.ema_sigma_rel:
        raise ConfigError(f"ema_decay {cfg.ema_decay} and ema_sigma_rel {cfg.ema_sigma_rel} are "
                          f"both set: pick one EMA (set the other to 0)")
    if not 0.0 <= cfg.warmup_fraction < 1.0:
        raise ConfigError(f"warmup_fraction must be in [0, 1), got {cfg.warmup_fraction}")
    if cfg.warmup_fraction and cfg.warmup_steps:
        raise ConfigError(f"warmup_steps {cfg.warmup_steps} and warmup_fraction "
                          f"{cfg.warmup_fraction} are both set: pick one warm-up (set the other "
                          f"to 0)")
    if cfg.grad_accum < 1:
        raise ConfigError(f"grad_accum must be >= 1, got {cfg.grad_accum}")
    if cfg.batch_size % cfg.grad_accum:
        raise ConfigError(f"batch_size {cfg.batch_size} does not divide into grad_accum "
                          f"{cfg.grad_accum} equal micro-batches; choose a batch_size that is a "
                          f"multiple of {cfg.grad_accum}")
    for name in ["warmup_steps", "grad_clip", "max_minutes", "budget_minutes", "resolution",
                 "random_crop"]:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.image_channels not in (0, 1, 3):
        raise ConfigError(f"image_channels must be 0 (keep), 1 (grey) or 3 (RGB), got "
                          f"{cfg.image_channels}")
    cfg.check()


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


@cache
def type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, resolved once per class (the CLI asks for each field's,
    and resolving them all each time cost most of building its parser)."""
    return typing.get_type_hints(cls)


def choices(cls: type, name: str) -> tuple[Any, ...] | None:
    """Allowed values of a ``Literal`` field, else None."""
    hint = type_hints(cls)[name]
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
