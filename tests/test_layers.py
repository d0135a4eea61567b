"""The module dependency rules of STYLE.md, read from the imports with ast."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "genlab"
LAYERS = {
    -1: {"errors"},  # the exception classes, importable from anywhere
    0: {"config", "diffusion", "corruption", "metrics", "plots"},
    1: {"data", "models"},
    2: {"objectives", "samplers", "checkpoint"},
    3: {"train", "evaluate", "figures", "inference"},
    4: {"report"},
    5: {"experiments", "cli", "__init__"},
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


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


def test_every_module_has_a_layer():
    modules = {p.stem for p in SRC.glob("*.py")} | {"models"}
    assert modules - set(LAYER_OF) == set()


def test_imports_only_go_down():
    bad = []
    for path in [*SRC.glob("*.py"), *SRC.glob("models/*.py")]:
        name = "models" if path.parent.name == "models" else path.stem
        layer = LAYER_OF[name]
        for dep in genlab_imports(path) - {name}:
            if dep not in LAYER_OF:
                continue
            ok = LAYER_OF[dep] < layer or (name == "report" and dep == "plots")
            if layer == 3 and LAYER_OF[dep] == 3:
                ok = False
            if layer == 5 and LAYER_OF[dep] == 5:
                ok = name in {"cli", "__init__"}
            if not ok:
                bad.append(f"{path.relative_to(SRC)} imports {dep}")
    assert bad == []
