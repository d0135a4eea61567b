"""The run folder and checkpoint format (the only module that reads or writes them).

A run folder holds everything needed to reload a model::

    runs/<name>/config.json        the full config, written first
                data.json          image shape and class names of the training data
                log.jsonl          one JSON line per logged step
                checkpoints/ckpt-<step>.safetensors   weights of every module, prefixed 'name.'
                checkpoints/ckpt-<step>.state.pt      optimizer, scheduler, RNG and step state
                checkpoints/latest.json               which pair is complete and current
                samples/, figures/, metrics.json
                lock.json          host, pid and start time of the process training in it now

An *exported* folder (``genlab export``, ``export_run``) is a minimal run folder of the same
format: config.json, data.json, log.jsonl up to its step, metrics.json, and one weights-only
checkpoint holding the inference modules ('model' and its EMA copy 'ema'), with no state file.
It loads, samples, evaluates and plots like the run it came from; it cannot resume training.

Weights are safetensors (no pickle). The state file holds only tensors and plain containers and is
read with ``torch.load(weights_only=True)``. Every file is written to a temporary name and renamed,
and ``latest.json`` is renamed last, so a kill at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genlab.config import BaseConfig, to_dict
from genlab.errors import RunError
from genlab.files import read_json, write_atomic, write_file_atomic, write_json

KEEP_CHECKPOINTS = 2


def create_run(run_dir: Path, cfg: BaseConfig, data_info: dict[str, Any]) -> None:
    """Start a new run folder; config.json is the first file written."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} already holds a run; resume it with `genlab train --resume "
                       f"{run_dir}` or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", to_dict(cfg))
    write_json(run_dir / "data.json", data_info)


def lock_path(run_dir: Path) -> Path:
    return Path(run_dir) / "lock.json"


def lock_run(run_dir: Path) -> None:
    """Take the run folder for this process: one writer per run. A lock held by a live process
    (or by any process on another host, which cannot be checked from here) is refused with a
    RunError naming it; a lock left by a dead process on this host is replaced."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    mine = {"host": socket.gethostname(), "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(3):
        try:  # O_EXCL: of two processes racing for the folder, exactly one creates the file
            fd = os.open(lock_path(run_dir), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(lock_path(run_dir).read_text())
            except (OSError, json.JSONDecodeError):
                held = {}  # half-written by a process that died at that moment: stale
            if held and (held.get("host") != mine["host"] or _alive(int(held.get("pid", 0)))):
                raise RunError(
                    f"{run_dir} is in use by pid {held.get('pid')} on {held.get('host')} (since "
                    f"{held.get('started')}); wait for it to finish, or if that process is gone, "
                    f"delete {lock_path(run_dir)}") from None
            lock_path(run_dir).unlink(missing_ok=True)  # stale: its process is dead
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(mine) + "\n")
        return
    raise RunError(f"could not take {lock_path(run_dir)}: other processes keep replacing it")


def unlock_run(run_dir: Path) -> None:
    """Release the run folder, if this process holds it."""
    path = lock_path(run_dir)
    try:
        held = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return
    if held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def read_config_values(run_dir: Path) -> dict[str, Any]:
    """config.json as plain values (the recipe registry turns them into a config)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise RunError(f"{run_dir} is not a genlab run folder (no config.json)")
    values = read_json(run_dir / "config.json")
    if not isinstance(values, dict):
        raise RunError(f"{run_dir / 'config.json'}: expected a JSON object")
    return values


def is_run(path: Path) -> bool:
    """Whether ``path`` looks like a run folder (it has a config.json)."""
    return (Path(path) / "config.json").is_file()


def metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / "metrics.json"


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    write_json(metrics_path(run_dir), metrics)
    return metrics_path(run_dir)


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json, or {} for a run not evaluated yet."""
    path = metrics_path(run_dir)
    return read_json(path) if path.is_file() else {}


def figures_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "figures"


def figure_path(run_dir: Path, kind: str) -> Path:
    return figures_dir(run_dir) / f"{kind}.png"


def preview_path(run_dir: Path, step: int) -> Path:
    """Where the training loop puts the preview grid drawn at a checkpoint."""
    return Path(run_dir) / "samples" / f"step-{step:08d}.png"


def previews(run_dir: Path) -> list[Path]:
    """The preview grids of a run, oldest first."""
    return sorted((Path(run_dir) / "samples").glob("step-*.png"))


def read_data_info(run_dir: Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / "data.json")


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    with open(Path(run_dir) / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_log(run_dir: Path, step: int) -> None:
    """Drop log lines written after ``step`` (they belong to the part of a run that was lost)."""
    kept = [r for r in read_log(run_dir) if r.get("step", 0) <= step]
    write_atomic(Path(run_dir) / "log.jsonl", "".join(json.dumps(r) + "\n" for r in kept).encode())


def save_checkpoint(run_dir: Path, step: int, modules: dict[str, nn.Module],
                    state: dict[str, Any], cfg: BaseConfig, keep: int = KEEP_CHECKPOINTS) -> None:
    """Write weights + state for ``step`` atomically, then point latest.json at them; keep the
    newest ``keep`` checkpoints (0: all)."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"ckpt-{step:08d}"
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous()
               for name, m in modules.items() for k, v in m.state_dict().items()}
    metadata = {"config": json.dumps(to_dict(cfg)), "step": str(step)}
    write_file_atomic(folder / f"{stem}.safetensors",
                      lambda tmp: save_file(tensors, tmp, metadata=metadata))
    write_file_atomic(folder / f"{stem}.state.pt",
                      lambda tmp: torch.save({"step": step, **state}, tmp))
    write_json(folder / "latest.json", {"step": step, "weights": f"{stem}.safetensors",
                                        "state": f"{stem}.state.pt"})
    # Older checkpoints go only after latest.json points at the new one.
    old = sorted(folder.glob("ckpt-*.safetensors"))[:-keep] if keep > 0 else []
    for path in old:
        path.unlink(missing_ok=True)
        path.with_name(path.name.replace(".safetensors", ".state.pt")).unlink(missing_ok=True)


def latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "checkpoints" / "latest.json"
    return read_json(path) if path.exists() else None


def _latest(run_dir: Path) -> dict[str, Any]:
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise RunError(f"{run_dir} has no checkpoint yet (checkpoints/latest.json is missing)")
    return latest


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps whose weights the run folder keeps, oldest first."""
    return sorted(int(p.name[len("ckpt-"):-len(".safetensors")])
                  for p in (Path(run_dir) / "checkpoints").glob("ckpt-*.safetensors"))


def load_weights(run_dir: Path, step: int | None = None
                 ) -> tuple[dict[str, dict[str, torch.Tensor]], int]:
    """Weights per module name of the latest checkpoint (or of ``step``), and its step."""
    latest = _latest(run_dir)
    name = latest["weights"]
    if step is not None and step != latest["step"]:
        kept = checkpoint_steps(run_dir)
        if step not in kept:
            raise RunError(f"{run_dir} keeps no checkpoint of step {step}; it has steps "
                           f"{kept} (train with --keep-checkpoints 0 to keep every one)")
        name = f"ckpt-{step:08d}.safetensors"
    flat = load_file(Path(run_dir) / "checkpoints" / name)
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        name, _, rest = key.partition(".")
        weights.setdefault(name, {})[rest] = value
    return weights, int(latest["step"] if step is None else step)


def load_state(run_dir: Path) -> dict[str, Any]:
    """The training state (optimizers, generator states, step) of the latest checkpoint, read
    with ``weights_only=True``."""
    latest = _latest(run_dir)
    if "state" not in latest:
        raise RunError(f"{run_dir} is an exported model (weights only, no optimizer state): it "
                       f"cannot resume training; resume the run it came from"
                       + (f", {latest['exported_from']}" if latest.get("exported_from") else ""))
    return torch.load(Path(run_dir) / "checkpoints" / latest["state"], map_location="cpu",
                      weights_only=True)


@dataclass
class Run:
    """A trained run, ready for inference: config, data info, modules in eval mode."""

    run_dir: Path
    config: BaseConfig
    data_info: dict[str, Any]
    modules: dict[str, nn.Module]
    step: int

    @property
    def model(self) -> nn.Module:
        """The network used for inference: the EMA copy where the run keeps one."""
        return self.modules.get("ema", self.modules["model"])

    @property
    def family(self) -> str:
        return self.config.family  # type: ignore[attr-defined]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.data_info["image_shape"])  # type: ignore[return-value]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when torch sees a GPU, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_into(run_dir: Path, modules: dict[str, nn.Module], device: str | torch.device = "cpu",
              step: int | None = None) -> int:
    """Load the latest checkpoint's weights (or ``step``'s) into ``modules`` (eval mode, on
    ``device``); returns the checkpoint's step. Weights of modules not asked for are ignored (an
    old run's EMA copy at decay 0, which equals the model). An exported folder keeps only the
    inference modules: the others (a GAN's discriminator) are removed from ``modules``."""
    weights, step = load_weights(run_dir, step)
    exported = is_export(run_dir)
    for name, module in list(modules.items()):
        if name not in weights and exported and name not in INFERENCE_MODULES:
            del modules[name]
            continue
        if name not in weights:
            raise RunError(f"{run_dir}: checkpoint has no weights for {name!r}")
        module.load_state_dict(weights[name])
        module.to(device).eval()
    return step


# --- exported folders -----------------------------------------------------------------------------

INFERENCE_MODULES = ("model", "ema")
"""the modules sampling, evaluation and figures use: the trained network and its EMA copy"""


def is_export(run_dir: Path) -> bool:
    """Whether a run folder is an export (a weights-only checkpoint, no training state)."""
    latest = latest_checkpoint(run_dir)
    return latest is not None and "state" not in latest


def export_run(run_dir: Path, out: Path, step: int | None = None) -> int:
    """Write a minimal run folder ``out`` from the latest checkpoint of ``run_dir`` (or that of
    ``step``): config.json, data.json, log.jsonl up to that step, metrics.json when the run has
    one, and checkpoints/ckpt-<step>.safetensors holding only INFERENCE_MODULES, the tensors
    copied bit for bit, with latest.json pointing at it. Returns the step."""
    run_dir, out = Path(run_dir), Path(out)
    values = read_config_values(run_dir)
    if out.resolve() == run_dir.resolve():
        raise RunError(f"cannot export {run_dir} into itself; choose another --out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"{out} already exists and is not empty; choose another --out")
    weights, step = load_weights(run_dir, step)
    tensors = {f"{name}.{k}": v.contiguous() for name in INFERENCE_MODULES if name in weights
               for k, v in weights[name].items()}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", values)
    write_json(out / "data.json", read_data_info(run_dir))
    kept = [r for r in read_log(run_dir) if r.get("step", 0) <= step]
    write_atomic(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in kept).encode())
    if metrics_path(run_dir).is_file():
        write_metrics(out, read_metrics(run_dir))
    stem = f"ckpt-{step:08d}"
    metadata = {"config": json.dumps(values), "step": str(step), "exported_from": str(run_dir)}
    write_file_atomic(out / "checkpoints" / f"{stem}.safetensors",
                      lambda tmp: save_file(tensors, tmp, metadata=metadata))
    write_json(out / "checkpoints" / "latest.json",  # last: the folder is complete from here
               {"step": step, "weights": f"{stem}.safetensors", "exported_from": str(run_dir)})
    return step
