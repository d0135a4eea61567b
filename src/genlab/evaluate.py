"""``evaluate(run_dir) -> metrics``: scores a run on its dataset's held-out split, writes metrics.json.

Each family's evaluator takes the loaded run and the evaluation split and returns a flat-ish dict of
numbers plus what they depend on (sample counts, seeds), so that a number is never reported without
the settings that produced it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genlab import checkpoint, data
from genlab.checkpoint import Run, pick_device
from genlab.metrics import vae_bounds

# --- VAE -----------------------------------------------------------------------------------------


def _evaluate_vae(run: Run, split_data: data.ImageData, seed: int = 0, k: int = 100,
                  num_images: int | None = None, batch_size: int = 500,
                  **_: Any) -> dict[str, Any]:
    """Test loss as trained (its beta), the true ELBO (beta = 1) and the k-sample IWAE bound."""
    x01 = data.bernoulli_targets(split_data.images, run.config.binarize, seed)  # type: ignore[attr-defined]
    if num_images:
        x01 = x01[:num_images]
    gen = torch.Generator(device=next(run.model.parameters()).device).manual_seed(seed)
    b = vae_bounds(run.model, x01, k=k, gen=gen, batch_size=max(1, batch_size * 100 // max(k, 1)))
    beta = run.config.beta  # type: ignore[attr-defined]
    return {
        "loss_as_trained": float((b["recon"] + beta * b["kl"]).mean()),
        "beta": beta,
        "recon_nats": float(b["recon"].mean()),
        "kl_nats": float(b["kl"].mean()),
        "elbo_nats": float(b["elbo"].mean()),
        "nll_elbo_nats": float(-b["elbo"].mean()),
        "nll_iwae_nats": float(-b["iwae"].mean()),
        "iwae_k": k,
        "num_images": int(x01.shape[0]),
        "seed": seed,
        "likelihood": "bernoulli, binarised pixels" if run.config.binarize  # type: ignore[attr-defined]
        else "bernoulli on grey levels (pytorch/examples convention)",
    }


EVALUATORS: dict[str, Callable[..., dict[str, Any]]] = {"vae": _evaluate_vae}


def evaluate(run_dir: str | Path, split: str = "test", seed: int = 0, device: str = "auto",
             **options: Any) -> dict[str, Any]:
    """Score the run's latest weights on ``split`` and write run_dir/metrics.json."""
    run_dir = Path(run_dir)
    run = checkpoint.load_run(run_dir, pick_device(device))
    cfg = run.config
    split_data = data.load(cfg.dataset, split, cfg.data_dir, cfg.download)
    results = EVALUATORS[run.family](run, split_data, seed=seed,
                                     **{k: v for k, v in options.items() if v is not None})
    metrics = {"family": run.family, "dataset": cfg.dataset, "split": split, "step": run.step,
               **results}
    checkpoint.write_json(run_dir / "metrics.json", metrics)
    return metrics
