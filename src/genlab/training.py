"""The training loop: ``train(cfg) -> run_dir``. One explicit loop over any family's recipe.

The loop owns what every family shares: batches, flips, crops and single-image mode, gradient
accumulation, the learning-rate warm-up and schedule, the EMA of the inference network, logging,
checkpoints and the time budget; the recipe's ``step`` computes its loss and calls
``TrainState.update`` (backward, clipping, optimizer step). Accelerate wraps the loop (device
placement, DDP across processes, bf16 autocast); it does not replace it. Batches are drawn from
the uint8 split (in memory or memory-mapped) by a permutation that depends only on (seed, epoch)
(``genlab.batching``), and a checkpoint holds every RNG state (``checkpoint.save_training_state``),
so a run resumed from a checkpoint draws the same batches, noise and updates as one never
interrupted.

Under several processes (torchrun, ``accelerate launch``) each draws its share of every batch and
its own noise; the main process alone writes the run folder (holding its lock), and every decision
to stop (a signal, the time budget, a non-finite loss) is combined across the processes, so that
all of them stop after the same step (the helpers that make them agree are
``genlab.distributed``'s). SIGTERM and SIGINT end a run with a checkpoint and ``Preempted``.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import sys
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab import checkpoint, data, recipes, schedules
from genlab.batching import epoch_batches, random_crop, steps_per_epoch
from genlab.config import BaseConfig, diff, replace, to_dict
from genlab.distributed import (
    StopSignals,
    any_process,
    global_means,
    job_nodes,
    launch_warning,
    on_main,
    per_process,
    resume_command,
)
from genlab.errors import (
    ConfigError,
    Preempted,
    RunError,
    TrainingDiverged,
    WriteFailed,
    on_every_rank,
)
from genlab.hardware import cpu_threads, poll_threads, resolve_precision, threads_note
from genlab.images import to_float, to_uint8
from genlab.plots import save_grid
from genlab.recipes.base import TrainState
from genlab.trackers import log_images, make_accelerator, start_trackers, tracker

# Fields that may change when a run is resumed: they extend it or move it, not change its maths.
RESUMABLE_CHANGES = ("epochs", "steps", "max_minutes", "budget_minutes", "device", "num_threads",
                     "log_every", "checkpoint_every", "keep_checkpoints", "log_with", "run_dir",
                     "data_dir", "download")
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
        split = data.load_split(cfg, "train")
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


def lr_factor(cfg: BaseConfig, step: int, total: int | None, seconds: float) -> float:
    """Learning-rate multiplier before optimizer step ``step`` of a run bounded by ``total``
    steps (None: by its time budget alone) that has trained for ``seconds``."""
    budget = budget_seconds(cfg)
    fraction = schedules.progress(step, total, seconds, budget)
    return schedules.lr_factor(cfg.lr_schedule, fraction, cfg.warmup_fraction, step,
                               cfg.warmup_steps, 0 if budget else (total or 0))


def budget_seconds(cfg: BaseConfig) -> float:
    """The seconds the schedules span: budget_minutes, else max_minutes (0: none)."""
    return 60.0 * (cfg.budget_minutes or cfg.max_minutes)


def default_run_dir(cfg: BaseConfig) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.dataset.replace("folder:", ""))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.family}-{name.strip('_')}-{stamp}"


def resolve_resume(run_dir: Path, cfg: BaseConfig | None, overrides: dict[str, Any]) -> BaseConfig:
    """The config a resumed run continues with; refuses changes other than RESUMABLE_CHANGES."""
    saved = recipes.run_config(run_dir)
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
    checkpoint. SIGTERM or SIGINT finish the current step, write a checkpoint and raise
    ``Preempted``; under several processes every decision to stop (a signal, the time budget, a
    non-finite loss) is agreed, so all of them stop at the same step."""
    if resume is not None:
        run_dir: Path | None = Path(resume)
        cfg = resolve_resume(run_dir, cfg, overrides)
        if not checkpoint.has_checkpoint(run_dir):
            raise RunError(f"{run_dir} has no checkpoint to resume from; start it again instead")
    else:
        if cfg is None:
            raise ConfigError("train() needs a config or resume=RUN_DIR")
        if overrides:
            cfg = replace(cfg, **overrides)
        run_dir = None
    with cpu_threads(cfg.num_threads) as share:
        return _train(cfg, run_dir, resume is not None, progress, threads_note(share))


