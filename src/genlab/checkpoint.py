"""The run folder and checkpoint format. The folder's file names are written here and nowhere
else (``tests/test_docstrings.py`` checks): other modules reach them through this module's
functions.

A run folder holds everything needed to reload a model::

    runs/<name>/config.json        the full config, written first
                data.json          image shape and class names of the training data
                log.jsonl          one JSON line per logged step
                checkpoints/ckpt-<step>.safetensors   weights of every module, prefixed 'name.'
                checkpoints/ckpt-<step>.state.pt      step, optimizers, every process's RNG
                                                      states, recipe state, training seconds
                checkpoints/ckpt-<step>.json          manifest: the size and SHA-256 of both
                checkpoints/latest.json               which checkpoint is complete and current
                samples/, figures/, metrics.json
                lock.json          host, pid and start time of the process training in it now

An *exported* folder (``genlab export``, ``export_run``) is a minimal run folder of the same
format: config.json, data.json, log.jsonl up to its step, metrics.json, and one weights-only
checkpoint holding the inference modules ('model' and its EMA copy 'ema'), with no state file.
It loads, samples, evaluates and plots like the run it came from; it cannot resume training.

Weights are safetensors (no pickle). The state file holds only tensors and plain containers and is
read with ``torch.load(weights_only=True)``. Every file is written to a temporary name and renamed,
the manifest after the files it describes and ``latest.json`` last, so a kill at any moment leaves
the previous checkpoint intact.

The training loop reaches the folder through this module too: ``open_run`` takes its lock and
creates it, or rewinds it to the checkpoint a run resumes from; ``save_training_state`` writes what
a training checkpoint holds (the state file's keys are listed there) and ``restore_training_state``
puts each process of a resumed run back where it stopped.

A run folder also lives through copies (rsync, a Hub download, a full disk, a network file
system), so every load checks what it reads: the bytes of each checkpoint file against the size
and hash its manifest records (read once, hashed, then parsed from memory), the structure of
every JSON file, and the names latest.json and the manifests give (plain file names in
checkpoints/, never a path or a link out of the run folder). A damaged or missing newest
checkpoint is passed over for the newest intact one (``Checkpoint.damaged`` says why); anything
else that cannot be used is a RunError naming the file and what was expected. Folders written
before manifests existed load as they did, checked for structure only.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from genlab.config import BaseConfig, to_dict
from genlab.distributed import describe_processes, resume_command
from genlab.errors import (
    FallbackWarning,
    GenlabError,
    RunError,
    WriteFailed,
    on_every_rank,
    one_line,
)
from genlab.files import read_bytes, read_json, sha256, write_atomic, write_json

KEEP_CHECKPOINTS = 2
"""checkpoints a run keeps by default: the newest and one to fall back on if it is damaged"""
FORMAT = 1
"""version of latest.json and the manifests this genlab writes; a newer one is refused"""
_FILE = re.compile(r"ckpt-(\d+)\.(safetensors|state\.pt|json)")


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
    RunError naming it; a lock left by a dead process on this host, or one too damaged to name
    its process, is replaced."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    mine = {"host": socket.gethostname(), "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(3):
        try:  # O_EXCL: of two processes racing for the folder, exactly one creates the file
            fd = os.open(lock_path(run_dir), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = _read_lock(run_dir)  # {} when half-written by a process that died then
            pid = held.get("pid")
            if held and (held.get("host") != mine["host"] or _alive(pid)):
                raise RunError(
                    f"{run_dir} is in use by pid {pid} on {held.get('host')} (since "
                    f"{held.get('started')}); wait for it to finish, or if that process is gone, "
                    f"delete {lock_path(run_dir)}") from None
            lock_path(run_dir).unlink(missing_ok=True)  # stale: its process is dead
            continue
        except OSError as err:
            raise WriteFailed(f"could not write {lock_path(run_dir)}: "
                              f"{err.strerror or err}") from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(mine) + "\n")
        return
    raise RunError(f"could not take {lock_path(run_dir)}: other processes keep replacing it")


def _read_lock(run_dir: Path) -> dict[str, Any]:
    """lock.json's host, pid and start time, or {} when it is damaged (then no process can be
    named, and the lock counts as stale)."""
    try:
        held = json.loads(lock_path(run_dir).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    if (not isinstance(held, dict) or not isinstance(held.get("pid"), int)
            or isinstance(held.get("pid"), bool) or not isinstance(held.get("host"), str)):
        return {}
    return held


def unlock_run(run_dir: Path) -> None:
    """Release the run folder, if this process holds it."""
    held = _read_lock(run_dir)
    if held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
        lock_path(run_dir).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def config_path(run_dir: Path) -> Path:
    return Path(run_dir) / "config.json"


def checkpoint_file(run_dir: Path, name: str) -> Path:
    """A file of the checkpoints folder, by the name a manifest entry gives it."""
    return Path(run_dir) / "checkpoints" / name


def read_config_values(run_dir: Path) -> dict[str, Any]:
    """config.json as plain values (the recipe registry turns them into a config)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise RunError(f"{run_dir} is not a genlab run folder (no config.json)")
    values = read_json(run_dir / "config.json")
    if not isinstance(values, dict):
        raise RunError(f"{run_dir / 'config.json'}: expected a JSON object of config fields, "
                       f"got {type(values).__name__}")
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
    if not path.is_file():
        return {}
    metrics = read_json(path)
    if not isinstance(metrics, dict):
        raise RunError(f"{path}: expected a JSON object of metrics, got "
                       f"{type(metrics).__name__}; delete it and run `genlab evaluate` again")
    return metrics


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


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def read_data_info(run_dir: Path) -> dict[str, Any]:
    """data.json: the image shape and class names the networks are built for."""
    path = Path(run_dir) / "data.json"
    info = read_json(path)
    shape = info.get("image_shape") if isinstance(info, dict) else None
    if (not isinstance(shape, list) or len(shape) != 3 or not all(map(_count, shape))
            or not isinstance(info.get("classes"), list)):
        raise RunError(f"{path}: expected a JSON object with image_shape [C, H, W] (positive "
                       f"integers) and classes (a list)")
    return info


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    path = Path(run_dir) / "log.jsonl"
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as err:
        raise WriteFailed(f"could not write {path}: {err.strerror or err}") from None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """The records of log.jsonl, oldest first. A broken last line (cut mid-write by a kill) is
    skipped; a broken line before it is a RunError naming the line."""
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        return []
    lines = read_bytes(path).split(b"\n")
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            record = None
        if (isinstance(record, dict) and isinstance(record.get("step"), int)
                and all(map(_number, record.values()))):
            records.append(record)
        elif any(rest.strip() for rest in lines[i:]):
            raise RunError(f"{path}, line {i}: expected a JSON object of numbers with a step; "
                           f"the log is damaged (delete that line to use the rest)")
    return records


