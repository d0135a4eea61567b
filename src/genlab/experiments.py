"""Multi-run experiments built from the verbs: sweeps of one config field and the offline demo.
Both are driven by the recipes (their ``sweep`` and ``demo`` slots); nothing here names a family.

Under several processes (torchrun) every process trains each run together; the figures, the
evaluations and the report are made once, by the main process."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab import figures, recipes, reporting
from genlab.comparison import compare
from genlab.config import BaseConfig, replace
from genlab.errors import ConfigError
from genlab.evaluation import evaluate
from genlab.hardware import is_main_process, launched_processes
from genlab.training import train as train_loop


def train(config: BaseConfig | None = None, resume: str | Path | None = None,
          plot: bool = True, progress: bool = True, **overrides: Any) -> Path:
    """Train (or resume) a run, then draw its figures; returns the run folder."""
    run_dir = train_loop(config, resume=resume, progress=progress, **overrides)
    if plot and is_main_process():  # one process draws, under torchrun/accelerate
        figures.plot_all(run_dir)
    return run_dir


def sweep(values: Sequence[Any] | None = None, config: BaseConfig | None = None,
          out: str | Path | None = None, run_evaluate: bool = True, progress: bool = True,
          **overrides: Any) -> tuple[list[Path], Path]:
    """One run per value of the family's sweep field (the VAE: latent_dim 2, 4, 16) under
    ``out``/<field><value>, each evaluated and plotted, plus the recipe's comparison figure
    (the VAE: ``out``/reconstructions_by_latent_dim.png). Without ``config``: the default preset
    of the first family that has a sweep."""
    swept = [name for name, r in recipes.RECIPES.items() if r.sweep]
    base = config or recipes.make_config(swept[0])
    spec = recipes.get(base.family).sweep
    if spec is None:
        raise ConfigError(f"the {base.family} family has no sweep; these do: "
                          f"{sorted(swept)}")
    values = tuple(values) if values is not None else spec.values
    if not values:
        raise ConfigError(f"no {spec.field} values to sweep")
    if not (out or base.run_dir):
        _one_name_per_job("sweep", "--run-dir")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(out or base.run_dir or f"runs/sweep-{base.family}-{base.dataset}-{stamp}")
    short = "z" if spec.field == "latent_dim" else spec.field
    run_dirs = []
    for value in values:
        cfg = replace(base, **{spec.field: value}, run_dir=str(out / f"{short}{value}"),
                      **overrides)
        run_dirs.append(train(cfg, progress=progress))
        if run_evaluate and is_main_process():
            evaluate(run_dirs[-1])
    if not is_main_process():
        return run_dirs, out / spec.figure_name
    return run_dirs, spec.figure(run_dirs, out / spec.figure_name)


@dataclass(frozen=True)
class DemoOptions:
    """The options of ``genlab demo`` (the CLI's flags are made from these fields and their
    docstrings: every default is written here once)."""

    out: str | None = None
    """output folder (None: runs/demo, or runs/demo-<time> where that is taken)"""
    families: tuple[str, ...] = ()
    """families to run (empty: all)"""
    compare_minutes: float = 0.1
    """training minutes per generator of the mini-comparison (one seed; 0 skips it)"""


def demo(*args: Any, **kwargs: Any) -> Path:
    """Run every family's short experiment on the embedded digits (no files, no network) and
    write out/report.html linking every figure and metric, then a mini-comparison of the
    generators (``compare_minutes`` each, one seed, each recipe's preset shrunk by its
    ``demo_compare_overrides``; 0 skips it) in out/compare/report.html, which describes the
    numbers and gives no verdicts (that takes 3 seeds or more). The arguments are the fields of
    DemoOptions, in its order. Without ``out``: runs/demo, or runs/demo-<time> when an earlier
    demo is there."""
    o = DemoOptions(*args, **kwargs)
    out, families, compare_minutes = o.out, o.families, o.compare_minutes
    if out is None:
        _one_name_per_job("demo", "--out")
        out = Path("runs/demo")
        if out.exists():
            out = Path(f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} already exists and is not empty; pass another --out")
    chosen = [recipes.get(name) for name in (families or recipes.RECIPES)]
    run_dirs: list[Path] = []
    extra: list[tuple[str, Path]] = []
    for recipe in chosen:
        start = time.perf_counter()
        family_runs = []
        for spec in recipe.demo:
            cfg = recipes.make_config(recipe.name, spec.preset, **spec.overrides,
                                      run_dir=str(out / spec.name))
            family_runs.append(train(cfg, progress=False))
            if is_main_process():
                evaluate(family_runs[-1], **spec.evaluate)
        if is_main_process():
            extra += recipe.demo_figures(family_runs, out)
        run_dirs += family_runs
        if is_main_process():
            print(f"demo: {recipe.name} done in {time.perf_counter() - start:.0f} s",
                  file=sys.stderr)
    if not is_main_process():
        return out / "report.html"
    if compare_minutes > 0:
        start = time.perf_counter()
        overrides = {name: dict(r.demo_compare_overrides)
                     for name, r in recipes.RECIPES.items() if r.demo_compare_overrides}
        compare_page = compare("digits", minutes=compare_minutes, seeds=1, out=str(out / "compare"),
                               num_samples=150, leg_samples=100, nfe_sweep=(5, 10, 20),
                               overrides=overrides)
        print(f"demo: comparison done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        # one seed a family: its report describes the numbers and gives no verdicts (genlab
        # compare decides only from 3 seeds on), and the demo's report says so by its figures
        extra += [(f"mini-comparison ({compare_page.relative_to(out)}, one seed: numbers only, "
                   f"no verdicts; genlab compare --seeds 5 tests the claims): {name}", path)
                  for name, path in (("FID against training minutes",
                                      out / "compare/figures/fid_vs_training_minutes.png"),
                                     ("FID against NFE", out / "compare/figures/fid_vs_nfe.png"))
                  if path.is_file()]
    return reporting.report(run_dirs, out / "report.html", title="genlab demo (digits)",
                         extra_figures=extra)


def _one_name_per_job(verb: str, flag: str) -> None:
    """Under several processes a folder named after the time could differ between them: refuse."""
    if launched_processes() > 1:
        raise ConfigError(f"under several processes, give `genlab {verb}` its folder with {flag} "
                          f"(each process would otherwise name its own after the time)")