def _train(cfg: BaseConfig, run_dir: Path | None, resuming: bool, progress: bool,
           threads: str) -> Path:
    """``train`` once the config is known, within its CPU threads."""
    recipe = recipes.get(cfg.family)
    use_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA GPU")
    if cfg.sync_batchnorm and use_cpu:
        raise ConfigError("sync_batchnorm needs CUDA (torch's SyncBatchNorm runs on GPUs only); "
                          "on CPUs drop --sync-batchnorm: each process then normalises its own "
                          "share of the batch")
    # The data come first (once per job: a download happens on the main process, the others then
    # read it): 'auto' precision looks at the networks, which are built for the data's shape.
    from accelerate import PartialState

    with PartialState(cpu=use_cpu).main_process_first():
        train_data = data.load_split(cfg, "train")
    with torch.device("meta"):  # the networks' layers only: no memory, no random draws
        layers = recipes.build_modules(cfg, train_data.image_shape, len(train_data.classes))
    precision, reason = resolve_precision(cfg.precision, "cpu" if use_cpu else "cuda",
                                          layers.values())
    if precision != cfg.precision:  # 'auto' is resolved once and recorded in config.json
        cfg = replace(cfg, precision=precision)
    accelerator = make_accelerator(cpu=use_cpu,
                                   mixed_precision={"bf16": "bf16", "fp16": "fp16"}.get(
                                       cfg.precision, "no"),
                                   log_with=tracker(cfg.log_with),
                                   project_dir=str(run_dir or cfg.run_dir or "."))  # set once known
    world = accelerator.num_processes
    warning = launch_warning(dict(os.environ), world)
    if accelerator.is_main_process and warning:
        print(warning, file=sys.stderr)
    if run_dir is None:  # one name for the job: each process would stamp its own time
        run_dir = Path(on_main(accelerator, lambda: str(cfg.run_dir or default_run_dir(cfg))))

    info = {"dataset": cfg.dataset, "image_shape": list(train_data.image_shape),
            "classes": list(train_data.classes), "num_train": len(train_data),
            "dtype": str(train_data.images.dtype).removeprefix("torch."),
            # why the run trains as it does, as said when it started
            "precision_reason": reason, "threads": threads if use_cpu else None}
    # One writer per run folder: the main process takes its lock and creates it (or truncates the
    # log of a resumed run to its checkpoint); every process gets the outcome, so a refusal stops
    # them all and the others read the log only once it is truncated.
    resume_step = on_main(accelerator, lambda: checkpoint.open_run(run_dir, cfg, info,
                                                                   new=not resuming))
    if not resuming and accelerator.is_main_process:
        if use_cpu:
            reason = f"{reason}; {threads}"
        for message in (reason, recipe.start_message(cfg)):  # said once, when the run starts
            if message:
                print(message, file=sys.stderr)
    elif accelerator.is_main_process and "warning" in reason:
        print(reason, file=sys.stderr)
    if cfg.log_with != "none":
        start_trackers(accelerator, run_dir, cfg)
    try:
        with StopSignals() as signals:
            return _loop(cfg, recipe, accelerator, run_dir, train_data, info, resume_step,
                         signals, progress)
    finally:
        if cfg.log_with != "none":
            accelerator.end_training()
        if accelerator.is_main_process:
            checkpoint.unlock_run(run_dir)