def truncate_log(run_dir: Path, step: int) -> None:
    """Drop log lines written after ``step`` (they belong to the part of a run that was lost)."""
    kept = [r for r in read_log(run_dir) if r["step"] <= step]
    write_atomic(Path(run_dir) / "log.jsonl", "".join(json.dumps(r) + "\n" for r in kept).encode())


# --- checkpoints -------------------------------------------------------------------------------


def _stem(step: int) -> str:
    return f"ckpt-{step:08d}"


def _manifest(step: int, files: dict[str, bytes], **extra: Any) -> dict[str, Any]:
    """What latest.json points at, and the size and SHA-256 of each file (a manifest)."""
    names = {"weights": f"{_stem(step)}.safetensors", "state": f"{_stem(step)}.state.pt"}
    return {"format": FORMAT, "step": step, **{k: v for k, v in names.items() if v in files},
            **extra, "files": {name: {"bytes": len(raw), "sha256": sha256(raw)}
                               for name, raw in files.items()}}


def _commit(folder: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> None:
    """Write the files, then their manifest, then latest.json (the commit point). A write that
    fails removes what this checkpoint wrote so far and leaves latest.json as it was."""
    step = manifest["step"]
    try:
        for name, raw in files.items():
            write_atomic(folder / name, raw)
        write_json(folder / f"{_stem(step)}.json", manifest)
    except WriteFailed:
        _remove_step(folder, step)  # not committed: the previous checkpoint stays current
        raise
    write_json(folder / "latest.json", {k: v for k, v in manifest.items() if k != "files"})


def _remove_step(folder: Path, step: int) -> None:
    for suffix in (".safetensors", ".state.pt", ".json"):
        (folder / f"{_stem(step)}{suffix}").unlink(missing_ok=True)


def _stored_steps(folder: Path) -> dict[int, set[str]]:
    """The steps with any checkpoint file in ``folder``, each with the kinds present."""
    found: dict[int, set[str]] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = _FILE.fullmatch(path.name)
            if match:
                found.setdefault(int(match.group(1)), set()).add(match.group(2))
    return found


def save_checkpoint(run_dir: Path, step: int, modules: dict[str, nn.Module],
                    state: dict[str, Any], cfg: BaseConfig, keep: int = KEEP_CHECKPOINTS) -> None:
    """Write weights + state for ``step`` atomically, their manifest, then point latest.json at
    them; keep the newest ``keep`` checkpoints (0: all). Each file is hashed from the bytes
    written, so the manifest costs no second read."""
    folder = Path(run_dir) / "checkpoints"
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous()
               for name, m in modules.items() for k, v in m.state_dict().items()}
    metadata = {"config": json.dumps(to_dict(cfg)), "step": str(step)}
    buffer = io.BytesIO()
    torch.save({"step": step, **state}, buffer)
    files = {f"{_stem(step)}.safetensors": save_safetensors(tensors, metadata=metadata),
             f"{_stem(step)}.state.pt": buffer.getvalue()}
    _commit(folder, _manifest(step, files), files)
    # Older checkpoints go only after latest.json points at the new one.
    older = sorted(s for s in _stored_steps(folder) if s < step)
    for old in older[:max(0, len(older) - (keep - 1))] if keep > 0 else []:
        _remove_step(folder, old)


def latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """latest.json as written (which checkpoint is current), or None before the first one."""
    path = Path(run_dir) / "checkpoints" / "latest.json"
    return read_json(path) if path.exists() else None


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run folder holds a checkpoint, intact or not."""
    folder = Path(run_dir) / "checkpoints"
    return (folder / "latest.json").exists() or bool(_stored_steps(folder))


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps whose weights the run folder keeps, oldest first."""
    return sorted(step for step, kinds in _stored_steps(Path(run_dir) / "checkpoints").items()
                  if "safetensors" in kinds)


class _Damaged(RunError):
    """A checkpoint file (or latest.json) that cannot be used: an older one may be."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back and checked: its weights per module name, its training state
    (when asked for), and why newer ones were passed over."""

    step: int
    weights: dict[str, dict[str, torch.Tensor]]
    state: dict[str, Any] | None
    entry: dict[str, Any]
    """what latest.json (or the checkpoint's manifest) says about it"""
    newest: int
    """the newest step the folder holds a checkpoint of (``step`` unless one was passed over)"""
    damaged: str | None = None
    """the first damage found in a newer checkpoint or in latest.json; None when none was"""

    @property
    def exported(self) -> bool:
        return "state" not in self.entry


def _checked_entry(value: Any, path: Path, step: int | None = None) -> dict[str, Any]:
    """latest.json's or a manifest's content, checked: a newer format, a wrong type or a name
    that does not match its step is damage; a name that leads out of checkpoints/ is refused."""
    if not isinstance(value, dict):
        raise _Damaged(f"{path}: expected a JSON object, got {type(value).__name__}")
    version = value.get("format", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Damaged(f"{path}: format {version!r} is not a version number")
    if version > FORMAT:
        raise _Damaged(f"{path} is of format {version}, written by a newer genlab (this one "
                       f"reads format {FORMAT} and older); upgrade genlab")
    for key in ("weights", "state"):
        name = value.get(key)
        if isinstance(name, str) and (Path(name).name != name or name in (".", "..")
                                      or "\\" in name or os.path.isabs(name)):
            raise RunError(f"{path} names {name!r}, a path out of {path.parent}; refusing to "
                           f"read it (a run folder names only files in its checkpoints/)")
    at = value.get("step")
    if not isinstance(at, int) or isinstance(at, bool) or at < 0 or (step is not None
                                                                     and at != step):
        raise _Damaged(f"{path}: expected the step {'' if step is None else f'{step} '}as an "
                       f"integer, got {at!r}")
    if value.get("weights") != f"{_stem(at)}.safetensors" or value.get("state", (
            f"{_stem(at)}.state.pt")) != f"{_stem(at)}.state.pt":
        raise _Damaged(f"{path}: expected weights {_stem(at)}.safetensors (and state "
                       f"{_stem(at)}.state.pt) for step {at}, got {value.get('weights')!r} "
                       f"and {value.get('state')!r}")
    files = value.get("files")
    if files is not None:
        names = {value["weights"], *([value["state"]] if "state" in value else [])}
        if (not isinstance(files, dict) or set(files) != names or not all(
                isinstance(r, dict) and isinstance(r.get("bytes"), int)
                and isinstance(r.get("sha256"), str) for r in files.values())):
            raise _Damaged(f"{path}: expected the bytes and sha256 of {sorted(names)} under "
                           f"'files'")
    return value


def _pointer(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """latest.json checked, or None and why it cannot be used (None too when it is missing)."""
    path = Path(run_dir) / "checkpoints" / "latest.json"
    if not path.exists():
        return None, f"{path} is missing"
    try:
        return _checked_entry(_read_json_damaged(path), path), None
    except _Damaged as err:
        return None, str(err)


def _folder_is_export(pointer: dict[str, Any] | None, stored: dict[int, set[str]]) -> bool:
    if pointer is not None:
        return "state" not in pointer
    return bool(stored) and not any("state.pt" in kinds for kinds in stored.values())


def is_export(run_dir: Path) -> bool:
    """Whether a run folder is an export (a weights-only checkpoint, no training state)."""
    return _folder_is_export(_pointer(run_dir)[0], _stored_steps(Path(run_dir) / "checkpoints"))


def _entry(run_dir: Path, step: int, pointer: dict[str, Any] | None,
           stored: dict[int, set[str]], manifests: bool) -> dict[str, Any]:
    """What the folder says about the checkpoint of ``step``: its manifest, or, in a folder
    written before manifests, latest.json's entry or the names its files have."""
    folder = Path(run_dir) / "checkpoints"
    path = folder / f"{_stem(step)}.json"
    if "json" in stored.get(step, set()):
        entry = _checked_entry(_read_json_damaged(path), path, step)
        if "files" not in entry:
            raise _Damaged(f"{path}: expected the bytes and sha256 of the checkpoint's files "
                           f"under 'files'")
        return entry
    if manifests:
        raise _Damaged(f"{path} is missing (it holds the checksums of step {step}'s files)")
    if pointer is not None and pointer["step"] == step:
        return pointer
    entry = {"step": step, "weights": f"{_stem(step)}.safetensors"}
    if not _folder_is_export(pointer, stored):
        entry["state"] = f"{_stem(step)}.state.pt"
    return entry


def _read_json_damaged(path: Path) -> Any:
    """read_json, whose RunError is damage that an older checkpoint may get round."""
    try:
        return read_json(path)
    except RunError as err:
        raise _Damaged(str(err)) from None


def _read_checked(run_dir: Path, entry: dict[str, Any], key: str) -> tuple[Path, bytes]:
    """The bytes of the checkpoint file ``entry[key]``, checked against the size and SHA-256
    the manifest records; a link out of the run folder is refused."""
    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / entry[key]
    target = path.resolve()
    if run_dir.resolve() not in target.parents:
        raise RunError(f"{path} is a link to {target}, outside the run folder {run_dir}; "
                       f"refusing to read it")
    raw = _read_damaged(path)
    record = entry.get("files", {}).get(entry[key])
    manifest = f"{_stem(entry['step'])}.json"
    if record is not None and len(raw) != record["bytes"]:
        raise _Damaged(f"{path} is {len(raw)} bytes where {manifest} records {record['bytes']} "
                       f"(truncated or damaged)")
    if record is not None and sha256(raw) != record["sha256"]:
        raise _Damaged(f"{path} does not match the SHA-256 that {manifest} records (one of "
                       f"them was damaged after they were written)")
    return path, raw


def _read_damaged(path: Path) -> bytes:
    try:
        return read_bytes(path)
    except RunError as err:
        raise _Damaged(str(err)) from None


def _weights(path: Path, raw: bytes, step: int) -> dict[str, dict[str, torch.Tensor]]:
    """Tensors per module name from the bytes of a safetensors file of ``step``."""
    try:
        flat = load_safetensors(raw)
        size = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8:8 + size]).get("__metadata__") or {}
    except Exception as err:  # the parser's own error types, of any damage
        raise _Damaged(f"{path}: not a readable safetensors file ({one_line(err)})") from None
    if str(metadata.get("step", step)) != str(step):
        raise _Damaged(f"{path} holds the weights of step {metadata.get('step')}, not {step}")
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        name, dot, rest = key.partition(".")
        if not (name and dot and rest):
            raise _Damaged(f"{path}: tensor {key!r} is not named 'module.parameter'")
        weights.setdefault(name, {})[rest] = value
    return weights


