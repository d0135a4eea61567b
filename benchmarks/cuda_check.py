"""CUDA checks and GPU figures for one machine with an NVIDIA GPU, in one script.

1. the GAN denoiser on FER2013 (needs --fer-dir): the adversarial weight sweep of the default
   preset at one step budget, the reference preset (the notebook's 50 epochs) at both noise levels,
   and the unconditional DCGAN's samples and offline FID; PSNR/SSIM on the fixed noisy PublicTest
   faces (no classical baselines: their numbers do not depend on the device);
2. every family trains on CUDA (fp32 and bf16 autocast + channels_last), stops, resumes to the
   same step count as an uninterrupted run (max weight difference printed), samples, is evaluated
   and plotted.

    python benchmarks/cuda_check.py --out runs/cuda-check [--fer-dir DIR] [--skip-gan]

Prints one JSON line per result and writes them to OUT/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def emit(out: Path, record: dict) -> None:
    print(json.dumps(record), flush=True)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def smoke(out: Path) -> None:
    """Train 40 steps, resume to 80, compare with 80 uninterrupted; then sample/evaluate/plot."""
    import genlab
    from genlab.checkpoint import load_weights

    cases = [("vae", dict(latent_dim=2)), ("gan", dict(dataset="digits", disc="reference")),
             ("dcgan", dict(dataset="digits")), ("ddpm", dict(num_steps=100)), ("flow", {})]
    for family, extra in cases:
        for precision in ("fp32", "bf16", "fp16"):  # fp16: gradient scaling
            common = dict(dataset="digits", device="cuda", precision=precision,
                          channels_last=precision == "bf16", log_every=20, checkpoint_every=40,
                          steps=80, **extra)
            tag = f"{family}-{precision}"
            start = time.perf_counter()
            whole = genlab.train(genlab.make_config(family, run_dir=str(out / f"{tag}-whole"),
                                                    **common), plot=False, progress=False)
            seconds = time.perf_counter() - start
            part = genlab.make_config(family, run_dir=str(out / f"{tag}-split"),
                                      **{**common, "steps": 40})
            genlab.train(part, plot=False, progress=False)
            split = genlab.train(resume=str(out / f"{tag}-split"), steps=80, plot=True,
                                 progress=False)
            a, b = load_weights(whole)[0], load_weights(split)[0]
            diff = max(float((a[m][k].float() - b[m][k].float()).abs().max())
                       for m in a for k in a[m])
            metrics = genlab.evaluate(split, **({"num_samples": 200, "ddpm_samples": 20}
                                               if family == "ddpm" else {}))
            images = (None if genlab.RECIPES[family].denoises
                      else genlab.sample(split, n=16))
            emit(out, {"check": "cuda-smoke", "run": tag, "seconds_80_steps": round(seconds, 2),
                       "resume_max_abs_weight_diff": diff,
                       "sample_shape": list(images.shape) if images is not None else None,
                       "metrics": {k: v for k, v in metrics.items()
                                   if isinstance(v, (int, float, str))}})


def gan_runs(out: Path, fer_dir: str, sweep_steps: int, dcgan_steps: int) -> None:
    import genlab

    def run(name: str, preset: str, family: str = "gan", **overrides) -> None:
        cfg = genlab.make_config(family, preset, dataset="fer2013", data_dir=fer_dir,
                                 download=False, device="cuda", precision="bf16",
                                 channels_last=True, log_every=100, checkpoint_every=100_000,
                                 run_dir=str(out / name), **overrides)
        start = time.perf_counter()
        run_dir = genlab.train(cfg, plot=False, progress=False)
        seconds = time.perf_counter() - start
        if family == "dcgan":
            m = genlab.evaluate(run_dir)
            emit(out, {"check": "dcgan-fer", "run": name, "train_s": round(seconds, 1),
                       "steps": cfg.steps, "fid": m["fid"], "kid": m["kid"],
                       "feature_net_test_accuracy": m["feature_net_test_accuracy"]})
            genlab.save_samples(genlab.sample(run_dir, n=100), out / name / "gallery", nrow=10)
            return
        m = genlab.evaluate(run_dir, num_images=1000, baselines=())
        emit(out, {"check": "gan-denoise-fer", "run": name, "preset": preset,
                   "train_s": round(seconds, 1), "steps": cfg.steps or cfg.epochs,
                   "noise": m["noise"], "num_images": m["num_images"],
                   "noisy": m["methods"]["noisy"], "gan": m["methods"]["gan"]})

    for adv in (0.0, 0.01, 0.03, 0.1, 1.0):
        run(f"sweep-adv{adv:g}-p255", "default", adv_weight=adv, steps=sweep_steps)
    for peak in (255.0, 30.0):
        run(f"reference-p{peak:g}", "reference", peak=peak)  # the notebook's 50 epochs
    run("dcgan", "default", family="dcgan", steps=dcgan_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/cuda-check")
    parser.add_argument("--fer-dir", default=None, help="folder holding fer2013.csv")
    parser.add_argument("--sweep-steps", type=int, default=2500)
    parser.add_argument("--dcgan-steps", type=int, default=5000)
    parser.add_argument("--skip-smoke", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("cuda_check.py needs a CUDA GPU")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    emit(out, {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
               "capability": list(torch.cuda.get_device_capability())})
    if args.fer_dir:
        gan_runs(out, args.fer_dir, args.sweep_steps, args.dcgan_steps)
    if not args.skip_smoke:
        smoke(out)


if __name__ == "__main__":
    main()
