"""``evaluate(run_dir) -> metrics``: scores a run on its dataset's held-out split, writes
metrics.json.

Each family's evaluator takes the loaded run and the evaluation split and returns a flat-ish dict of
numbers plus what they depend on (sample counts, seeds), so that a number is never reported without
the settings that produced it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from genlab import checkpoint, data
from genlab.checkpoint import Run, pick_device
from genlab.corruption import NOISY_TEST_SEED, fixed_noisy, noise_label
from genlab.diffusion import NoiseSchedule
from genlab.errors import ConfigError
from genlab.metrics import fid_kid, inception_fid, psnr, sharpness, ssim, ssim_window, vae_bounds
from genlab.models.classifier import Classifier, Features
from genlab.samplers import (
    BM3D_MIN_SIZE,
    DEFAULT_DDIM_ETA,
    bm3d_available,
    class_cycle,
    denoise,
    denoise_classical,
    generate_ddpm,
)

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


# --- GAN -----------------------------------------------------------------------------------------

GAN_EVAL_IMAGES = 300  # default number of test images (BM3D takes about 1 s per 48x48 face)


def _scores(images: torch.Tensor, clean: torch.Tensor, win: int) -> dict[str, float]:
    ref = clean.float()
    return {"psnr": float(psnr(images.float(), ref, 255.0).mean()),
            "ssim": float(ssim(images.float(), ref, 255.0, win_size=win).mean()),
            "sharpness": float(sharpness(images, ref).mean())}


def _evaluate_gan(run: Run, split_data: data.ImageData, seed: int = 0,
                  num_images: int | None = None, baselines: tuple[str, ...] = ("nlm", "bm3d"),
                  batch_size: int = 256, **_: Any) -> dict[str, Any]:
    """Denoiser: PSNR (dB) and SSIM against the clean test images for the noisy input, this
    GAN and the classical baselines (NLM and BM3D, with the Anscombe transform for Poisson
    noise), all on the same fixed noisy images, rounded to 8 bits as saved."""
    cfg = run.config
    if cfg.mode == "generate":  # type: ignore[attr-defined]
        return _evaluate_dcgan(run, split_data, seed=seed, num_images=num_images,
                               **{k: v for k, v in _.items()
                                  if k in ("num_samples", "feature_steps", "inception_weights")})
    clean = split_data.images[: num_images or GAN_EVAL_IMAGES]       # (N, C, H, W) uint8
    noisy = fixed_noisy(clean, cfg.noise, cfg.peak, cfg.sigma, NOISY_TEST_SEED + seed)
    win = ssim_window(clean.shape)
    table: dict[str, dict[str, Any]] = {"noisy": _scores(noisy, clean, win)}
    run.model.to(memory_format=torch.channels_last)  # an inference copy: 1.7x faster on CPU
    start = time.perf_counter()
    x0_hat = denoise(run.model, data.to_float(noisy), batch_size=batch_size)
    seconds = time.perf_counter() - start
    table["gan"] = {**_scores(data.to_uint8(x0_hat.cpu()), clean, win),
                    "seconds_per_image": seconds / len(clean)}
    skipped = {}
    for method in baselines:
        if method == "bm3d" and not bm3d_available():
            skipped[method] = "the bm3d package is not installed (pip install 'genlab[eval]')"
            continue
        if method == "bm3d" and not bm3d_available(clean.shape):
            skipped[method] = f"images smaller than {BM3D_MIN_SIZE}x{BM3D_MIN_SIZE}"
            continue
        start = time.perf_counter()
        out = denoise_classical(noisy, method, cfg.noise, cfg.peak, cfg.sigma)
        seconds = time.perf_counter() - start
        name = f"{method}_anscombe" if cfg.noise == "poisson" else method
        table[name] = {**_scores(out.round().to(torch.uint8), clean, win),
                       "seconds_per_image": seconds / len(clean)}
    best = max((k for k in table if k not in ("noisy", "gan")), default=None,
               key=lambda k: table[k]["psnr"])
    results: dict[str, Any] = {
        "noise": noise_label(cfg.noise, cfg.peak, cfg.sigma), "noise_seed": NOISY_TEST_SEED + seed,
        "num_images": int(len(clean)), "ssim_window": win, "methods": table,
    }
    if best is not None:
        results["gan_minus_best_classical_db"] = table["gan"]["psnr"] - table[best]["psnr"]
        results["best_classical"] = best
    for name in ("bm3d_anscombe", "bm3d"):
        if name in table:
            results["gan_speedup_vs_bm3d"] = (table[name]["seconds_per_image"]
                                              / max(table["gan"]["seconds_per_image"], 1e-12))
    if skipped:
        results["skipped"] = skipped
    return results


def _evaluate_dcgan(run: Run, split_data: data.ImageData, seed: int = 0,
                    num_images: int | None = None, num_samples: int = 1000,
                    feature_steps: int = 1500,
                    inception_weights: str | None = None) -> dict[str, Any]:
    """Unconditional generator: FID/KID of ``num_samples`` samples against the test split, in
    the features of the dataset's own classifier (the offline score shared with the DDPM)."""
    from genlab.samplers import sample_gan

    cfg = run.config
    device = next(run.model.parameters()).device
    features, finfo = feature_network(cfg.dataset, cfg.data_dir, cfg.download, feature_steps,
                                      device)
    real = data.to_float(split_data.images[:num_images] if num_images else split_data.images)
    gen = torch.Generator(device=device).manual_seed(seed)
    start = time.perf_counter()
    fake = sample_gan(run.model, num_samples, gen).cpu()
    seconds = (time.perf_counter() - start) / num_samples
    scores = fid_kid(features, real, fake, seed=seed)
    extra = ({"inception_fid": inception_fid(real, fake, inception_weights)}
             if inception_weights else {})
    return {"fid": scores["fid"], "kid": scores["kid"], "kid_std": scores["kid_std"], **extra,
            "num_samples": num_samples, "num_real": len(real), "seed": seed,
            "seconds_per_image": seconds,
            "score": "FID/KID in the penultimate features of a classifier trained on the "
                     "dataset's train split (not Inception-v3: not comparable to published FIDs)",
            "feature_net_test_accuracy": finfo["test_accuracy"], "feature_net": finfo["path"]}


