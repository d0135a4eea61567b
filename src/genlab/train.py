"""The training loop: ``train(cfg) -> run_dir``. One explicit loop, one small step function per
family.

Accelerate wraps the loop (device placement, DDP across processes, bf16 autocast); it does not
replace it. Batches are drawn from the in-memory uint8 split by a permutation that depends only on
(seed, epoch), so a run resumed from a checkpoint draws the same batches, noise and updates as one
never interrupted.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from genlab import checkpoint, data
from genlab.config import BaseConfig, DDPMConfig, GANConfig, VAEConfig, diff, to_dict
from genlab.corruption import corrupt
from genlab.diffusion import NoiseSchedule
from genlab.errors import ConfigError, RunError, TrainingDiverged
from genlab.models import MODELS
from genlab.objectives import ddpm_loss, gan_d_loss, gan_g_loss, vae_loss
from genlab.plots import save_grid
from genlab.samplers import DEFAULT_DDIM_ETA, denoise, sample_ddim, sample_gan, sample_vae

# Fields that may change when a run is resumed: they extend it or move it, not change its maths.
RESUMABLE_CHANGES = ("epochs", "steps", "max_minutes", "device", "num_threads", "log_every",
                     "checkpoint_every", "run_dir", "data_dir", "download")
PREVIEW_IMAGES = 64


@dataclass
class TrainState:
    """What a step function works on: the modules, their optimizers and the run's noise source."""

    cfg: Any
    accelerator: Any
    modules: dict[str, nn.Module]  # saved in checkpoints; 'model' is trained, others as the family
    optimizers: dict[str, torch.optim.Optimizer]
    gen: torch.Generator  # every random draw of the loop (reparameterisation, noise, dropout-free)
    info: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)  # small per-family state, checkpointed


def adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam with the fused kernel (one op per step instead of ~10 per tensor: 1.4x faster for the
    MLP VAE on CPU, and the standard choice on CUDA)."""
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)


def check_finite(loss: torch.Tensor, step: int, what: str = "loss") -> None:
    """Stop before a non-finite loss reaches the weights."""
    if not torch.isfinite(loss).item():
        raise TrainingDiverged(f"{what} is {loss.item()} at step {step}")


# --- VAE -----------------------------------------------------------------------------------------


def _vae_setup(cfg: VAEConfig, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
    return {"model": adam(modules["model"].parameters(), cfg.lr)}


def _vae_step(s: TrainState, x: torch.Tensor, y: torch.Tensor,
              step: int) -> dict[str, torch.Tensor]:
    cfg: VAEConfig = s.cfg
    x01 = (x + 1) / 2  # Bernoulli means in [0, 1]
    if cfg.binarize:  # dynamic binarisation: a fresh binary image every time x is drawn
        x01 = torch.bernoulli(x01, generator=s.gen)
    beta = (cfg.beta * min(1.0, (step + 1) / cfg.kl_warmup_steps) if cfg.kl_warmup_steps
            else cfg.beta)
    with s.accelerator.autocast():
        loss, logs = vae_loss(s.modules["model"], x01, beta, s.gen)
    check_finite(loss, step)
    opt = s.optimizers["model"]
    opt.zero_grad(set_to_none=True)
    s.accelerator.backward(loss)
    opt.step()
    return logs


def _vae_preview(s: TrainState, n: int, gen: torch.Generator) -> torch.Tensor:
    return sample_vae(s.accelerator.unwrap_model(s.modules["model"]), n, gen)


# --- GAN -----------------------------------------------------------------------------------------

D_WINS = (0.99, 0.01)  # D(x) above and D(G(.)) below these: the discriminator wins outright


def _gan_setup(cfg: GANConfig, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
    betas = (cfg.beta1, 0.999)
    opts = {"model": adam(modules["model"].parameters(), cfg.lr, betas)}
    if "disc" in modules:
        opts["disc"] = adam(modules["disc"].parameters(), cfg.lr_d, betas)
    return opts


def _gan_noisy(cfg: GANConfig, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A fresh noisy version of a clean batch, drawn with the run's generator, rounded to whole
    grey levels as a stored 8-bit image would be, in [-1, 1]."""
    return data.to_float(corrupt(data.to_uint8(x), cfg.noise, cfg.peak, cfg.sigma, gen).round_())


