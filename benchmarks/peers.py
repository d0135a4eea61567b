"""genlab's DDPM beside diffusers', in one run on one machine: training images/s and the time of
1,000 DDIM-50 samples.

genlab: its default DDPM preset (the (32, 64, 128) ResNet UNet, 2.47M parameters, batch 64) in
the precision ``--precision auto`` picks, trained by ``genlab.train`` (images/s from its log,
warm-up interval excluded) and sampled by ``genlab.sample`` (DDIM, 50 steps, eta 1).
diffusers: ``UNet2DModel`` of benchmarks/baseline_diffusers_ddpm.py (2.73M parameters, attention
at the lowest resolution) trained with its ``DDPMScheduler`` (cosine, T = 1000, epsilon target,
AdamW 1e-3, batch 64) and sampled with its ``DDIMScheduler`` (50 steps, eta 1), in its default
precision (fp32) and under bf16 autocast. Same data (MNIST from ../shared/data, else the digits),
same thread count, one after another in this process.

    pip install -e '.[bench]'
    .venv/bin/python benchmarks/peers.py [--samples 1000] [--steps 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import genlab  # noqa: E402  (before torch: genlab's OpenMP policy, as its command does)
from genlab import checkpoint, data, recipes  # noqa: E402
from genlab.hardware import cpu_name  # noqa: E402
from genlab.images import to_float  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "mnist"


def genlab_side(steps: int, samples: int, data_args: dict, out: Path) -> dict:
    cfg = recipes.make_config("ddpm", "default", **data_args, steps=steps, log_every=steps // 3,
                              checkpoint_every=10**9, run_dir=str(out / "genlab-ddpm"))
    run_dir = genlab.train(cfg, progress=False)
    log = checkpoint.read_log(run_dir)
    rates = [r["images_per_s"] for r in log[1:]]  # the first interval holds the warm-up
    start = time.perf_counter()
    genlab.sample(run_dir, n=samples)
    precision = recipes.load_run(run_dir).config.precision
    return {"train_img_s": sum(rates) / len(rates), "sample_s": time.perf_counter() - start,
            "precision": precision}


def diffusers_side(steps: int, samples: int, split, bf16: bool) -> dict:
    from baseline_diffusers_ddpm import build_unet
    from diffusers import DDIMScheduler, DDPMScheduler

    torch.manual_seed(0)
    shape = split.image_shape
    net = build_unet(shape)
    train_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)

    def train_step(i: int) -> None:
        idx = torch.randint(0, len(split), (64,), generator=gen)
        x0 = to_float(split.images[idx])
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (64,), generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = net(train_sched.add_noise(x0, noise, t), t).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(3):  # warm-up
        train_step(i)
    start = time.perf_counter()
    for i in range(steps):
        train_step(i)
    train_img_s = 64 * steps / (time.perf_counter() - start)

    net.eval()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    sched.set_timesteps(50)
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for first in range(0, samples, 256):
            x = torch.randn((min(256, samples - first), *shape), generator=gen)
            for t in sched.timesteps:
                eps = net(x, t).sample.float()
                x = sched.step(eps, t, x, eta=1.0, generator=gen).prev_sample
    return {"train_img_s": train_img_s, "sample_s": time.perf_counter() - start,
            "precision": "bf16 autocast" if bf16 else "fp32"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="timed training steps per side")
    p.add_argument("--samples", type=int, default=1000, help="DDIM-50 samples per side")
    args = p.parse_args()
    data_args = (dict(dataset="mnist", data_dir=str(SHARED)) if SHARED.is_dir()
                 else dict(dataset="digits"))
    split = data.load(data_args["dataset"], "train", data_args.get("data_dir"), False)
    print(f"{cpu_name()}; torch {torch.__version__}; {torch.get_num_threads()} threads; "
          f"{data_args['dataset']} {tuple(split.image_shape)}; {args.samples} DDIM-50 samples")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {"genlab": genlab_side(args.steps, args.samples, data_args, Path(tmp))}
    rows["diffusers"] = diffusers_side(args.steps, args.samples, split, bf16=False)
    rows["diffusers bf16"] = diffusers_side(args.steps, args.samples, split, bf16=True)
    base = rows["genlab"]
    print(f"{'':16s} {'precision':14s} {'train img/s':>11s} {'ratio':>6s} "
          f"{'sample s':>9s} {'ratio':>6s}")
    for name, r in rows.items():
        print(f"{name:16s} {r['precision']:14s} {r['train_img_s']:11.1f} "
              f"{base['train_img_s'] / r['train_img_s']:5.2f}x {r['sample_s']:9.1f} "
              f"{r['sample_s'] / base['sample_s']:5.2f}x", flush=True)
    print("ratio: genlab's speed over each row's (above 1: genlab faster)")


if __name__ == "__main__":
    main()
