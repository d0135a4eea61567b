"""``plot(run_dir, kind)``: the figures that explain a run, written into run_dir/figures/<kind>.png.

Each recipe lists its figure kinds and says which of them are drawn after training (the VAE's
2-D latent scatter needs z = 2, t-SNE is for z > 2); this driver only looks them up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genlab import checkpoint, recipes
from genlab.checkpoint import Run, pick_device
from genlab.errors import ConfigError
from genlab.hardware import shares_cores


@shares_cores
def plot(run_dir: str | Path, kind: str, out: str | Path | None = None, device: str = "auto",
         run: Run | None = None, step: int | None = None, **options: Any) -> Path:
    """Draw one figure of a run (its latest weights, or checkpoint ``step``'s); returns the PNG's
    path (default run_dir/figures/<kind>.png)."""
    run = run or recipes.load_run(run_dir, pick_device(device), step)
    kinds = recipes.get(run.family).figures
    if kind not in kinds:
        raise ConfigError(f"unknown figure {kind!r} for a {run.family} run; expected one of "
                          f"{sorted(kinds)}")
    path = Path(out) if out else checkpoint.figure_path(run.run_dir, kind)
    return kinds[kind](run, path, **{k: v for k, v in options.items() if v is not None})


def plot_all(run_dir: str | Path, device: str = "auto", quick: bool = True,
             **options: Any) -> list[Path]:
    """The figures drawn after training: each kind the recipe's ``default_figures`` lists, in its
    quick form (``quick=True``: few images, few sampler steps, so that the figures cost a bounded
    number of network calls whatever the run's T; `genlab plot` draws the full ones)."""
    run = recipes.load_run(run_dir, pick_device(device))
    return [plot(run_dir, kind, run=run, quick=quick, **options)
            for kind in recipes.get(run.family).default_figures(run)]