def _state(path: Path, raw: bytes, step: int) -> dict[str, Any]:
    """The training state of ``step`` from the bytes of its state file (weights_only)."""
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # zip, unpickling and tensor errors of any damage
        raise _Damaged(f"{path}: not a readable training state ({one_line(err)})") from None
    if (not isinstance(state, dict) or state.get("step") != step
            or not isinstance(state.get("optimizers"), dict) or "gen_state" not in state):
        raise _Damaged(f"{path}: expected the training state of step {step} (step, optimizers, "
                       f"generator states)")
    return state


def load_checkpoint(run_dir: Path, step: int | None = None, state: bool = False) -> Checkpoint:
    """The newest intact checkpoint (or that of ``step``), its weights checked against its
    manifest and parsed, and its training state too when ``state``. A damaged or missing newer
    one is passed over (``Checkpoint.damaged`` says why); none intact, or ``step`` damaged, is
    a RunError naming the file."""
    run_dir = Path(run_dir)
    folder = run_dir / "checkpoints"
    pointer, problem = _pointer(run_dir)
    stored = _stored_steps(folder)
    steps = set(stored) | ({pointer["step"]} if pointer else set())
    if pointer is not None:  # newer files are not committed (a kill before latest.json)
        steps = {s for s in steps if s <= pointer["step"]}
    if not steps:
        if (folder / "latest.json").exists():
            raise RunError(f"{run_dir} has no intact checkpoint: {problem}")
        raise RunError(f"{run_dir} has no checkpoint yet (checkpoints/latest.json is missing)")
    if state and _folder_is_export(pointer, stored):
        exported_from = (pointer or {}).get("exported_from")
        raise RunError(f"{run_dir} is an exported model (weights only, no optimizer state): it "
                       f"cannot resume training; resume the run it came from"
                       + (f", {exported_from}" if exported_from else ""))
    if step is not None and step not in steps:
        raise RunError(f"{run_dir} keeps no checkpoint of step {step}; it has steps "
                       f"{sorted(steps)} (train with --keep-checkpoints 0 to keep every one)")
    manifests = (pointer is not None and "format" in pointer) or any(
        "json" in kinds for kinds in stored.values())
    order = [step] if step is not None else sorted(steps, reverse=True)
    problems = [problem] if problem and step is None else []
    for at in order:
        try:
            entry = _entry(run_dir, at, pointer, stored, manifests)
            weights = _weights(*_read_checked(run_dir, entry, "weights"), at)
            saved = _state(*_read_checked(run_dir, entry, "state"), at) if state else None
        except _Damaged as err:
            if step is not None:
                raise RunError(str(err)) from None
            problems.append(str(err))
            continue
        return Checkpoint(at, weights, saved, entry, order[0], problems[0] if problems else None)
    raise RunError(f"{run_dir} has no intact checkpoint: {problems[-1]}"
                   + (f" (and {len(problems) - 1} newer damage(s), first: {problems[0]})"
                      if len(problems) > 1 else ""))