def _gan_step(s: TrainState, x: torch.Tensor, y: torch.Tensor, step: int
              ) -> dict[str, torch.Tensor]:
    """One discriminator update, then one generator update (pix2pix / DCGAN)."""
    cfg: GANConfig = s.cfg
    net, disc = s.modules["model"], s.modules.get("disc")
    if cfg.mode == "denoise":
        cond, x0 = _gan_noisy(cfg, x, s.gen), x                # (B, C, H, W) noisy, clean
        inputs = cond
        s.info.setdefault("gan_preview_x0", x[:8].detach().clone())
    else:
        cond, x0 = None, None
        inputs = torch.randn((x.shape[0], cfg.latent_dim), generator=s.gen, device=x.device)
    with s.accelerator.autocast():
        x_fake = net(inputs)
    logs: dict[str, torch.Tensor] = {}
    if disc is not None:
        # 1. discriminator: real pairs against generated ones (x_fake is detached inside)
        with s.accelerator.autocast():
            d_loss, d_logs = gan_d_loss(disc, x, x_fake, cond)
        check_finite(d_loss, step, "discriminator loss")
        s.optimizers["disc"].zero_grad(set_to_none=True)
        s.accelerator.backward(d_loss)
        s.optimizers["disc"].step()
        logs.update(d_logs)
        d_real, d_fake = d_logs["d_real"].item(), d_logs["d_fake"].item()
        wins = d_real > D_WINS[0] and d_fake < D_WINS[1]
        s.extra["d_wins"] = s.extra.get("d_wins", 0) + 1 if wins else 0
        if cfg.max_d_wins and s.extra["d_wins"] >= cfg.max_d_wins:
            raise TrainingDiverged(
                f"the discriminator has won outright (D(x) > {D_WINS[0]}, D(G(.)) < {D_WINS[1]}) "
                f"for {s.extra['d_wins']} consecutive steps at step {step} (D(x) = {d_real:.3f}, "
                f"D(G(.)) = {d_fake:.3g}); lower --lr-d, raise --l1-weight or --max-d-wins")
    # 2. generator: fool the updated discriminator, stay close to the clean image (L1)
    if disc is not None:
        disc.requires_grad_(False)  # no gradient into D's weights from the generator's loss
    try:
        with s.accelerator.autocast(), _no_sync(s, disc):
            g_loss, g_logs = gan_g_loss(disc, x0, x_fake, cond, cfg.l1_weight, cfg.adv_weight)
    finally:
        if disc is not None:
            disc.requires_grad_(True)
    check_finite(g_loss, step, "generator loss")
    s.optimizers["model"].zero_grad(set_to_none=True)
    s.accelerator.backward(g_loss)
    s.optimizers["model"].step()
    logs.update(g_logs)
    return logs


def _no_sync(s: TrainState, module: nn.Module | None):
    """DDP must not wait for gradients of a module whose weights take none in this backward."""
    from contextlib import nullcontext

    return s.accelerator.no_sync(module) if module is not None else nullcontext()


def _gan_preview(s: TrainState, n: int, gen: torch.Generator) -> torch.Tensor:
    """'generate': n samples. 'denoise': rows clean / noisy / denoised of 8 training images
    (the first batch the run drew, kept in ``s.info``), noise drawn with the preview generator."""
    net = s.accelerator.unwrap_model(s.modules["model"])
    if s.cfg.mode == "generate":
        return sample_gan(net, n, gen)
    x0 = s.info["gan_preview_x0"]
    noisy = _gan_noisy(s.cfg, x0, gen)
    return torch.cat([x0, noisy, denoise(net, noisy)])


