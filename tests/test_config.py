from __future__ import annotations

import json
from dataclasses import fields

import pytest

from genlab import config
from genlab.errors import ConfigError


@pytest.mark.parametrize("family", sorted(config.CONFIGS))
@pytest.mark.parametrize("preset", ["reference", "default"])
def test_presets_round_trip_through_json(family, preset):
    cfg = config.make_config(family, preset)
    again = config.from_dict(json.loads(json.dumps(config.to_dict(cfg))))
    assert again == cfg and again.family == family


@pytest.mark.parametrize("family", sorted(config.CONFIGS))
def test_every_field_has_a_docstring(family):
    docs = config.field_docs(config.CONFIGS[family])
    missing = [f.name for f in fields(config.CONFIGS[family]) if not docs.get(f.name)]
    assert missing == []


def test_reference_vae_is_the_notebook():
    cfg = config.make_config("vae", "reference")
    assert (cfg.hidden, cfg.latent_dim, cfg.beta, cfg.lr, cfg.batch_size, cfg.epochs) == (
        (256,), 2, 0.1, 1e-3, 128, 20)
    assert config.make_config("vae", "default").beta == 1.0


def test_overrides_and_type_checks():
    assert config.make_config("vae", latent_dim=16).latent_dim == 16
    assert config.make_config("vae", hidden=[64, 32]).hidden == (64, 32)
    assert config.make_config("vae", lr=1).lr == 1.0
    with pytest.raises(ConfigError, match=r"latent_dim must be an integer, got '4'"):
        config.make_config("vae", latent_dim="4")
    with pytest.raises(ConfigError, match=r"arch must be one of \['mlp', 'conv'\]"):
        config.make_config("vae", arch="resnet")
    with pytest.raises(ConfigError, match=r"unknown vae config field\(s\) \['latent'\]"):
        config.make_config("vae", latent=3)
    with pytest.raises(ConfigError, match="unknown preset 'best'"):
        config.make_config("vae", "best")
    with pytest.raises(ConfigError, match="unknown model family 'flow'"):
        config.make_config("flow")
    with pytest.raises(ConfigError, match="batch_size must be positive"):
        config.make_config("vae", batch_size=0)
    with pytest.raises(ConfigError, match="peak .* must be positive"):
        config.make_config("gan", peak=0)


def test_diff_names_fields():
    a = config.make_config("vae")
    b = config.replace(a, latent_dim=4, epochs=3)
    assert config.diff(a, b) == ["epochs", "latent_dim"] or set(config.diff(a, b)) == {
        "epochs", "latent_dim"}
    assert config.diff(a, b, allowed=("epochs",)) == ["latent_dim"]


def test_choices_reads_literals():
    assert config.choices(config.VAEConfig, "arch") == ("mlp", "conv")
    assert config.choices(config.VAEConfig, "latent_dim") is None
