"""The module dependency rules of STYLE.md, read from the imports with ast, and the rule that
drivers name no family: family dispatch lives in the recipe registry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "genlab"
LAYERS = {
    -2: {"errors"},  # exceptions: importable from anywhere
    -1: {"cores", "images"},  # leaves: the cores (no torch); the image convention
    0: {"config", "diffusion", "corruption", "metrics", "plots", "files", "hardware", "stats",
        "schedules", "prepared", "distributed"},
    1: {"data", "batching", "models", "trackers"},
    2: {"objectives", "samplers", "checkpoint", "featurenet"},
    3: {"recipes"},
    4: {"training", "evaluation", "figures", "inference", "reporting"},
    5: {"comparison", "exporting"},
    6: {"experiments"},
    7: {"cli", "__init__"},
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}
PACKAGES = ("models", "recipes")  # a package counts as one module; its files may import each other
DRIVERS = ("training", "evaluation", "figures", "inference", "reporting", "experiments", "cli",
           "exporting", "comparison")


def unit_of(path: Path) -> str:
    return path.parent.name if path.parent.name in PACKAGES else path.stem


def genlab_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genlab"):
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("genlab."))
    return found


def sources() -> list[Path]:
    return [*SRC.glob("*.py"), *(p for pkg in PACKAGES for p in SRC.glob(f"{pkg}/*.py"))]


def test_every_module_has_a_layer():
    assert {unit_of(p) for p in sources()} - set(LAYER_OF) == set()


def test_imports_only_go_down():
    bad = []
    for path in sources():
        name = unit_of(path)
        for dep in genlab_imports(path) - {name}:
            if dep in LAYER_OF and not LAYER_OF[dep] < LAYER_OF[name]:
                bad.append(f"{path.relative_to(SRC)} (layer {LAYER_OF[name]}) imports {dep} "
                           f"(layer {LAYER_OF[dep]})")
    assert bad == []


def test_drivers_name_no_family():
    """No `family == ...`, mode switches, isinstance checks on configs, or family names in code
    outside recipes/ (strings in messages are fine; dispatch is not)."""
    pattern = re.compile(r"family *(==|!=) |(cfg|config)\.mode\b|isinstance\([a-z_]+, *\w+Config"
                         r"|\b(VAE|GAN|DCGAN|DDPM|Flow|PixelCNN)Config\b"
                         r"|recipes\.(vae|gan|dcgan|ddpm|flow|pixelcnn)\b")
    bad = [f"{p.name}:{i}: {line.strip()}" for p in sources() if p.stem in DRIVERS
           for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert bad == []


def test_drivers_name_no_family_as_a_value():
    """The drivers choose families by their recipes' traits: the claims of `genlab compare` by
    kind and likelihood model, the denoise verb and export by `image_to_image`, the demo's
    mini-comparison by `demo_compare_overrides`. No family name appears in a driver as a
    value (a string constant equal to it)."""
    from genlab.recipes import RECIPES

    named = []
    for stem in DRIVERS:
        tree = ast.parse((SRC / f"{stem}.py").read_text())
        named += sorted(f"{stem}.py:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                        if isinstance(node, ast.Constant) and node.value in RECIPES)
    assert named == []


def test_the_image_to_image_drivers_read_no_family_config_field():
    """The denoise verb, export and the demo read a run's config only through fields every
    family has (BaseConfig's): a family's own fields (the denoiser's noise, peak, sigma) are
    its recipe's to read."""
    from dataclasses import fields

    from genlab.config import BaseConfig
    from genlab.recipes import RECIPES

    shared = {f.name for f in fields(BaseConfig)} | {"family"}  # every config names its own
    own = {f.name for r in RECIPES.values() for f in fields(r.config)} - shared
    bad = []
    for stem in ("inference", "exporting", "experiments"):
        for node in ast.walk(ast.parse((SRC / f"{stem}.py").read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr in own):
                continue
            owner = node.value
            if ((isinstance(owner, ast.Name) and owner.id in ("cfg", "config", "base"))
                    or (isinstance(owner, ast.Attribute) and owner.attr == "config")):
                bad.append(f"{stem}.py:{node.lineno}: .{node.attr}")
    assert bad == []


def test_no_api_function_shadows_its_module():
    """`genlab.train`, `genlab.evaluate`, ... are functions; no module of the same name hides
    behind them (`import genlab.evaluate` would return the module, `genlab.evaluate` the
    function)."""
    import genlab

    modules = {p.stem for p in SRC.glob("*.py")} | set(PACKAGES)
    assert sorted(set(genlab.__all__) & modules) == []
