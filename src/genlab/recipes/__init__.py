"""The registry of model families: one line per recipe. Drivers reach a family's code through
here only: by name (``get``), from a config (``make_config``, ``config_from_values``) or from a
run folder (``load_run``); tests/test_layers.py fails a driver that imports a family's module or
dispatches on a family's name."""

from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from genlab import checkpoint
from genlab.checkpoint import Run
from genlab.config import BaseConfig, from_values
from genlab.errors import ConfigError, GenlabError, RunError
from genlab.recipes import dcgan, ddpm, flow, gan, pixelcnn, vae
from genlab.recipes.base import NoOptions, Recipe

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    vae.RECIPE,
    gan.RECIPE,
    dcgan.RECIPE,
    ddpm.RECIPE,
    flow.RECIPE,
    pixelcnn.RECIPE,
)}


def get(family: str) -> Recipe:
    """The recipe of a family, or a ConfigError naming the known ones."""
    if family not in RECIPES:
        raise ConfigError(f"unknown model family {family!r}; expected one of {sorted(RECIPES)}")
    return RECIPES[family]


def make_config(family: str, preset: str = "default", **overrides: Any) -> BaseConfig:
    """The named preset of one family, with field overrides applied and checked. A time budget
    (max_minutes or budget_minutes) given without epochs or steps trains until it is spent: the
    preset's epochs no longer bound the run. An EMA decay (or a warm-up in steps) given replaces
    the preset's power-function EMA (or warm-up fraction), and the other way round."""
    recipe = get(family)
    if preset not in recipe.presets:
        raise ConfigError(f"unknown preset {preset!r} for {family}; expected one of "
                          f"{sorted(recipe.presets)}")
    values = {"family": family, **recipe.presets[preset], **overrides}
    # a flag picks its kind of EMA or warm-up over the preset's other kind
    for pair in (("ema_decay", "ema_sigma_rel"), ("warmup_steps", "warmup_fraction")):
        for given, other in (pair, pair[::-1]):
            if overrides.get(given) and other not in overrides:
                values[other] = 0
    budget = overrides.get("max_minutes") or overrides.get("budget_minutes")
    if budget and "epochs" not in overrides and "steps" not in overrides:
        values.update(epochs=0, steps=0)
    return from_values(recipe.config, values)


def config_from_values(values: dict[str, Any]) -> BaseConfig:
    """A config from config.json's values, upgraded first when an older genlab wrote them."""
    recipe = get(values.get("family", ""))
    values = recipe.upgrade(values)
    return from_values(get(values["family"]).config, values)


def run_config(run_dir: str | Path) -> BaseConfig:
    """The config of a run folder from its config.json; values this genlab cannot use (damage,
    or fields of a newer genlab) are one RunError naming the file."""
    path = checkpoint.config_path(Path(run_dir))
    values = checkpoint.read_config_values(Path(run_dir))
    family = values.get("family")
    if not isinstance(family, str) or family not in RECIPES:
        raise RunError(f"{path}: expected family to be one of {sorted(RECIPES)}, got {family!r}")
    try:
        values = get(family).upgrade(values)
        unknown = sorted(set(values) - {f.name for f in fields(get(values["family"]).config)})
        if unknown:
            raise RunError(f"{path} has fields this genlab does not know, {unknown}: written by "
                           f"a newer genlab? upgrade genlab to read it")
        return config_from_values(values)
    except GenlabError as err:
        raise RunError(str(err) if str(path) in str(err) else f"{path}: {err}") from None


def options_class(family: str, verb: str) -> type:
    """The dataclass of a family's options of ``verb``: 'sample', 'evaluate', or 'denoise' (the
    noise of ``--add-noise``, for a family that maps images to images; NoOptions for others)."""
    recipe = get(family)
    if verb == "denoise":
        capability = recipe.image_to_image
        return NoOptions if capability is None else capability.noise_options
    return recipe.sample_options if verb == "sample" else recipe.evaluate_options


def image_to_image_families() -> list[str]:
    """The families whose model maps images to images (``genlab denoise`` takes their runs)."""
    return [name for name, r in RECIPES.items() if r.image_to_image is not None]


def verb_options(family: str, verb: str, options: dict[str, Any]) -> Any:
    """The ``verb`` ('sample', 'evaluate' or 'denoise') options of a family from keyword values
    (None means 'not given'); a name the family does not take is refused in one line that lists
    those it does take."""
    cls = options_class(family, verb)
    given = {k: v for k, v in options.items() if v is not None}
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        takes = ", ".join(_flag(k) for k in known) or "no options"
        raise ConfigError(f"a {family} run's {verb} does not take "
                          f"{', '.join(_flag(k) for k in unknown)}; it takes {takes}")
    return from_values(cls, given, f"{family} {verb} option(s)")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_modules(cfg: BaseConfig, image_shape: tuple[int, int, int],
                  num_classes: int) -> dict[str, torch.nn.Module]:
    """The recipe's networks, plus 'ema' (a frozen copy of 'model') when the run keeps an EMA
    (ema_decay or ema_sigma_rel > 0)."""
    modules = get(cfg.family).build(cfg, image_shape, num_classes)
    if cfg.ema_decay > 0 or cfg.ema_sigma_rel > 0:
        modules["ema"] = copy.deepcopy(modules["model"]).requires_grad_(False)
    return modules


def load_run(run_dir: str | Path, device: str | torch.device = "cpu",
             step: int | None = None) -> Run:
    """Rebuild the networks of a run folder from its config and load the latest weights (or
    those of checkpoint ``step``)."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    info = checkpoint.read_data_info(run_dir)
    modules = build_modules(cfg, tuple(info["image_shape"]), len(info["classes"]))
    step = checkpoint.load_into(run_dir, modules, device, step)
    run = Run(run_dir, cfg, info, modules, step)
    image_to_image = get(cfg.family).image_to_image
    if image_to_image is not None and image_to_image.channels_last:
        run.model.to(memory_format=torch.channels_last)
    return run


__all__ = ["RECIPES", "Recipe", "build_modules", "config_from_values", "get",
           "image_to_image_families", "load_run", "make_config", "options_class", "run_config",
           "verb_options"]