def fallback_warning(ckpt: Checkpoint) -> None:
    """Say in one line (a FallbackWarning) which damage made ``ckpt`` the one used."""
    if ckpt.damaged is not None:
        warnings.warn(f"{ckpt.damaged}; using the newest intact checkpoint, step {ckpt.step}",
                      FallbackWarning, stacklevel=3)


def load_weights(run_dir: Path, step: int | None = None
                 ) -> tuple[dict[str, dict[str, torch.Tensor]], int]:
    """Weights per module name of the newest intact checkpoint (or of ``step``), and its step."""
    ckpt = load_checkpoint(run_dir, step)
    fallback_warning(ckpt)
    return ckpt.weights, ckpt.step


def load_state(run_dir: Path) -> dict[str, Any]:
    """The training state (optimizers, generator states, step) of the newest intact checkpoint,
    read with ``weights_only=True``."""
    ckpt = load_checkpoint(run_dir, state=True)
    fallback_warning(ckpt)
    assert ckpt.state is not None, "read with state=True"
    return ckpt.state


def rewind(run_dir: Path, ckpt: Checkpoint) -> None:
    """Make ``ckpt`` the run's current checkpoint before training resumes from it: latest.json
    points at it, newer checkpoint files (damaged, or never committed) go, and so do the log
    lines past its step (that part of the run is trained again)."""
    folder = Path(run_dir) / "checkpoints"
    kept = [r for r in read_log(run_dir) if r["step"] <= ckpt.step]  # a damaged log stops here
    if ckpt.damaged is not None:
        write_json(folder / "latest.json", {k: v for k, v in ckpt.entry.items() if k != "files"})
    for step in _stored_steps(folder):
        if step > ckpt.step:
            _remove_step(folder, step)
    write_atomic(Path(run_dir) / "log.jsonl",
                 "".join(json.dumps(r) + "\n" for r in kept).encode())


