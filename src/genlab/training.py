"""The training loop: ``train(cfg) -> run_dir``. One explicit loop over any family's recipe.

The loop owns what every family shares: batches, flips and single-image mode, the learning-rate
warm-up and schedule, the EMA of the inference network, logging, checkpoints and the time budget;
the recipe's ``step`` computes its loss and calls ``TrainState.update`` (backward, clipping,
optimizer step). Accelerate wraps the loop (device placement, DDP across processes, bf16
autocast); it does not replace it. Batches are drawn from the in-memory uint8 split by a
permutation that depends only on (seed, epoch), so a run resumed from a checkpoint draws the same
batches, noise and updates as one never interrupted.
"""

from __future__ import annotations

import math
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab import checkpoint, data, recipes
from genlab.config import BaseConfig, diff, replace, to_dict
from genlab.errors import ConfigError, RunError, TrainingDiverged
from genlab.hardware import resolve_precision
from genlab.plots import save_grid
from genlab.recipes.base import TrainState

# Fields that may change when a run is resumed: they extend it or move it, not change its maths.
RESUMABLE_CHANGES = ("epochs", "steps", "max_minutes", "device", "num_threads", "log_every",
                     "checkpoint_every", "run_dir", "data_dir", "download")
PREVIEW_IMAGES = 64


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (BatchNorm statistics)
    are copied."""
    ema_params, params = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def single_image(cfg: BaseConfig, image_shape: tuple[int, ...]) -> torch.Tensor:
    """The one training image of single-image mode, (1, C, H, W) uint8: a training-split index or
    an image file of the dataset's shape."""
    spec = str(cfg.single_image)
    if spec.isdigit():
        split = data.load(cfg.dataset, "train", cfg.data_dir, cfg.download)
        if int(spec) >= len(split):
            raise ConfigError(f"single_image index {spec} is outside the {cfg.dataset} train "
                              f"split (0..{len(split) - 1})")
        image = split.images[int(spec)]
    else:
        arr = data.read_image(spec)
        if arr.dtype != "uint8":  # 16-bit files: keep the top 8 bits
            arr = (arr >> 8).astype("uint8")
        image = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    if tuple(image.shape) != tuple(image_shape):
        raise ConfigError(
            f"single image {spec} is {tuple(image.shape)} (C, H, W) but the model is built for "
            f"the {cfg.dataset} images, {tuple(image_shape)}; put the image in a folder and pass "
            f"--dataset folder:DIR, or resize it")
    return image[None]


# --- the loop ------------------------------------------------------------------------------------


