"""The options of export, demo, denoise and prepare are dataclasses: their CLI flags are made from
the fields (a flag not typed is not passed, so the dataclass's default is the only one). The
denoise verb works through a recipe's ``image_to_image`` capability, whatever the family, and a
run without one is refused in one line naming the families that have it."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import genlab
from genlab import cli, images, recipes
from genlab.checkpoint import Run
from genlab.config import PrepareOptions
from genlab.errors import ConfigError, DataError, RunError
from genlab.experiments import DemoOptions
from genlab.exporting import ExportOptions
from genlab.inference import DenoiseOptions, denoise_files, load_denoiser
from genlab.recipes.base import ImageToImage

VERBS = {"export": ExportOptions, "demo": DemoOptions, "denoise": DenoiseOptions,
         "prepare": PrepareOptions}


def _subparser(verb: str) -> argparse.ArgumentParser:
    return cli.build_parser()._subparsers._group_actions[0].choices[verb]  # type: ignore[union-attr]


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_the_flags_are_made_from_the_options_and_show_their_defaults(verb):
    """One flag per field, with no argparse default of its own (absent stays absent), its help
    the field's docstring and, where the default is a value, that value."""
    cls = VERBS[verb]
    actions = {a.dest: a for a in _subparser(verb)._actions}
    docs = cli.field_docs(cls)
    for f in fields(cls):
        action = actions[f.name]
        assert action.default is argparse.SUPPRESS, f.name
        assert "--" + f.name.replace("_", "-") in action.option_strings
        assert action.help.startswith(docs[f.name].split()[0]), f.name
        if f.default is not None and f.default != ():
            assert action.help.endswith(f"(default: {cli._shown(f.default)})"), action.help


def test_export_demo_and_prepare_get_only_what_was_typed(monkeypatch, capsys, tmp_path: Path):
    seen: list[tuple[str, tuple, dict]] = []
    monkeypatch.setattr(genlab, "export",
                        lambda *a, **kw: seen.append(("export", a, kw)) or tmp_path / "x")
    monkeypatch.setattr(genlab, "demo",
                        lambda *a, **kw: seen.append(("demo", a, kw)) or tmp_path / "r.html")
    cli.main(["export", "RUN", "--out", "x"])
    assert seen[-1] == ("export", (Path("RUN"), Path("x")), {})
    cli.main(["export", "RUN", "--out", "x", "--step", "5", "--push-to-hub", "a/b", "--private"])
    assert seen[-1][2] == {"step": 5, "push_to_hub": "a/b", "private": True}
    assert "pushed to https://huggingface.co/a/b" in capsys.readouterr().out
    cli.main(["demo"])
    assert seen[-1] == ("demo", (), {})
    cli.main(["demo", "--out", "d", "--families", "vae,gan", "--compare-minutes", "0"])
    assert seen[-1][2] == {"out": "d", "families": ("vae", "gan"), "compare_minutes": 0.0}

    from genlab import data

    calls = []
    monkeypatch.setattr(data, "prepare", lambda *a, **kw: calls.append((a, kw)) or {
        "splits": {}, "image_shape": [1, 8, 8], "dtype": "uint8"})
    cli.main(["prepare", "digits", "--out", "p"])
    defaults = PrepareOptions()
    assert calls[-1][0] == ("digits", Path("p"), defaults.data_dir, defaults.download)
    assert (calls[-1][1]["resolution"], calls[-1][1]["channels"]) == (0, 0)
    cli.main(["prepare", "digits", "--out", "p", "--no-download", "--image-channels", "3"])
    assert calls[-1][0][3] is False and calls[-1][1]["channels"] == 3
    with pytest.raises(SystemExit):  # argparse: not one of the choices 0, 1, 3
        cli.build_parser().parse_args(["prepare", "digits", "--out", "p", "--image-channels", "2"])


def test_denoise_gets_only_what_was_typed(monkeypatch):
    seen = []
    monkeypatch.setattr(genlab, "denoise_files", lambda *a, **kw: seen.append((a, kw)) or [])
    cli.main(["denoise", "RUN", "a.png", "b.png", "--out", "o"])
    assert seen[-1] == ((Path("RUN"), [Path("a.png"), Path("b.png")], Path("o")), {})
    cli.main(["denoise", "RUN", "a.png", "--out", "o", "--add-noise", "--peak", "30",
              "--precision", "bf16", "--seed", "2"])
    assert seen[-1][1] == {"add_noise": True, "peak": 30.0, "precision": "bf16", "seed": 2}
    cli.main(["denoise", "RUN", "a.png", "--out", "o", "--clean", "r.png"])
    assert seen[-1][1] == {"clean": [Path("r.png")]}


# --- the denoise verb through the capability ---------------------------------------------------