# --- training: opening a run, and what its state file holds ------------------------------------


def open_run(run_dir: Path, cfg: BaseConfig, data_info: dict[str, Any], new: bool) -> int | None:
    """Lock the run folder for the process that trains in it, then create it (a new run), or pick
    the newest checkpoint whose weights and state are intact and rewind the folder to it (a
    resumed one: newer, damaged checkpoint files and the log lines past it go). Returns the step
    to resume from (None for a new run); the lock is released if this fails."""
    lock_run(run_dir)
    try:
        if new:
            create_run(run_dir, cfg, data_info)
            return None
        ckpt = load_checkpoint(run_dir, state=True)
        if ckpt.damaged is not None:
            redo = (f"steps {ckpt.step + 1}-{ckpt.newest} will be trained again"
                    if ckpt.newest > ckpt.step else "no step is lost")
            warnings.warn(f"{ckpt.damaged}; resuming from step {ckpt.step}: {redo}",
                          FallbackWarning, stacklevel=2)
        rewind(run_dir, ckpt)
        return ckpt.step
    except BaseException:
        unlock_run(run_dir)
        raise


def save_training_state(run_dir: Path, step: int, modules: dict[str, nn.Module],
                        optimizers: dict[str, torch.optim.Optimizer], *,
                        gen_states: list[torch.Tensor], cpu_states: list[torch.Tensor],
                        cuda_states: list[torch.Tensor] | None, world_size: int, num_nodes: int,
                        extra: dict[str, Any], train_seconds: float, cfg: BaseConfig,
                        keep: int = KEEP_CHECKPOINTS) -> None:
    """Write the checkpoint of training step ``step`` (``save_checkpoint``): the modules' weights,
    and a state file holding each optimizer's state ('optimizers'), every process's noise
    generator ('gen_state'), CPU RNG ('cpu_rng'; 'torch_rng' is the main process's, as older
    genlabs read it) and, on CUDA, GPU RNG ('cuda_rng') states, each a list indexed by rank; the
    processes and machines of the job ('world_size', 'num_nodes'), the recipe's own state
    ('extra') and the training seconds so far ('train_seconds'). A run resumed on as many
    processes (``restore_training_state``) then draws what it would have drawn."""
    state = {"optimizers": {n: o.state_dict() for n, o in optimizers.items()},
             "gen_state": gen_states, "torch_rng": cpu_states[0], "cpu_rng": cpu_states,
             "world_size": world_size, "num_nodes": num_nodes, "extra": extra,
             "train_seconds": train_seconds}
    if cuda_states is not None:
        state["cuda_rng"] = cuda_states
    save_checkpoint(run_dir, step, modules, state, cfg, keep=keep)