# --- the feature network of the offline FID/KID (DDPM; reusable by any sample-quality score) ----

# The classifier's training recipe; part of the cache key, recorded beside the weights.
# Trained under bf16 autocast in channels-last memory: 2.9x (28x28) to 4.9x (48x48) faster per step
# than fp32 on this CPU; the features are then computed in fp32.
FEATURE_NET = {"widths": [32, 64], "feature_dim": 128, "batch_size": 128, "lr": 1e-3, "seed": 0,
               "precision": "bf16", "channels_last": True}


def cache_root() -> Path:
    """$GENLAB_CACHE, else .cache/genlab under the working directory (the project's cache)."""
    return Path(os.environ.get("GENLAB_CACHE", Path(".cache") / "genlab"))


def feature_network(dataset: str, data_dir: str | None = None, download: bool = True,
                    steps: int = 1500, device: str | torch.device = "cpu",
                    progress: bool = False) -> tuple[Features, dict[str, Any]]:
    """The classifier whose features the offline FID/KID use, trained once on the dataset's
    labelled train split and cached (weights + info.json with its recipe and test accuracy)
    under cache_root()/feature-nets/<dataset>-<hash of the recipe>/."""
    recipe = {**FEATURE_NET, "steps": steps, "dataset": dataset,
              "data_dir": str(Path(data_dir).resolve()) if data_dir else None}
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset).strip("_")
    folder = cache_root() / "feature-nets" / f"{slug}-{digest}"
    train_data = None
    if (folder / "info.json").is_file():
        info = checkpoint.read_json(folder / "info.json")
    else:
        train_data = data.load(dataset, "train", data_dir, download)
        info = _train_feature_network(train_data, data.load(dataset, "test", data_dir, download),
                                      recipe, folder, progress, torch.device(device))
    net = Classifier(info["image_shape"][0], len(info["classes"]), tuple(info["widths"]),
                     info["feature_dim"])
    net.load_state_dict(load_file(folder / "weights.safetensors"))
    return Features(net).to(device).eval(), {**info, "path": str(folder)}