# --- DDPM ----------------------------------------------------------------------------------------

PREVIEW_DDIM_STEPS = 50


def _ddpm_setup(cfg: DDPMConfig, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
    return {"model": adam(modules["model"].parameters(), cfg.lr)}


def _ddpm_schedule(s: TrainState) -> NoiseSchedule:
    if "ddpm_schedule" not in s.info:
        s.info["ddpm_schedule"] = NoiseSchedule(s.cfg.schedule, s.cfg.num_steps,
                                                s.accelerator.device)
    return s.info["ddpm_schedule"]


def _single_image(s: TrainState) -> torch.Tensor:
    """The one training image of single-image mode, (1, C, H, W) in [-1, 1]: a dataset index
    into the training split, or an image file of the dataset's shape."""
    if "ddpm_single" in s.info:
        return s.info["ddpm_single"]
    cfg: DDPMConfig = s.cfg
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
    shape = tuple(s.info["image_shape"])
    if tuple(image.shape) != shape:
        raise ConfigError(
            f"single image {spec} is {tuple(image.shape)} (C, H, W) but the model is built for "
            f"the {cfg.dataset} images, {shape}; put the image in a folder and pass "
            f"--dataset folder:DIR, or resize it")
    s.info["ddpm_single"] = data.to_float(image[None].to(s.accelerator.device))
    return s.info["ddpm_single"]


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (BatchNorm statistics)
    are copied."""
    ema_params, params = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _ddpm_step(s: TrainState, x: torch.Tensor, y: torch.Tensor, step: int
               ) -> dict[str, torch.Tensor]:
    """One epsilon-prediction step (Ho et al. 2020, Algorithm 1), then the EMA update."""
    cfg: DDPMConfig = s.cfg
    net = s.modules["model"]
    if cfg.single_image is not None:  # the notebook's first experiment: copies of one image
        x = _single_image(s).expand_as(x)
    if cfg.hflip:
        flip = torch.rand(x.shape[0], generator=s.gen, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    labels = None
    if cfg.class_conditional:
        # label dropout: train the unconditional model too, for classifier-free guidance
        drop = torch.rand(y.shape[0], generator=s.gen, device=y.device) < cfg.label_dropout
        null = s.accelerator.unwrap_model(net).null_label
        labels = torch.where(drop, torch.full_like(y, null), y)
    with s.accelerator.autocast():
        loss, logs = ddpm_loss(net, _ddpm_schedule(s), x, labels, s.gen)
    check_finite(loss, step)
    opt = s.optimizers["model"]
    opt.zero_grad(set_to_none=True)
    s.accelerator.backward(loss)
    if cfg.grad_clip > 0:
        logs["grad_norm"] = s.accelerator.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    opt.step()
    # EMA with warm-up: early on the average would mostly remember the random initialisation
    decay = min(cfg.ema_decay, (1 + step) / (10 + step))
    ema_update(s.modules["ema"], s.accelerator.unwrap_model(net), decay)
    return logs


def _ddpm_preview(s: TrainState, n: int, gen: torch.Generator) -> torch.Tensor:
    """n DDIM samples from the EMA network; conditional runs cycle through the classes."""
    ema = s.modules["ema"]
    shape = (n, *s.info["image_shape"])
    y = None
    if s.cfg.class_conditional:
        y = torch.arange(n, device=s.accelerator.device) % ema.num_classes
    steps = min(PREVIEW_DDIM_STEPS, s.cfg.num_steps)
    with s.accelerator.autocast():
        return sample_ddim(ema, _ddpm_schedule(s), shape, steps=steps, eta=DEFAULT_DDIM_ETA, y=y,
                           gen=gen)


class Family(NamedTuple):
    setup: Callable[..., dict[str, torch.optim.Optimizer]]  # (cfg, modules) -> optimizers
    step: Callable[[TrainState, torch.Tensor, torch.Tensor, int], dict[str, torch.Tensor]]
    preview: Callable[[TrainState, int, torch.Generator], torch.Tensor]  # -> images in [-1, 1]


FAMILIES: dict[str, Family] = {"vae": Family(_vae_setup, _vae_step, _vae_preview),
                               "gan": Family(_gan_setup, _gan_step, _gan_preview),
                               "ddpm": Family(_ddpm_setup, _ddpm_step, _ddpm_preview)}


# --- the loop ------------------------------------------------------------------------------------


def lr_factor(cfg: BaseConfig, step: int, total: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then constant or cosine decay."""
    warmup = getattr(cfg, "warmup_steps", 0)
    if warmup and step < warmup:
        return (step + 1) / warmup
    if getattr(cfg, "lr_schedule", "constant") == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def default_run_dir(cfg: BaseConfig) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.dataset.replace("folder:", ""))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.family}-{name.strip('_')}-{stamp}"  # type: ignore[attr-defined]