def restore_training_state(run_dir: Path, ckpt: Checkpoint, modules: dict[str, nn.Module],
                           optimizers: dict[str, torch.optim.Optimizer], gen: torch.Generator,
                           rank: int, world: int, device: torch.device
                           ) -> tuple[dict[str, Any], float]:
    """Put process ``rank`` of a resumed run of ``world`` processes where ``ckpt`` (read with its
    state) left it: each module's weights (the unwrapped modules), each optimizer's state, its
    noise generator ``gen`` and its global CPU (and CUDA) RNG states. Returns the recipe's extra
    state and the training seconds so far. A checkpoint of another number of processes, or one
    that does not fit the modules and optimizers, is a RunError naming the file."""
    saved = ckpt.state
    if saved is None:
        raise ValueError("restore_training_state needs a checkpoint read with state=True")
    state_file = checkpoint_file(run_dir, ckpt.entry["state"])
    weights_file = checkpoint_file(run_dir, ckpt.entry["weights"])
    try:
        # Resuming is exact only on the number of processes the run was trained on: each
        # process draws its own share of every batch and its own noise stream. Making both
        # independent of the number of processes would mean per-sample noise in every
        # family's step; refusing a changed count, with the command that continues the run,
        # keeps the steps as they are.
        saved_world = int(saved.get("world_size", len(saved["gen_state"])))
        if saved_world != world:
            raise on_every_rank(RunError(
                f"{run_dir} was trained on {describe_processes(saved_world)} and this job has "
                f"{describe_processes(world)}; resume it on {saved_world} "
                f"(`{resume_command(run_dir, saved_world, int(saved.get('num_nodes', 1)))}`"
                f"): each process draws its own share of the batch and its own noise, so "
                f"only that count continues the run exactly"))
        for name, module in modules.items():
            if name not in ckpt.weights:
                raise RunError(f"{weights_file} has no weights for {name!r}, which "
                               f"config.json's network has")
            load_module(module, ckpt.weights[name], str(weights_file))
        for name, opt in optimizers.items():
            opt.load_state_dict(saved["optimizers"][name])
        gen.set_state(saved["gen_state"][rank])
        torch.set_rng_state(saved["cpu_rng"][rank] if "cpu_rng" in saved
                            else saved["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng"][rank], device)
        # the training time so far (an older genlab's state has none: its log's last line)
        trained_seconds = float(saved["train_seconds"]) if "train_seconds" in saved else next(
            (r["train_seconds"] for r in reversed(read_log(run_dir))
             if "train_seconds" in r), 0.0)
    except GenlabError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        raise on_every_rank(RunError(
            f"{state_file} does not fit the run that config.json describes "
            f"({one_line(err)})")) from None
    return saved.get("extra", {}), trained_seconds