def _train_feature_network(train_data: data.ImageData, test_data: data.ImageData,
                           recipe: dict[str, Any], folder: Path, progress: bool,
                           device: torch.device) -> dict[str, Any]:
    """Adam on cross-entropy for recipe['steps'] batches on ``device`` (under the recipe's
    precision and memory format); saves the weights atomically."""
    if len(train_data.classes) < 2:
        raise ConfigError(f"the offline FID/KID needs a labelled dataset; {train_data.name!r} "
                          f"has {len(train_data.classes)} class")
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(recipe["seed"])
    torch.manual_seed(recipe["seed"])
    net = Classifier(train_data.image_shape[0], len(train_data.classes), tuple(recipe["widths"]),
                     recipe["feature_dim"])
    fmt = torch.channels_last if recipe["channels_last"] else torch.contiguous_format
    net = net.to(device, memory_format=fmt)
    bf16 = recipe["precision"] == "bf16"
    opt = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
    n, batch_size = len(train_data), recipe["batch_size"]
    per_epoch = data.steps_per_epoch(n, batch_size)
    batches: list[torch.Tensor] = []
    for step in range(recipe["steps"]):
        epoch, i = divmod(step, per_epoch)
        if i == 0:
            batches = data.epoch_batches(n, batch_size, recipe["seed"], epoch)
        idx = batches[i]
        x = data.to_float(train_data.images[idx])
        # small random shifts (pad 2, crop) keep the features from memorising the split
        x = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
        dy, dx = torch.randint(0, 5, (2,), generator=gen).tolist()
        x = x[:, :, dy:dy + train_data.image_shape[1], dx:dx + train_data.image_shape[2]]
        x = x.to(device).contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), train_data.labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (step + 1) % 500 == 0:
            print(f"feature network: step {step + 1}/{recipe['steps']}, loss {loss.item():.3f}")
    net = net.to("cpu", memory_format=torch.contiguous_format).eval()  # autocast kept it fp32
    with torch.no_grad():  # accuracy of the fp32 features that the scores use
        pred = torch.cat([net(data.to_float(b)).argmax(1) for b in test_data.images.split(1000)])
    accuracy = float((pred == test_data.labels).float().mean())
    info = {**recipe, "test_accuracy": accuracy, "num_train": n, "num_test": len(test_data),
            "image_shape": list(train_data.image_shape), "classes": list(train_data.classes),
            "train_seconds": round(time.perf_counter() - start, 1), "device": device.type}
    weights = {k: v.contiguous() for k, v in net.state_dict().items()}
    checkpoint.write_file_atomic(folder / "weights.safetensors",
                                 lambda tmp: save_file(weights, tmp))
    checkpoint.write_json(folder / "info.json", info)  # written last: marks the cache complete
    return info


# --- DDPM ----------------------------------------------------------------------------------------