def resolve_resume(run_dir: Path, cfg: BaseConfig | None, overrides: dict[str, Any]) -> BaseConfig:
    """The config a resumed run continues with; refuses changes other than RESUMABLE_CHANGES."""
    saved = checkpoint.read_config(run_dir)
    wanted = cfg if cfg is not None else saved
    if overrides:
        from genlab.config import replace

        wanted = replace(wanted, **overrides)
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
            from genlab.config import replace

            cfg = replace(cfg, **overrides)
        run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    family = FAMILIES[cfg.family]  # type: ignore[attr-defined]

    from accelerate import Accelerator

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    use_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA GPU")
    accelerator = Accelerator(cpu=use_cpu,
                              mixed_precision="bf16" if cfg.precision == "bf16" else "no")
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes

    train_data = data.load(cfg.dataset, "train", cfg.data_dir, cfg.download)
    info = {"dataset": cfg.dataset, "image_shape": list(train_data.image_shape),
            "classes": list(train_data.classes), "num_train": len(train_data)}
    if resume is None and accelerator.is_main_process:
        checkpoint.create_run(run_dir, cfg, info)
    accelerator.wait_for_everyone()

    torch.manual_seed(cfg.seed)
    modules = MODELS[cfg.family](cfg, train_data.image_shape, len(train_data.classes))  # type: ignore[attr-defined]
    optimizers = family.setup(cfg, modules)
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
        weights, saved = checkpoint.load_checkpoint(run_dir)
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
    images, labels = train_data.images.to(device), train_data.labels.to(device)
    bar = _progress(progress and accelerator.is_main_process, total, start, run_dir)
    sums: dict[str, float] = {}
    count, tick, batches, last_ckpt = 0, time.perf_counter(), None, start
    try:
        for step in range(start, total):
            epoch, i = divmod(step, per_epoch)
            if batches is None or i == 0:
                batches = data.epoch_batches(n, cfg.batch_size, cfg.seed, epoch, rank, world)
            idx = batches[i].to(device)
            x, y = data.to_float(images[idx]), labels[idx]  # (B, C, H, W) in [-1, 1]
            x = x.contiguous(memory_format=memory_format)
            lr_scale = lr_factor(cfg, step, total)
            for opt in optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = group.setdefault("initial_lr", group["lr"]) * lr_scale
            logs = family.step(state, x, y, step)
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
        gen_states = [g.cpu() for g in gathered]
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
    images = FAMILIES[state.cfg.family].preview(state, PREVIEW_IMAGES, preview_gen)
    for n, m in unwrapped.items():
        m.train(was_training[n])
    save_grid(data.to_uint8(images), run_dir / "samples" / f"step-{step:08d}.png", nrow=8)


def _progress(enabled: bool, total: int, start: int, run_dir: Path):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=run_dir.name, unit="step", mininterval=0.5,
                disable=not sys.stderr.isatty(), dynamic_ncols=True)