def _loop(cfg: BaseConfig, recipe: recipes.Recipe, accelerator, run_dir: Path,
          train_data: data.ImageData, info: dict[str, Any], resume_step: int | None,
          signals: StopSignals, progress: bool) -> Path:
    """The loop itself, on every process: build, load a checkpoint (that of ``resume_step``),
    step, log, save."""
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    torch.manual_seed(cfg.seed)
    modules = recipes.build_modules(cfg, train_data.image_shape, len(train_data.classes))
    optimizers = recipe.setup(cfg, modules)
    trained = [name for name in modules if name in optimizers]
    if cfg.sync_batchnorm and world > 1:  # BatchNorm statistics of the global batch
        for name in trained:
            modules[name] = nn.SyncBatchNorm.convert_sync_batchnorm(modules[name])
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
    per_epoch = steps_per_epoch(n, cfg.batch_size, world)
    # None: no step bound, the time budget ends the run
    total = cfg.steps if cfg.steps > 0 else (cfg.epochs * per_epoch or None)
    start, trained_seconds = 0, 0.0
    if resume_step is not None:
        ckpt = checkpoint.load_checkpoint(run_dir, step=resume_step, state=True)
        unwrapped = {name: accelerator.unwrap_model(m) for name, m in modules.items()}
        extra, trained_seconds = checkpoint.restore_training_state(
            run_dir, ckpt, unwrapped, optimizers, gen, rank, world, device)
        state.extra.update(extra)
        start = ckpt.step
        if (total is not None and start >= total) or _out_of_time(cfg, trained_seconds):
            return run_dir

    # a memory-mapped (prepared) split stays on disk: each batch reads its rows, then moves alone
    images = train_data.images if train_data.memory_mapped else train_data.images.to(device)
    labels = train_data.labels.to(device)
    one = single_image(cfg, train_data.image_shape).to(device) if cfg.single_image else None
    nan_at = _test_hook("GENLAB_TEST_NAN_AT", rank)
    signal_at = _test_hook("GENLAB_TEST_SIGNAL_AT", rank)
    bar = _progress(progress and accelerator.is_main_process, total, start, run_dir)
    sums: dict[str, float] = {}
    count, seen, tick, batches, last_ckpt = 0, 0, time.perf_counter(), None, start
    clock = trained_seconds
    flops_per_image = None  # counted on the first step this process takes
    try:
        for step in itertools.count(start) if total is None else range(start, total):
            if step == signal_at:
                os.kill(os.getpid(), signal.SIGTERM)
            poll_threads()
            epoch, i = divmod(step, per_epoch)
            if batches is None or i == 0:
                batches = epoch_batches(n, cfg.batch_size, cfg.seed, epoch, rank, world)
            idx = batches[i].to(device)
            batch = images[idx.to(images.device)].to(device) if one is None else one.expand(
                len(idx), -1, -1, -1)
            x, y = to_float(batch), labels[idx]                # (B, C, H, W) in [-1, 1]
            if step == nan_at:
                x = x * float("nan")
            if cfg.hflip:
                flip = torch.rand(x.shape[0], generator=gen, device=device) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            if cfg.random_crop:
                x = random_crop(x, cfg.random_crop, gen)
            x = x.contiguous(memory_format=memory_format)
            # progress by time is the processes' agreed clock (the last step's), so every
            # process sets the same rate
            lr_scale = lr_factor(cfg, step, total, clock)
            for opt in optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = group.setdefault("initial_lr", group["lr"]) * lr_scale
            if flops_per_image is None:
                # the matmuls and convolutions of one update, forward and backward, counted
                # (torch's FlopCounterMode), per image: training FLOPs = this x images seen
                from torch.utils.flop_counter import FlopCounterMode

                with FlopCounterMode(display=False) as counter:
                    logs = accumulated_step(recipe, state, x, y, step)
                flops_per_image = counter.get_total_flops() / x.shape[0]
            else:
                logs = accumulated_step(recipe, state, x, y, step)
            if "ema" in modules:
                ema_update(modules["ema"], state.unwrap(),
                           schedules.ema_decay(step, cfg.ema_decay, cfg.ema_sigma_rel))
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count, seen = count + 1, seen + x.shape[0]
            if bar is not None:
                bar.update(1)
            done = step + 1
            # A signal or the spent time budget stops the run here; under several processes the
            # flags are combined across them every step, so all stop after the same step.
            flags = [signals.received, trained_seconds + time.perf_counter() - tick]
            stop_signal, clock = any_process(accelerator, flags) if world > 1 else flags
            timed_out = _out_of_time(cfg, clock)
            if done == total:
                stop_signal = 0  # finished anyway: nothing to resume
            if done % cfg.log_every == 0 or done == total or timed_out or stop_signal:
                elapsed = time.perf_counter() - tick
                trained_seconds += elapsed
                means, seen = global_means(accelerator, sums, count, seen)
                record = {"step": done, "epoch": round(done / per_epoch, 4), **means,
                          "lr": cfg.lr * lr_scale,
                          "images_per_s": round(seen / elapsed, 1),
                          "threads": torch.get_num_threads(),
                          "train_seconds": round(trained_seconds, 2),
                          "flops_per_image": flops_per_image}
                if accelerator.is_main_process:
                    checkpoint.append_log(run_dir, record)
                if cfg.log_with != "none":
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=done)
                if bar is not None:
                    bar.set_postfix(epoch=f"{done / per_epoch:.2f}",
                                    loss=f"{record.get('loss', 0):.4g}",
                                    img_s=f"{record['images_per_s']:.0f}")
                sums, count, seen, tick = {}, 0, 0, time.perf_counter()
            if timed_out or stop_signal or done % cfg.checkpoint_every == 0 or done == total:
                _save(state, run_dir, done, world, clock)
                last_ckpt = done
            if stop_signal:
                accelerator.wait_for_everyone()  # the checkpoint is written before any exits
                name = signal.Signals(int(stop_signal)).name
                raise Preempted(f"preempted by {name} at step {done}; checkpoint written; resume "
                                f"with `{resume_command(run_dir, world, job_nodes(world))}`",
                                int(stop_signal), done)
            if timed_out:
                break
    except TrainingDiverged as err:
        stopped = TrainingDiverged(f"{err}; stopped, the last good checkpoint (step {last_ckpt}) "
                                   f"is kept in {checkpoint.checkpoint_file(run_dir, '')}")
        stopped.every_rank = err.every_rank or world == 1
        raise stopped from None
    except WriteFailed as err:  # a full disk: what is written stays, the run can go on later
        try:
            kept = checkpoint.latest_checkpoint(run_dir)
        except RunError:
            kept = None
        where = (f"the checkpoint of step {kept.get('step')} is intact: free space, then resume "
                 f"with `{resume_command(run_dir, world, job_nodes(world))}`"
                 if isinstance(kept, dict) else
                 "no checkpoint was written yet: free space and start it again")
        raise WriteFailed(f"{err}; training stopped, {where}") from None
    finally:
        if bar is not None:
            bar.close()
    accelerator.wait_for_everyone()
    return run_dir