C = TypeVar("C", bound=BaseConfig)


@dataclass
class Run(Generic[C]):
    """A trained run, ready for inference: config, data info, modules in eval mode. Typed by its
    config: a recipe's functions take ``Run[ItsConfig]``, so its fields read without casts."""

    run_dir: Path
    config: C
    data_info: dict[str, Any]
    modules: dict[str, nn.Module]
    step: int

    @property
    def model(self) -> nn.Module:
        """The network used for inference: the EMA copy where the run keeps one."""
        return self.modules.get("ema", self.modules["model"])

    @property
    def family(self) -> str:
        return self.config.family

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.data_info["image_shape"]
        return int(c), int(h), int(w)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when torch sees a GPU, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_module(module: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(weights)``; weights that do not fit its shapes (config.json or
    data.json changed after training) are a one-line RunError naming ``source``."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError) as err:
        raise RunError(f"{source} does not fit the network that config.json and data.json "
                       f"describe ({one_line(err)})") from None


def load_into(run_dir: Path, modules: dict[str, nn.Module], device: str | torch.device = "cpu",
              step: int | None = None) -> int:
    """Load the newest intact checkpoint's weights (or ``step``'s) into ``modules`` (eval mode,
    on ``device``); returns the checkpoint's step. Weights of modules not asked for are ignored
    (an old run's EMA copy at decay 0, which equals the model). An exported folder keeps only the
    inference modules: the others (a GAN's discriminator) are removed from ``modules``."""
    ckpt = load_checkpoint(run_dir, step)
    fallback_warning(ckpt)
    source = str(Path(run_dir) / "checkpoints" / ckpt.entry["weights"])
    for name, module in list(modules.items()):
        if name not in ckpt.weights and ckpt.exported and name not in INFERENCE_MODULES:
            del modules[name]
            continue
        if name not in ckpt.weights:
            raise RunError(f"{source} has no weights for {name!r}, which config.json's network "
                           f"has")
        load_module(module, ckpt.weights[name], source)
        module.to(device).eval()
    return ckpt.step


# --- exported folders -----------------------------------------------------------------------------

INFERENCE_MODULES = ("model", "ema")
"""the modules sampling, evaluation and figures use: the trained network and its EMA copy"""


def export_run(run_dir: Path, out: Path, step: int | None = None) -> int:
    """Write a minimal run folder ``out`` from the newest intact checkpoint of ``run_dir`` (or
    that of ``step``): config.json, data.json, log.jsonl up to that step, metrics.json when the
    run has one, and checkpoints/ckpt-<step>.safetensors holding only INFERENCE_MODULES, the
    tensors copied bit for bit, with its manifest and latest.json pointing at it. Returns the
    step."""
    run_dir, out = Path(run_dir), Path(out)
    values = read_config_values(run_dir)
    if out.resolve() == run_dir.resolve():
        raise RunError(f"cannot export {run_dir} into itself; choose another --out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"{out} already exists and is not empty; choose another --out")
    info, log, metrics = read_data_info(run_dir), read_log(run_dir), read_metrics(run_dir)
    weights, step = load_weights(run_dir, step)
    tensors = {f"{name}.{k}": v.contiguous() for name in INFERENCE_MODULES if name in weights
               for k, v in weights[name].items()}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", values)
    write_json(out / "data.json", info)
    kept = [r for r in log if r["step"] <= step]
    write_atomic(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in kept).encode())
    if metrics:
        write_metrics(out, metrics)
    metadata = {"config": json.dumps(values), "step": str(step), "exported_from": str(run_dir)}
    files = {f"{_stem(step)}.safetensors": save_safetensors(tensors, metadata=metadata)}
    _commit(out / "checkpoints", _manifest(step, files, exported_from=str(run_dir)), files)
    return step
