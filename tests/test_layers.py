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
                         r"|\b(VAE|GAN|DCGAN|DDPM|Flow)Config\b|recipes\.(vae|gan|dcgan|ddpm|flow)\b")
    bad = [f"{p.name}:{i}: {line.strip()}" for p in sources() if p.stem in DRIVERS
           for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert bad == []


def test_the_comparison_names_no_family():
    """The claims of `genlab compare` choose families by their recipes' traits (kind,
    likelihood model): no family name appears in comparison.py as a value."""
    from genlab.recipes import RECIPES

    tree = ast.parse((SRC / "comparison.py").read_text())
    named = sorted({node.value for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and node.value in RECIPES})
    assert named == []


def test_no_api_function_shadows_its_module():
    """`genlab.train`, `genlab.evaluate`, ... are functions; no module of the same name hides
    behind them (`import genlab.evaluate` would return the module, `genlab.evaluate` the
    function)."""
    import genlab

    modules = {p.stem for p in SRC.glob("*.py")} | set(PACKAGES)
    assert sorted(set(genlab.__all__) & modules) == []