def accumulated_step(recipe: recipes.Recipe, state: TrainState, x: torch.Tensor,
                     y: torch.Tensor, step: int) -> dict[str, float | torch.Tensor]:
    """One update on the batch ``x``: the recipe's step on it whole, or, under gradient
    accumulation, on each micro-batch of batch_size / grad_accum images in turn.

    ``TrainState.update`` weights each micro-batch's loss by its share of the batch (the last,
    short batch of an epoch splits into fewer or shorter micro-batches and is still weighted
    exactly), so the summed gradient is the gradient of the batch mean. Every micro-batch but
    the last runs under Accelerate's ``no_sync`` for each trained module (what
    ``accelerator.accumulate`` does): DDP all-reduces the gradients once per update. Random draws
    inside the step (noise, time steps) are made per micro-batch from the same generator. In the
    GAN families each micro-batch updates D, then G; both optimizers step on the last
    micro-batch, so G's earlier micro-batches are judged by D before its step. Returns the logs,
    averaged over the micro-batches by the same weights."""
    micro_size = state.cfg.batch_size // state.cfg.grad_accum
    if state.cfg.grad_accum == 1 or len(x) <= micro_size:
        return recipe.step(state, x, y, step)
    chunks = list(zip(x.split(micro_size), y.split(micro_size)))
    trained = [m for name, m in state.modules.items() if name in state.optimizers]
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    try:
        for i, (x_i, y_i) in enumerate(chunks):
            state.micro, state.micro_batches = i, len(chunks)
            state.micro_weight = len(x_i) / len(x)
            with ExitStack() as stack:
                if i < len(chunks) - 1:  # gradients stay local until the last micro-batch
                    for module in trained:
                        stack.enter_context(state.accelerator.no_sync(module))
                logs = recipe.step(state, x_i, y_i, step)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + state.micro_weight * float(v)
                weights[k] = weights.get(k, 0.0) + state.micro_weight
    finally:
        state.micro, state.micro_batches, state.micro_weight = 0, 1, 1.0
    return {k: sums[k] / weights[k] for k in sums}


