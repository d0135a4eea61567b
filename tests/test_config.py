"""Configs, presets and the recipe registry: every recipe fills every slot, every field is
documented, presets round-trip through JSON, and every family shows up in --help."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import fields

import pytest

from genlab import config, recipes
from genlab.cli import main
from genlab.errors import ConfigError
from genlab.recipes import RECIPES, make_config
from genlab.recipes.base import Recipe, inception_weights, scored_samples

FAMILIES = sorted(RECIPES)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_recipe_fills_every_slot(family):
    recipe = RECIPES[family]
    optional = {"sample", "sweep", "likelihood", "likelihood_model", "likelihood_scale",
                "nfe_options", "latent_map", "image_to_image"}  # not every family has these
    for f in fields(Recipe):
        value = getattr(recipe, f.name)
        assert f.name in optional or value is not None, f"{family}.{f.name} is empty"
    assert recipe.name == family and recipe.config.__dataclass_fields__["family"].default == family
    assert {"default", "reference"} <= set(recipe.presets)
    assert recipe.figures and recipe.demo and recipe.key_config and recipe.headline
    # every generator can be steered: through a latent, or (autoregressive) by the pixels given
    maps_images = recipe.image_to_image is not None
    assert maps_images or recipe.latent_map is not None or recipe.kind == "autoregressive"
    assert (recipe.sample is None) == maps_images  # only an image-to-image family draws none
    assert recipe.kind in ("autoencoder", "adversarial", "diffusion", "flow-matching",
                           "autoregressive")
    assert (recipe.likelihood is None) == (recipe.likelihood_model is None)  # bound and its model
    assert recipe.likelihood_scale in (None, "8-bit") and (recipe.likelihood_scale is None
                                                           or recipe.likelihood is not None)
    assert set(recipe.key_config) <= {f.name for f in fields(recipe.config)}
    noise = () if recipe.image_to_image is None else (recipe.image_to_image.noise_options,)
    for cls in (recipe.config, recipe.sample_options, recipe.evaluate_options, *noise):
        docs = config.field_docs(cls)
        assert [f.name for f in fields(cls) if not docs.get(f.name)] == [], cls.__name__


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("preset", ["reference", "default"])
def test_presets_round_trip_through_json(family, preset):
    cfg = make_config(family, preset)
    again = recipes.config_from_values(json.loads(json.dumps(config.to_dict(cfg))))
    assert again == cfg and again.family == family


def _help(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*args, "--help"])
    return out.getvalue()


def test_every_family_shows_up_in_help():
    assert all(family in _help("train") for family in FAMILIES)
    plot_help = _help("plot")
    for family in FAMILIES:
        assert family in _help() and "--preset" in _help("train", family)
        assert all(kind in plot_help for kind in RECIPES[family].figures)
    for verb, slot in (("sample", "sample_options"), ("evaluate", "evaluate_options")):
        text = _help(verb)
        for family in FAMILIES:
            for f in fields(getattr(RECIPES[family], slot)):
                assert "--" + f.name.replace("_", "-") in text


def test_reference_vae_is_the_notebook():
    cfg = make_config("vae", "reference")
    assert (cfg.hidden, cfg.latent_dim, cfg.beta, cfg.lr, cfg.batch_size, cfg.epochs) == (
        (256,), 2, 0.1, 1e-3, 128, 20)
    assert make_config("vae", "default").beta == 1.0


def test_overrides_and_type_checks():
    assert make_config("vae", latent_dim=16).latent_dim == 16
    assert make_config("vae", hidden=[64, 32]).hidden == (64, 32)
    assert make_config("vae", lr=1).lr == 1.0
    with pytest.raises(ConfigError, match=r"latent_dim must be an integer, got '4'"):
        make_config("vae", latent_dim="4")
    with pytest.raises(ConfigError, match=r"arch must be one of \['mlp', 'conv'\]"):
        make_config("vae", arch="resnet")
    with pytest.raises(ConfigError, match=r"unknown vae config field\(s\) \['latent'\]"):
        make_config("vae", latent=3)
    with pytest.raises(ConfigError, match="unknown preset 'best'"):
        make_config("vae", "best")
    with pytest.raises(ConfigError, match="unknown model family 'vqvae'"):
        make_config("vqvae")
    with pytest.raises(ConfigError, match="batch_size must be positive"):
        make_config("vae", batch_size=0)
    with pytest.raises(ConfigError, match="peak .* must be positive"):
        make_config("gan", peak=0)
    with pytest.raises(ConfigError, match=r"ema_decay must be in \[0, 1\)"):
        make_config("flow", ema_decay=1.0)


def test_shared_training_features_live_on_the_base_config():
    """EMA, warm-up, schedule, clipping, accumulation, flips and crops are fields of every
    family."""
    shared = {"ema_decay", "warmup_steps", "lr_schedule", "grad_clip", "hflip", "single_image",
              "grad_accum", "random_crop"}
    for family in FAMILIES:
        assert shared <= {f.name for f in fields(RECIPES[family].config)}
    assert make_config("dcgan").ema_decay > 0  # the GAN generator gets an EMA too


def test_diff_names_fields():
    a = make_config("vae")
    b = config.replace(a, latent_dim=4, epochs=3)
    assert set(config.diff(a, b)) == {"epochs", "latent_dim"}
    assert config.diff(a, b, allowed=("epochs",)) == ["latent_dim"]


def test_choices_reads_literals():
    cls = RECIPES["vae"].config
    assert config.choices(cls, "arch") == ("mlp", "conv")
    assert config.choices(cls, "latent_dim") is None


def test_verb_options_refuse_what_the_family_does_not_take():
    with pytest.raises(ConfigError, match=r"a vae run's evaluate does not take --ddim-steps; it "
                                          r"takes --k, --num-images, --batch-size"):
        recipes.verb_options("vae", "evaluate", {"ddim_steps": 5})
    with pytest.raises(ConfigError, match=r"a vae run's sample does not take --steps; it takes "
                                          r"no options"):
        recipes.verb_options("vae", "sample", {"steps": 5})
    opts = recipes.verb_options("flow", "evaluate", {"nfe": [10, 20], "solvers": ["euler"],
                                                     "num_samples": None})
    assert opts.nfe == (10, 20) and opts.solvers == ("euler",) and opts.num_samples is None
    assert scored_samples(opts) == 500 and not opts.full  # the quick protocol by default
    full = recipes.verb_options("flow", "evaluate", {"full": True})
    assert scored_samples(full) == 10_000 and inception_weights(opts) is None
