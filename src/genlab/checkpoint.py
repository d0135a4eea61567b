"""The run folder and checkpoint format (the only module that reads or writes them).

A run folder holds everything needed to reload a model::

    runs/<name>/config.json        the full config, written first
                data.json          image shape and class names of the training data
                log.jsonl          one JSON line per logged step
                checkpoints/ckpt-<step>.safetensors   weights of every module, prefixed 'name.'
                checkpoints/ckpt-<step>.state.pt      optimizer, scheduler, RNG and step state
                checkpoints/latest.json               which pair is complete and current
                samples/, figures/, metrics.json

Weights are safetensors (no pickle). The state file holds only tensors and plain containers and is
read with ``torch.load(weights_only=True)``. Every file is written to a temporary name and renamed,
and ``latest.json`` is renamed last, so a kill at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genlab.config import BaseConfig, from_dict, to_dict
from genlab.errors import RunError
from genlab.models import MODELS

KEEP_CHECKPOINTS = 2


def write_file_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Let ``write`` fill a temporary file in the same folder, fsync it, then rename it to
    ``path`` atomically; on any failure the temporary file goes and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` via a temporary file in the same folder and an atomic rename."""
    write_file_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path: Path, obj: Any) -> None:
    write_atomic(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunError(f"{path} not found") from None
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON ({err})") from None


def create_run(run_dir: Path, cfg: BaseConfig, data_info: dict[str, Any]) -> None:
    """Start a new run folder; config.json is the first file written."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} already holds a run; resume it with `genlab train --resume "
                       f"{run_dir}` or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", to_dict(cfg))
    write_json(run_dir / "data.json", data_info)


def read_config(run_dir: Path) -> BaseConfig:
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise RunError(f"{run_dir} is not a genlab run folder (no config.json)")
    return from_dict(read_json(run_dir / "config.json"))


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
                    state: dict[str, Any], cfg: BaseConfig) -> None:
    """Write weights + state for ``step`` atomically, then point latest.json at them."""
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
    old = sorted(folder.glob("ckpt-*.safetensors"))[:-KEEP_CHECKPOINTS]
    for path in old:
        path.unlink(missing_ok=True)
        path.with_name(path.name.replace(".safetensors", ".state.pt")).unlink(missing_ok=True)


def latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "checkpoints" / "latest.json"
    return read_json(path) if path.exists() else None


def load_checkpoint(run_dir: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Weights per module name and the training state of the latest checkpoint."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise RunError(f"{run_dir} has no checkpoint yet (checkpoints/latest.json is missing)")
    folder = Path(run_dir) / "checkpoints"
    flat = load_file(folder / latest["weights"])
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        name, _, rest = key.partition(".")
        weights.setdefault(name, {})[rest] = value
    state = torch.load(folder / latest["state"], map_location="cpu", weights_only=True)
    return weights, state


@dataclass
class Run:
    """A trained run, ready for inference: config, data info, modules in eval mode."""

    run_dir: Path
    config: BaseConfig
    data_info: dict[str, Any]
    modules: dict[str, nn.Module]
    step: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        """The network used for inference: the EMA copy where the family keeps one."""
        return self.modules.get("ema", self.modules["model"])

    @property
    def family(self) -> str:
        return self.config.family  # type: ignore[attr-defined]


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when torch sees a GPU, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """Rebuild the networks of a run folder from its config and load the latest weights."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    info = read_data_info(run_dir)
    modules = MODELS[cfg.family](cfg, tuple(info["image_shape"]), len(info["classes"]))
    weights, state = load_checkpoint(run_dir)
    for name, module in modules.items():
        if name not in weights:
            raise RunError(f"{run_dir}: checkpoint has no weights for {name!r}")
        module.load_state_dict(weights[name])
        module.to(device).eval()
    return Run(run_dir, cfg, info, modules, int(state["step"]), dict(state.get("extra", {})))