@dataclass(frozen=True)
class Shift:
    """Options of the test's noise."""

    shift: float | None = None
    """grey levels added (None: 16)"""


def _shift(run, x, gen, dtype, opts):
    """Adds ``shift`` grey levels, rounded to the file's levels."""
    levels = images.to_depth(x, dtype).float() + (16.0 if opts.shift is None else opts.shift)
    return images.to_float(levels.clamp(0, images.white_level(dtype)).round().to(dtype))


INVERT = ImageToImage(corrupt=_shift, noise_options=Shift, apply=lambda run, x, precision: -x,
                      min_size=lambda run: 4, grid=lambda run, out: out, task="image-to-image")


def _fake_run(tmp_path: Path, family: str = "vae") -> Run:
    """A run object of ``family`` with no networks: the capability under test needs none."""
    return Run(tmp_path / "run", recipes.make_config(family), {"image_shape": [1, 8, 8],
                                                               "classes": []}, {}, 0)


def test_the_denoise_verb_works_through_any_recipes_image_to_image(tmp_path, monkeypatch):
    """A family that declares the capability (here the VAE, given one that inverts its input)
    is denoised by the verb unchanged: the noise options are the capability's own, refused by
    name elsewhere, and only with --add-noise."""
    monkeypatch.setitem(recipes.RECIPES, "vae",
                        dataclasses.replace(recipes.get("vae"), image_to_image=INVERT))
    run = _fake_run(tmp_path)
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(grey).save(tmp_path / "in.png")
    out = tmp_path / "out"
    [record] = denoise_files(run, [tmp_path / "in.png"], out, add_noise=True, shift=5.0)
    noisy = np.asarray(Image.open(out / "in_noisy.png"))
    assert np.array_equal(noisy, grey + 5)
    assert np.array_equal(np.asarray(Image.open(out / "in.png")), 255 - noisy)
    assert record["noisy"] == str(out / "in_noisy.png") and "psnr_denoised" in record
    with pytest.raises(ConfigError, match="does not take --peak; it takes --shift"):
        denoise_files(run, [tmp_path / "in.png"], out, add_noise=True, peak=3.0)
    with pytest.raises(ConfigError, match="--shift sets the noise that --add-noise adds"):
        denoise_files(run, [tmp_path / "in.png"], out, shift=3.0)
    Image.fromarray(grey[:3]).save(tmp_path / "small.png")
    with pytest.raises(DataError, match="image is 8x3; this denoiser needs at least 4x4"):
        denoise_files(run, [tmp_path / "small.png"], out)


def test_a_run_without_the_capability_is_one_line_naming_the_families_that_have_it(
        tmp_path, monkeypatch):
    with pytest.raises(RunError) as err:
        load_denoiser(_fake_run(tmp_path, "ddpm"))
    message = str(err.value)
    assert "is a ddpm run, not a denoiser" in message and "\n" not in message
    assert "images to images: gan" in message and "`genlab train gan`" in message
    monkeypatch.setitem(recipes.RECIPES, "gan",
                        dataclasses.replace(recipes.get("gan"), image_to_image=None))
    with pytest.raises(RunError, match="no family of this genlab maps images to images"):
        load_denoiser(_fake_run(tmp_path, "gan"))


def test_the_demo_comparison_shrinks_each_family_by_its_recipes_overrides(tmp_path, monkeypatch):
    """The demo's mini-comparison takes each family's smaller settings from its recipe
    (``demo_compare_overrides``), the PixelCNN's among them; experiments.py names no family."""
    from genlab import experiments

    seen = {}
    monkeypatch.setattr(experiments, "train", lambda cfg, progress: Path(cfg.run_dir))
    monkeypatch.setattr(experiments, "evaluate", lambda run_dir, **kw: {})
    monkeypatch.setattr(experiments, "compare", lambda *a, **kw: seen.update(kw) or Path(
        kw["out"]) / "report.html")
    monkeypatch.setattr(experiments.reporting, "report", lambda runs, out, **kw: out)
    page = experiments.demo(out=str(tmp_path / "demo"), families=("dcgan",))
    assert page == tmp_path / "demo" / "report.html"
    expected = {name: r.demo_compare_overrides for name, r in recipes.RECIPES.items()
                if r.demo_compare_overrides}
    assert seen["overrides"] == expected
    assert seen["overrides"]["pixelcnn"]["width"] == 16
    assert seen["overrides"]["ddpm"] == {"channels": (16, 32), "num_steps": 200, "num_threads": 1}
    for name, changes in expected.items():  # each shrunk preset is a valid config
        assert recipes.make_config(name, **changes)
    seen.clear()
    experiments.demo(out=str(tmp_path / "demo2"), families=("dcgan",), compare_minutes=0)
    assert seen == {}  # 0 minutes: no comparison