def _evaluate_ddpm(run: Run, split_data: data.ImageData, seed: int = 0,
                   num_samples: int = 1000, ddpm_samples: int = 300, ddim_steps: int = 50,
                   ddim_eta: float = DEFAULT_DDIM_ETA,
                   feature_steps: int = 1500, num_images: int | None = None,
                   guidance: float | None = None, batch_size: int = 250,
                   inception_weights: str | None = None, **_: Any) -> dict[str, Any]:
    """FID/KID in the features of the dataset's own classifier, for DDIM-``ddim_steps`` samples
    (noise ``ddim_eta``) and ancestral DDPM-T samples, with sampling seconds per image of each.

    DDPM-T costs T network calls per image, so it is scored on ``ddpm_samples`` images; DDIM is
    also scored on its first ``ddpm_samples`` images, so that the two FIDs compare at one set
    size (KID is unbiased and compares at any size). The default 300 is above the feature
    network's 128 dimensions: with fewer samples than dimensions the sample covariance is
    singular and the FID ratio between samplers is noise (on the 30-minute MNIST model, DDIM-50
    over DDPM-1000 read 1.27 at 100 samples and 0.94 at 300). Conditional runs sample the classes
    in turn.
    """
    cfg = run.config
    net = run.model
    device = next(net.parameters()).device
    features, finfo = feature_network(cfg.dataset, cfg.data_dir, cfg.download, feature_steps,
                                      device)
    real = data.to_float(split_data.images[:num_images] if num_images else split_data.images)
    schedule = NoiseSchedule(cfg.schedule, cfg.num_steps, device)  # type: ignore[attr-defined]
    shape = tuple(run.data_info["image_shape"])
    results: dict[str, Any] = {}
    for sampler, n in (("ddim", num_samples), ("ddpm", ddpm_samples)):
        if n <= 0:
            continue
        gen = torch.Generator(device=device).manual_seed(seed)
        start = time.perf_counter()
        fake = generate_ddpm(net, schedule, n, shape, sampler, ddim_steps, ddim_eta,
                             class_cycle(net, n), guidance, gen, batch_size,
                             cfg.precision)
        seconds = (time.perf_counter() - start) / n
        steps = ddim_steps if sampler == "ddim" else cfg.num_steps  # type: ignore[attr-defined]
        label = f"{sampler}{steps}"
        scores = fid_kid(features, real, fake, seed=seed)
        results.update({f"fid_{label}": scores["fid"], f"kid_{label}": scores["kid"],
                        f"kid_std_{label}": scores["kid_std"], f"num_samples_{label}": n,
                        f"seconds_per_image_{label}": round(seconds, 4)})
        if inception_weights:  # the standard FID as well, on the same samples
            results[f"inception_fid_{label}"] = inception_fid(real, fake, inception_weights)
        if sampler == "ddim" and 0 < ddpm_samples < n:
            results[f"fid_{label}_at_{ddpm_samples}"] = fid_kid(features, real,
                                                                fake[:ddpm_samples])["fid"]
    return {**results, "ddim_eta": ddim_eta, "num_real": len(real), "seed": seed,
            "guidance": guidance,
            "score": "FID/KID in the penultimate features of a classifier trained on the "
                     "dataset's train split (not Inception-v3: not comparable to published FIDs)",
            "feature_net_test_accuracy": finfo["test_accuracy"],
            "feature_net": finfo["path"]}


EVALUATORS: dict[str, Callable[..., dict[str, Any]]] = {"vae": _evaluate_vae,
                                                       "gan": _evaluate_gan,
                                                       "ddpm": _evaluate_ddpm}


def evaluate(run_dir: str | Path, split: str = "test", seed: int = 0, device: str = "auto",
             **options: Any) -> dict[str, Any]:
    """Score the run's latest weights on ``split`` and write run_dir/metrics.json."""
    run_dir = Path(run_dir)
    run = checkpoint.load_run(run_dir, pick_device(device))
    cfg = run.config
    generator = run.family == "ddpm" or getattr(cfg, "mode", None) == "generate"
    if options.get("inception_weights") and not generator:
        raise ConfigError("--inception-weights scores samples: it applies to DDPM runs and GANs "
                          f"in mode 'generate', not to this {run.family} run")
    split_data = data.load(cfg.dataset, split, cfg.data_dir, cfg.download)
    results = EVALUATORS[run.family](run, split_data, seed=seed,
                                     **{k: v for k, v in options.items() if v is not None})
    metrics = {"family": run.family, "dataset": cfg.dataset, "split": split, "step": run.step,
               **results}
    checkpoint.write_json(run_dir / "metrics.json", metrics)
    return metrics
