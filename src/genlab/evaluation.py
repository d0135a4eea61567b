"""``evaluate(run_dir) -> metrics``: scores a run on its dataset's held-out split with its
family's evaluator, and writes metrics.json.

Each evaluator returns a flat-ish dict of numbers plus what they depend on (sample counts, seeds),
so that a number is never reported without the settings that produced it. The options a family's
evaluator takes are the fields of its recipe's ``evaluate_options`` dataclass; any other option is
refused, never dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genlab import checkpoint, data, recipes
from genlab.checkpoint import pick_device
from genlab.hardware import shares_cores
from genlab.trackers import make_accelerator, start_trackers, tracker


@shares_cores
def evaluate(run_dir: str | Path, split: str = "test", seed: int = 0, device: str = "auto",
             step: int | None = None, **options: Any) -> dict[str, Any]:
    """Score the run's latest weights (or checkpoint ``step``'s) on ``split`` and write
    run_dir/metrics.json, which records the step."""
    run_dir = Path(run_dir)
    run = recipes.load_run(run_dir, pick_device(device), step)
    recipe = recipes.get(run.family)
    opts = recipes.verb_options(run.family, "evaluate", options)
    cfg = run.config
    split_data = data.load_split(cfg, split)
    results = recipe.evaluate(run, split_data, seed, opts)
    metrics = {"family": run.family, "dataset": cfg.dataset, "split": split, "step": run.step,
               **results}
    checkpoint.write_metrics(run_dir, metrics)
    if cfg.log_with != "none":  # the run's tracker gets the final metrics too
        accelerator = make_accelerator(cpu=run.device.type == "cpu",
                                       log_with=tracker(cfg.log_with), project_dir=str(run_dir))
        start_trackers(accelerator, run_dir, cfg)
        accelerator.log({f"eval/{k}": v for k, v in _flatten(metrics).items()
                         if isinstance(v, int | float) and not isinstance(v, bool)},
                        step=run.step)
        accelerator.end_training()
    return metrics


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