def lr_factor(cfg: BaseConfig, step: int, total: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then constant or cosine decay."""
    warmup = cfg.warmup_steps
    if warmup and step < warmup:
        return (step + 1) / warmup
    if cfg.lr_schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def default_run_dir(cfg: BaseConfig) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.dataset.replace("folder:", ""))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.family}-{name.strip('_')}-{stamp}"  # type: ignore[attr-defined]


def resolve_resume(run_dir: Path, cfg: BaseConfig | None, overrides: dict[str, Any]) -> BaseConfig:
    """The config a resumed run continues with; refuses changes other than RESUMABLE_CHANGES."""
    saved = recipes.config_from_values(checkpoint.read_config_values(run_dir))
    wanted = cfg if cfg is not None else saved
    if overrides:
        wanted = replace(wanted, **overrides)
    if wanted.precision == "auto":  # the saved run already holds what 'auto' resolved to
        wanted = replace(wanted, precision=saved.precision)
    conflicts = diff(saved, wanted, allowed=RESUMABLE_CHANGES)
    if conflicts:
        a, b = to_dict(saved), to_dict(wanted)
        detail = ", ".join(f"{k} (saved {a[k]!r}, given {b[k]!r})" for k in conflicts)
        raise ConfigError(f"cannot resume {run_dir} with a different config: {detail}; only "
                          f"{', '.join(RESUMABLE_CHANGES[:3])} and where it runs may change")
    return wanted


def train(cfg: BaseConfig | None = None, resume: str | Path | None = None,
          progress: bool = True, **overrides: Any) -> Path:
    """Train a model; returns the run folder. ``resume`` continues a run from its last
    checkpoint."""
    if resume is not None:
        run_dir = Path(resume)
        cfg = resolve_resume(run_dir, cfg, overrides)
        if checkpoint.latest_checkpoint(run_dir) is None:
            raise RunError(f"{run_dir} has no checkpoint to resume from; start it again instead")
    else:
        if cfg is None:
            raise ConfigError("train() needs a config or resume=RUN_DIR")
        if overrides:
            cfg = replace(cfg, **overrides)
        run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    recipe = recipes.get(cfg.family)  # type: ignore[attr-defined]

    from accelerate import Accelerator

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    use_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA GPU")
    precision, reason = resolve_precision(cfg.precision, "cpu" if use_cpu else "cuda")
    if precision != cfg.precision:  # 'auto' is resolved once and recorded in config.json
        cfg = replace(cfg, precision=precision)
    accelerator = Accelerator(cpu=use_cpu,
                              mixed_precision="bf16" if cfg.precision == "bf16" else "no")
    if accelerator.is_main_process and (resume is None or "warning" in reason):
        print(reason, file=sys.stderr)
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes

    train_data = data.load(cfg.dataset, "train", cfg.data_dir, cfg.download)
    info = {"dataset": cfg.dataset, "image_shape": list(train_data.image_shape),
            "classes": list(train_data.classes), "num_train": len(train_data)}
    if resume is None and accelerator.is_main_process:
        checkpoint.create_run(run_dir, cfg, info)
        message = recipe.start_message(cfg)
        if message:
            print(message, file=sys.stderr)
    accelerator.wait_for_everyone()

    torch.manual_seed(cfg.seed)
    modules = recipes.build_modules(cfg, train_data.image_shape, len(train_data.classes))
    optimizers = recipe.setup(cfg, modules)
    trained = [name for name in modules if name in optimizers]
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    for module in modules.values():
        module.to(device=device, memory_format=memory_format)
    prepared = accelerator.prepare(*[modules[n] for n in trained],
                                   *[optimizers[n] for n in trained])
    prepared = prepared if isinstance(prepared, tuple) else (prepared,)
    for i, name in enumerate(trained):
        modules[name], optimizers[name] = prepared[i], prepared[len(trained) + i]
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + 1 + rank)
    state = TrainState(cfg, accelerator, modules, optimizers, gen, info)

    n = len(train_data)
    per_epoch = data.steps_per_epoch(n, cfg.batch_size, world)
    total = cfg.steps if cfg.steps > 0 else cfg.epochs * per_epoch
    start = 0
    if resume is not None:
        weights, _ = checkpoint.load_weights(run_dir)
        saved = checkpoint.load_state(run_dir)
        for name, module in modules.items():
            accelerator.unwrap_model(module).load_state_dict(weights[name])
        for name, opt in optimizers.items():
            opt.load_state_dict(saved["optimizers"][name])
        gen.set_state(saved["gen_state"][rank] if world > 1 else saved["gen_state"][0])
        torch.set_rng_state(saved["torch_rng"])
        state.extra.update(saved.get("extra", {}))
        start = int(saved["step"])
        if accelerator.is_main_process:
            checkpoint.truncate_log(run_dir, start)
        trained_seconds = next((r["train_seconds"] for r in reversed(checkpoint.read_log(run_dir))
                                if "train_seconds" in r), 0.0)
        if start >= total or _out_of_time(cfg, trained_seconds, accelerator):
            return run_dir

    else:
        trained_seconds = 0.0
    # a memory-mapped (prepared) split stays on disk: each batch reads its rows, then moves alone
    images = train_data.images if train_data.memory_mapped else train_data.images.to(device)
    labels = train_data.labels.to(device)
    one = single_image(cfg, train_data.image_shape).to(device) if cfg.single_image else None
    bar = _progress(progress and accelerator.is_main_process, total, start, run_dir)
    sums: dict[str, float] = {}
    count, tick, batches, last_ckpt = 0, time.perf_counter(), None, start
    try:
        for step in range(start, total):
            epoch, i = divmod(step, per_epoch)
            if batches is None or i == 0:
                batches = data.epoch_batches(n, cfg.batch_size, cfg.seed, epoch, rank, world)
            idx = batches[i].to(device)
            batch = images[idx.to(images.device)].to(device) if one is None else one.expand(
                len(idx), -1, -1, -1)
            x, y = data.to_float(batch), labels[idx]           # (B, C, H, W) in [-1, 1]
            if cfg.hflip:
                flip = torch.rand(x.shape[0], generator=gen, device=device) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            x = x.contiguous(memory_format=memory_format)
            lr_scale = lr_factor(cfg, step, total)
            for opt in optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = group.setdefault("initial_lr", group["lr"]) * lr_scale
            logs = recipe.step(state, x, y, step)
            if "ema" in modules:  # warm-up: early on the average would remember the init
                ema_update(modules["ema"], state.unwrap(), min(cfg.ema_decay,
                                                               (1 + step) / (10 + step)))
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
            if bar is not None:
                bar.update(1)
            done = step + 1
            # the time budget is checked every step on one process, at log lines under several
            timed_out = ((world == 1 or done % cfg.log_every == 0) and _out_of_time(
                cfg, trained_seconds + time.perf_counter() - tick, accelerator))
            if done % cfg.log_every == 0 or done == total or timed_out:
                elapsed = time.perf_counter() - tick
                trained_seconds += elapsed
                record = {"step": done, "epoch": round(done / per_epoch, 4),
                          **{k: v / count for k, v in sums.items()},
                          "lr": cfg.lr * lr_scale,
                          "images_per_s": round(count * cfg.batch_size * world / elapsed, 1),
                          "train_seconds": round(trained_seconds, 2)}
                if accelerator.is_main_process:
                    checkpoint.append_log(run_dir, record)
                if bar is not None:
                    bar.set_postfix(epoch=f"{done / per_epoch:.2f}",
                                    loss=f"{record.get('loss', 0):.4g}",
                                    img_s=f"{record['images_per_s']:.0f}")
                sums, count, tick = {}, 0, time.perf_counter()
            if timed_out or done % cfg.checkpoint_every == 0 or done == total:
                _save(state, run_dir, done, world)
                last_ckpt = done
            if timed_out:
                break
    except TrainingDiverged as err:
        raise TrainingDiverged(f"{err}; stopped, the last good checkpoint (step {last_ckpt}) is "
                               f"kept in {run_dir / 'checkpoints'}") from None
    finally:
        if bar is not None:
            bar.close()
    accelerator.wait_for_everyone()
    return run_dir


def _out_of_time(cfg: BaseConfig, seconds: float, accelerator) -> bool:
    """Whether the training-time budget is spent; every process gets the main process's answer."""
    if cfg.max_minutes <= 0:
        return False
    spent = seconds >= 60 * cfg.max_minutes
    if accelerator.num_processes == 1:  # no tensor, no device sync on the per-step path
        return spent
    from accelerate.utils import broadcast

    flag = torch.tensor([float(spent)], device=accelerator.device)
    return bool(broadcast(flag, from_process=0).item())


def _save(state: TrainState, run_dir: Path, step: int, world: int) -> None:
    """Checkpoint and a preview grid; refuses to overwrite good weights with non-finite ones."""
    acc = state.accelerator
    unwrapped = {name: acc.unwrap_model(m) for name, m in state.modules.items()}
    for name, module in unwrapped.items():
        for pname, p in module.state_dict().items():
            if p.is_floating_point() and not torch.isfinite(p).all():
                raise TrainingDiverged(f"non-finite weights in {name}.{pname} at step {step}")
    gen_states = [state.gen.get_state()]
    if world > 1:
        gathered = acc.gather(state.gen.get_state().to(acc.device)[None])
        gen_states = [g.cpu().clone() for g in gathered]  # rows, not views of one
    if not acc.is_main_process:
        return
    payload = {"optimizers": {n: o.state_dict() for n, o in state.optimizers.items()},
               "gen_state": gen_states, "torch_rng": torch.get_rng_state(),
               "extra": state.extra}
    checkpoint.save_checkpoint(run_dir, step, unwrapped, payload, state.cfg)
    preview_gen = torch.Generator(device=acc.device).manual_seed(12345)
    was_training = {n: m.training for n, m in unwrapped.items()}
    for m in unwrapped.values():
        m.eval()
    images = recipes.get(state.cfg.family).preview(state, PREVIEW_IMAGES, preview_gen)
    for n, m in unwrapped.items():
        m.train(was_training[n])
    save_grid(data.to_uint8(images), checkpoint.preview_path(run_dir, step), nrow=8)


def _progress(enabled: bool, total: int, start: int, run_dir: Path):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=run_dir.name, unit="step", mininterval=0.5,
                disable=not sys.stderr.isatty(), dynamic_ncols=True)
