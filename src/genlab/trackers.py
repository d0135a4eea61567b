"""Experiment trackers (TensorBoard, Weights & Biases, MLflow) through Accelerate: the run's log
lines, preview grids and final metrics go there as well as into the run folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from genlab.config import BaseConfig, to_dict
from genlab.errors import ConfigError

TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def tracker(name: str) -> str | None:
    """The Accelerate tracker for ``log_with``, once its package is known to import."""
    if name == "none":
        return None
    if importlib.util.find_spec(TRACKER_PACKAGES[name]) is None:
        raise ConfigError(f"--log-with {name} needs the {TRACKER_PACKAGES[name]} package: pip "
                          f"install {TRACKER_PACKAGES[name]} (tensorboard comes with "
                          f"'genlab[track]')")
    return name


def make_accelerator(**kwargs):
    """An ``accelerate.Accelerator(**kwargs)`` whatever the process made before. Accelerate keeps
    one mixed-precision setting per process and refuses a second Accelerator that asks for
    another, so a notebook or a script that trains an fp32 run and then a bf16 one would fail.
    The process-wide state is therefore reset first, except the process group of a distributed
    launch (PartialState), which every run of the job shares."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(**kwargs)


def start_trackers(accelerator, run_dir: Path, cfg: BaseConfig) -> None:
    """Trackers log into RUN/trackers (TensorBoard's event files) under the run's name, with the
    config's scalar fields as the run's parameters."""
    accelerator.project_configuration.project_dir = str(run_dir)
    accelerator.project_configuration.logging_dir = str(run_dir)
    params = {k: v for k, v in to_dict(cfg).items() if isinstance(v, int | float | str | bool)}
    accelerator.init_trackers("trackers", config=params)


def log_images(accelerator, name: str, images: torch.Tensor, step: int) -> None:
    """Send uint8 (N, C, H, W) images to the trackers that take images (TensorBoard, wandb)."""
    for t in accelerator.trackers:
        if t.name == "tensorboard":
            t.writer.add_images(name, images, global_step=step, dataformats="NCHW")
        elif t.name == "wandb":
            t.log_images({name: list(images.permute(0, 2, 3, 1).numpy())}, step=step)