def _out_of_time(cfg: BaseConfig, seconds: float) -> bool:
    """Whether the training time this run may have (max_minutes, else budget_minutes) is spent."""
    stop = cfg.max_minutes or cfg.budget_minutes
    return stop > 0 and seconds >= 60 * stop


def _test_hook(name: str, rank: int) -> int | None:
    """Test hooks, read from the environment (tests/test_distributed.py; unset in normal use):
    GENLAB_TEST_NAN_AT="RANK:STEP" turns that process's batch at that step into NaNs;
    GENLAB_TEST_SIGNAL_AT="RANK:STEP" makes that process send itself SIGTERM before that step."""
    value = os.environ.get(name)
    if not value:
        return None
    hook_rank, _, hook_step = value.partition(":")
    return int(hook_step) if int(hook_rank) == rank else None


def _save(state: TrainState, run_dir: Path, step: int, world: int, seconds: float) -> None:
    """Checkpoint and a preview grid; refuses to overwrite good weights with non-finite ones.
    Gathers every process's noise generator and global CPU (and CUDA) RNG states for
    ``checkpoint.save_training_state``, so that a run resumed on as many processes draws what it
    would have drawn."""
    acc = state.accelerator
    unwrapped = {name: acc.unwrap_model(m) for name, m in state.modules.items()}
    bad = next((f"{name}.{pname}" for name, module in unwrapped.items()
                for pname, p in module.state_dict().items()
                if p.is_floating_point() and not torch.isfinite(p).all()), None)
    if world > 1:  # BatchNorm statistics differ between processes: agree on the verdict
        if any_process(acc, [bad is not None])[0] and bad is None:
            bad = "another process's weights"
    if bad is not None:
        raise on_every_rank(TrainingDiverged(f"non-finite weights in {bad} at step {step}"))
    gen_states = per_process(acc, state.gen.get_state())
    cpu_states = per_process(acc, torch.get_rng_state())
    cuda_states = (per_process(acc, torch.cuda.get_rng_state(acc.device))
                   if acc.device.type == "cuda" else None)
    if not acc.is_main_process:
        return
    checkpoint.save_training_state(
        run_dir, step, unwrapped, state.optimizers, gen_states=gen_states, cpu_states=cpu_states,
        cuda_states=cuda_states, world_size=world, num_nodes=job_nodes(world), extra=state.extra,
        train_seconds=seconds, cfg=state.cfg, keep=state.cfg.keep_checkpoints)
    preview_gen = torch.Generator(device=acc.device).manual_seed(12345)
    was_training = {n: m.training for n, m in unwrapped.items()}
    for m in unwrapped.values():
        m.eval()
    images = recipes.get(state.cfg.family).preview(state, PREVIEW_IMAGES, preview_gen)
    for n, m in unwrapped.items():
        m.train(was_training[n])
    path = checkpoint.preview_path(run_dir, step)
    try:
        save_grid(to_uint8(images), path, nrow=8)
    except OSError as err:
        raise WriteFailed(f"could not write {path}: {err.strerror or err}") from None
    if state.cfg.log_with != "none":
        log_images(acc, "preview", to_uint8(images).cpu(), step)


def _progress(enabled: bool, total: int, start: int, run_dir: Path):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=run_dir.name, unit="step", mininterval=0.5,
                disable=not (sys.stderr.isatty() or "ipykernel" in sys.modules),  # Jupyter too
                dynamic_ncols=True)
